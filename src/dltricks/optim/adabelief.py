"""AdaBelief: Adam dividing by the spread of the gradient around its moving average."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from dltricks.optim.adapter import ComposedOptimizer, NonFinitePolicy
from dltricks.optim.base import Transform
from dltricks.optim.blocks import (
    add_decayed_weights,
    add_l2_penalty,
    bias_correction,
    ema,
    ema_of_squared_surprise,
    negate,
    root,
    running_max,
    scale_by_learning_rate,
    shrink_weights,
)
from dltricks.optim.combine import chain, ratio
from dltricks.optim.validation import check_flag

NON_NEGATIVE_STATE = ("exp_avg_var", "max_exp_avg_var")


class AdaBelief(ComposedOptimizer):
    r"""AdaBelief, with the keywords and defaults of ``pytorch_optimizer.AdaBelief``.

    Math (Zhuang et al. 2020, "AdaBelief Optimizer: Adapting Stepsizes by the Belief in
    Observed Gradients", algorithm 2)::

        g_t     = grad L(theta_{t-1})     [+ lambda theta_{t-1} if not weight_decouple]
        m_t     = beta1 m_{t-1} + (1 - beta1) g_t                          (exp_avg)
        s_t     = beta2 s_{t-1} + (1 - beta2) (g_t - m_t)^2 + eps           (exp_avg_var)
        shat_t  = max(shat_{t-1}, s_t) if ams_bound else s_t               (max_exp_avg_var)
        theta_t = theta_{t-1} - eta (m_t / (1 - beta1^t)) / (sqrt(shat_t / (1 - beta2^t)) + eps)
                  [- eta lambda theta_{t-1} if weight_decouple, - lambda theta_{t-1} if
                  also fixed_decay]

    Adam with ``g_t^2`` replaced by ``(g_t - m_t)^2``: the "belief" ``m_t`` predicts the
    gradient, and the step is large where the prediction holds (a flat, consistent slope) and
    small where it does not (a noisy or curving one). ``eps = 1e-16`` sits inside ``s_t`` as
    well as outside the root, as in the paper and pytorch-optimizer. Defaults as
    pytorch-optimizer's: decoupled weight decay (``weight_decouple=True``), ``eps=1e-16``.
    Its ``rectify`` (RAdam-style) variant is not provided: ``rectify=True`` is refused, and
    ``n_sma_threshold`` and ``degenerated_to_sgd``, which only it reads, are kept unused.

    Chain: ``[negate] -> [add_l2_penalty] -> ratio(ema(beta1) -> bias_correction(beta1),
    ema_of_squared_surprise(beta1, beta2, eps) -> [running_max] -> bias_correction(beta2) ->
    root(eps)) -> [add_decayed_weights] -> scale_by_learning_rate -> [shrink_weights]``.
    """

    structural_options = ("maximize", "weight_decouple", "fixed_decay", "ams_bound")
    non_negative = ("lr", "eps", "weight_decay")
    flags = structural_options
    non_negative_state = (*ComposedOptimizer.non_negative_state, *NON_NEGATIVE_STATE)
    flag_defaults: ClassVar[Mapping[str, Any]] = {
        "maximize": False,
        "weight_decouple": True,
        "fixed_decay": False,
        "ams_bound": False,
        "rectify": False,
        "differentiable": False,
    }

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        rectify: bool = False,
        n_sma_threshold: int = 5,
        degenerated_to_sgd: bool = True,
        ams_bound: bool = False,
        foreach: bool | None = None,
        eps: float = 1e-16,
        maximize: bool = False,
        *,
        nonfinite: NonFinitePolicy = "raise",
        fast: bool | None = None,
        state_precision: str = "fp32",
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": tuple(betas) if isinstance(betas, list) else betas,
            "weight_decay": weight_decay,
            "weight_decouple": weight_decouple,
            "fixed_decay": fixed_decay,
            "rectify": rectify,
            "ams_bound": ams_bound,
            "foreach": foreach,
            "eps": eps,
            "maximize": maximize,
        }
        # Read by pytorch-optimizer's rectify variant only (kept, as there, on the optimizer).
        self.n_sma_threshold = n_sma_threshold
        self.degenerated_to_sgd = degenerated_to_sgd
        super().__init__(
            params, defaults, nonfinite=nonfinite, fast=fast, state_precision=state_precision
        )

    def validate_group(self, group: Mapping[str, Any]) -> None:
        super().validate_group(group)
        check_flag("rectify", group["rectify"])
        if group["rectify"]:
            raise ValueError(
                "rectify=True (pytorch-optimizer's RAdam-style AdaBelief) is not supported by "
                "dltricks.optim.AdaBelief; pass rectify=False, or use "
                "pytorch_optimizer.AdaBelief(rectify=True)"
            )

    def build_chain(self, options: Mapping[str, Any]) -> Transform:
        belief = [ema_of_squared_surprise("beta1", "beta2", "eps")]
        if options["ams_bound"]:
            belief.append(running_max(key="max_exp_avg_var"))
        belief += [bias_correction("beta2"), root("eps")]
        direction = ratio(chain(ema("beta1"), bias_correction("beta1")), chain(*belief))
        blocks = [negate()] if options["maximize"] else []
        if not options["weight_decouple"]:
            blocks += [add_l2_penalty(), direction, scale_by_learning_rate()]
        elif options["fixed_decay"]:
            blocks += [direction, scale_by_learning_rate(), shrink_weights()]
        else:
            blocks += [direction, add_decayed_weights(), scale_by_learning_rate()]
        return chain(*blocks)
