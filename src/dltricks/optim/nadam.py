"""NAdam: Adam with a Nesterov-style first moment."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from dltricks.optim.adapter import ComposedOptimizer, NonFinitePolicy
from dltricks.optim.base import Transform
from dltricks.optim.blocks import (
    add_decayed_weights,
    add_l2_penalty,
    bias_correction,
    ema_of_squares,
    negate,
    nesterov_first_moment,
    root,
    scale_by_learning_rate,
)
from dltricks.optim.combine import chain, ratio


class NAdam(ComposedOptimizer):
    r"""NAdam; drop-in for ``torch.optim.NAdam``.

    Math (``psi`` = momentum_decay)::

        g_t     = grad L(theta_{t-1}) + lambda * theta_{t-1}     (unless decoupled)
        mu_t    = beta1 * (1 - 0.5 * 0.96 ** (t psi)),   P_t = prod_{i<=t} mu_i
        m_t     = beta1 * m_{t-1} + (1 - beta1) * g_t
        v_t     = beta2 * v_{t-1} + (1 - beta2) * g_t^2
        n_t     = (1 - mu_t) / (1 - P_t) * g_t + mu_{t+1} / (1 - P_t mu_{t+1}) * m_t
        theta_t = theta_{t-1} - eta * n_t / (sqrt(v_t / (1 - beta2^t)) + eps)
                  [- eta * lambda * theta_{t-1} if decoupled_weight_decay]

    Chain: ``[negate] -> add_l2_penalty -> ratio(nesterov_first_moment, ema_of_squares ->
    bias_correction(beta2) -> root(eps)) -> scale_by_learning_rate`` (or the decay after the
    ratio when decoupled). Dozat 2016, "Incorporating Nesterov Momentum into Adam".
    """

    structural_options = ("maximize", "decoupled_weight_decay")
    non_negative = ("lr", "eps", "weight_decay", "momentum_decay")
    flags = structural_options
    flag_defaults: ClassVar[Mapping[str, Any]] = {
        "maximize": False,
        "foreach": None,
        "capturable": False,
        "differentiable": False,
        "decoupled_weight_decay": False,
    }

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        nonfinite: NonFinitePolicy = "raise",
        fast: bool | None = None,
        state_precision: str = "fp32",
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": tuple(betas) if isinstance(betas, list) else betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "momentum_decay": momentum_decay,
            "decoupled_weight_decay": decoupled_weight_decay,
            "foreach": foreach,
            "maximize": maximize,
            "capturable": capturable,
            "differentiable": differentiable,
        }
        super().__init__(
            params, defaults, nonfinite=nonfinite, fast=fast, state_precision=state_precision
        )

    def build_chain(self, options: Mapping[str, Any]) -> Transform:
        direction = ratio(
            nesterov_first_moment(),
            chain(ema_of_squares("beta2"), bias_correction("beta2"), root("eps")),
        )
        blocks = [negate()] if options["maximize"] else []
        if options["decoupled_weight_decay"]:
            blocks += [direction, add_decayed_weights()]
        else:
            blocks += [add_l2_penalty(), direction]
        blocks.append(scale_by_learning_rate())
        return chain(*blocks)
