"""AdaGrad: divide by the root of the sum of all past squared gradients."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from dltricks.optim.adapter import ComposedOptimizer, NonFinitePolicy
from dltricks.optim.base import Transform
from dltricks.optim.blocks import (
    add_l2_penalty,
    inverse_time_decay,
    negate,
    root,
    scale_by_learning_rate,
    sum_of_squares,
)
from dltricks.optim.combine import chain, identity, ratio


class Adagrad(ComposedOptimizer):
    r"""AdaGrad; drop-in for ``torch.optim.Adagrad``.

    Math (``c`` = initial_accumulator_value, ``d`` = lr_decay)::

        g_t     = grad L(theta_{t-1}) + lambda * theta_{t-1}
        s_t     = s_{t-1} + g_t^2,          s_0 = c
        theta_t = theta_{t-1} - eta / (1 + (t - 1) d) * g_t / (sqrt(s_t) + eps)

    The lecture's first adaptive learning rate: each parameter's step is divided by the root
    of the sum of its own squared gradients, so steep directions take small steps.
    Chain: ``[negate] -> add_l2_penalty -> ratio(identity, sum_of_squares -> root(eps)) ->
    inverse_time_decay -> scale_by_learning_rate``. Duchi, Hazan & Singer 2011.
    """

    structural_options = ("maximize",)
    non_negative = ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps")
    flags = ("maximize",)
    supports_sparse_grads = True
    flag_defaults: ClassVar[Mapping[str, Any]] = {
        "foreach": None,
        "maximize": False,
        "differentiable": False,
        "fused": None,
    }

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        nonfinite: NonFinitePolicy = "raise",
        fast: bool | None = None,
        state_precision: str = "fp32",
    ) -> None:
        defaults = {
            "lr": lr,
            "lr_decay": lr_decay,
            "weight_decay": weight_decay,
            "initial_accumulator_value": initial_accumulator_value,
            "eps": eps,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "fused": fused,
        }
        super().__init__(
            params, defaults, nonfinite=nonfinite, fast=fast, state_precision=state_precision
        )

    def check_sparse_group(self, group: Mapping[str, Any]) -> None:
        # torch's sparse Adagrad updates only the rows of the gradient; a decay of every
        # weight would touch all rows, so torch refuses the combination, and so do we.
        if group["weight_decay"] != 0:
            raise RuntimeError(
                "weight_decay option is not compatible with sparse gradients: pass "
                "weight_decay=0 for the param group with sparse gradients"
            )

    def build_chain(self, options: Mapping[str, Any]) -> Transform:
        blocks = [negate()] if options["maximize"] else []
        blocks += [
            add_l2_penalty(),
            ratio(identity(), chain(sum_of_squares(), root())),
            inverse_time_decay(),
            scale_by_learning_rate(),
        ]
        return chain(*blocks)
