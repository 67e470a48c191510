"""RAdam: Adam whose adaptive step waits until its variance is bounded."""

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
    ema_of_squares,
    negate,
    rectified_denominator,
    root,
    scale_by_learning_rate,
)
from dltricks.optim.combine import chain, ratio


class RAdam(ComposedOptimizer):
    r"""Rectified Adam; drop-in for ``torch.optim.RAdam``.

    Math (Liu et al. 2020, "On the Variance of the Adaptive Learning Rate and Beyond")::

        g_t     = grad L(theta_{t-1}) + lambda * theta_{t-1}        (L2, unless decoupled)
        m_t     = beta1 * m_{t-1} + (1 - beta1) * g_t               (exp_avg)
        v_t     = beta2 * v_{t-1} + (1 - beta2) * g_t^2             (exp_avg_sq)
        rho_inf = 2 / (1 - beta2) - 1,   rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t)
        r_t     = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
        d_t     = (m_t / (1 - beta1^t)) * r_t sqrt(1 - beta2^t) / (sqrt(v_t) + eps)  if rho_t > 5
        d_t     = m_t / (1 - beta1^t)                                              otherwise
        theta_t = theta_{t-1} - eta * d_t  [- eta * lambda * theta_{t-1} if decoupled]

    Adam's adaptive learning rate has unbounded variance in the first steps, when ``v_t``
    averages few gradients; the usual cure is a warmup. RAdam takes plain momentum steps until
    the approximated moving average is long enough (``rho_t > 5``, about 5 steps at
    ``beta2 = 0.999``), then scales Adam's step by ``r_t``, which rises to 1.

    Chain: ``[negate] -> add_l2_penalty -> ratio(ema(beta1) -> bias_correction(beta1),
    ema_of_squares(beta2) -> root(eps) -> rectified_denominator(beta2)) ->
    scale_by_learning_rate`` (or ``add_decayed_weights`` after the ratio when
    ``decoupled_weight_decay``).
    """

    structural_options = ("maximize", "decoupled_weight_decay")
    non_negative = ("lr", "eps", "weight_decay")
    flags = structural_options
    flag_defaults: ClassVar[Mapping[str, Any]] = {
        "foreach": None,
        "maximize": False,
        "differentiable": False,
        "decoupled_weight_decay": False,
        "capturable": False,
    }

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        nonfinite: NonFinitePolicy = "raise",
        fast: bool | None = None,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": tuple(betas) if isinstance(betas, list) else betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "maximize": maximize,
            "foreach": foreach,
            "capturable": capturable,
            "decoupled_weight_decay": decoupled_weight_decay,
            "differentiable": differentiable,
        }
        super().__init__(params, defaults, nonfinite=nonfinite, fast=fast)

    def build_chain(self, options: Mapping[str, Any]) -> Transform:
        direction = ratio(
            chain(ema("beta1"), bias_correction("beta1")),
            chain(ema_of_squares("beta2"), root("eps"), rectified_denominator("beta2")),
        )
        blocks = [negate()] if options["maximize"] else []
        if options["decoupled_weight_decay"]:
            blocks += [direction, add_decayed_weights()]
        else:
            blocks += [add_l2_penalty(), direction]
        blocks.append(scale_by_learning_rate())
        return chain(*blocks)
