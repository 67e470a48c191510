"""Lion: the sign of an interpolated momentum, with decoupled weight decay."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from dltricks.optim.adapter import ComposedOptimizer, NonFinitePolicy
from dltricks.optim.base import Transform
from dltricks.optim.blocks import (
    add_decayed_weights,
    negate,
    scale_by_learning_rate,
    sign_of_interpolation,
)
from dltricks.optim.combine import chain


class Lion(ComposedOptimizer):
    r"""Lion (EvoLved Sign Momentum); torch has no equivalent.

    Math (Chen et al. 2023, algorithm 2)::

        c_t     = beta1 * m_{t-1} + (1 - beta1) * g_t
        theta_t = theta_{t-1} - eta * (sign(c_t) + lambda * theta_{t-1})
        m_t     = beta2 * m_{t-1} + (1 - beta2) * g_t                      (exp_avg)

    Chain: ``[negate] -> sign_of_interpolation(beta1, beta2) -> add_decayed_weights ->
    scale_by_learning_rate``. Defaults from the paper: ``lr=1e-4``, ``betas=(0.9, 0.99)``.
    Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms".
    """

    structural_options = ("maximize",)
    non_negative = ("lr", "weight_decay")
    flags = ("maximize",)
    flag_defaults: ClassVar[Mapping[str, Any]] = {"maximize": False, "differentiable": False}

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        nonfinite: NonFinitePolicy = "raise",
        fast: bool | None = None,
        state_precision: str = "fp32",
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": tuple(betas) if isinstance(betas, list) else betas,
            "weight_decay": weight_decay,
            "maximize": maximize,
        }
        super().__init__(
            params, defaults, nonfinite=nonfinite, fast=fast, state_precision=state_precision
        )

    def build_chain(self, options: Mapping[str, Any]) -> Transform:
        blocks = [negate()] if options["maximize"] else []
        blocks += [sign_of_interpolation(), add_decayed_weights(), scale_by_learning_rate()]
        return chain(*blocks)
