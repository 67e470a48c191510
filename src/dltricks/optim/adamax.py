"""Adamax: Adam with the infinity norm in the denominator."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from dltricks.optim.adapter import ComposedOptimizer, NonFinitePolicy
from dltricks.optim.base import Transform
from dltricks.optim.blocks import (
    add_l2_penalty,
    bias_correction,
    ema,
    infinity_norm,
    negate,
    scale_by_learning_rate,
)
from dltricks.optim.combine import chain, ratio


class Adamax(ComposedOptimizer):
    r"""Adamax; drop-in for ``torch.optim.Adamax``.

    Math::

        g_t     = grad L(theta_{t-1}) + lambda * theta_{t-1}
        m_t     = beta1 * m_{t-1} + (1 - beta1) * g_t                 (exp_avg)
        r_t     = max(beta2 * r_{t-1}, |g_t| + eps)                  (exp_inf)
        theta_t = theta_{t-1} - eta / (1 - beta1^t) * m_t / r_t

    Chain: ``[negate] -> add_l2_penalty -> ratio(ema(beta1) -> bias_correction(beta1),
    infinity_norm(beta2, eps)) -> scale_by_learning_rate``. Kingma & Ba 2015, section 7.1.
    """

    structural_options = ("maximize",)
    non_negative = ("lr", "eps", "weight_decay")
    flags = ("maximize",)
    flag_defaults: ClassVar[Mapping[str, Any]] = {
        "foreach": None,
        "maximize": False,
        "differentiable": False,
        "capturable": False,
    }

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
        nonfinite: NonFinitePolicy = "raise",
        fast: bool | None = None,
        state_precision: str = "fp32",
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": tuple(betas) if isinstance(betas, list) else betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "capturable": capturable,
        }
        super().__init__(
            params, defaults, nonfinite=nonfinite, fast=fast, state_precision=state_precision
        )

    def build_chain(self, options: Mapping[str, Any]) -> Transform:
        blocks = [negate()] if options["maximize"] else []
        blocks += [
            add_l2_penalty(),
            ratio(chain(ema("beta1"), bias_correction("beta1")), infinity_norm("beta2", "eps")),
            scale_by_learning_rate(),
        ]
        return chain(*blocks)
