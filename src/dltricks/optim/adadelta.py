"""AdaDelta: a step in the units of the parameter."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from dltricks.optim.adapter import ComposedOptimizer, NonFinitePolicy
from dltricks.optim.base import Transform
from dltricks.optim.blocks import add_l2_penalty, negate, scale_by_adadelta, scale_by_learning_rate
from dltricks.optim.combine import chain


class Adadelta(ComposedOptimizer):
    r"""AdaDelta; drop-in for ``torch.optim.Adadelta``.

    Math::

        g_t     = grad L(theta_{t-1}) + lambda * theta_{t-1}
        v_t     = rho * v_{t-1} + (1 - rho) * g_t^2                        (square_avg)
        d_t     = sqrt(D_{t-1} + eps) / sqrt(v_t + eps) * g_t
        D_t     = rho * D_{t-1} + (1 - rho) * d_t^2                        (acc_delta)
        theta_t = theta_{t-1} - eta * d_t

    Chain: ``[negate] -> add_l2_penalty -> scale_by_adadelta(rho, eps) ->
    scale_by_learning_rate``. Zeiler 2012.
    """

    structural_options = ("maximize",)
    non_negative = ("lr", "eps", "weight_decay")
    unit_interval = ("rho",)
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
        lr: float = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        foreach: bool | None = None,
        *,
        capturable: bool = False,
        maximize: bool = False,
        differentiable: bool = False,
        nonfinite: NonFinitePolicy = "raise",
        fast: bool | None = None,
        state_precision: str = "fp32",
    ) -> None:
        defaults = {
            "lr": lr,
            "rho": rho,
            "eps": eps,
            "weight_decay": weight_decay,
            "foreach": foreach,
            "capturable": capturable,
            "maximize": maximize,
            "differentiable": differentiable,
        }
        super().__init__(
            params, defaults, nonfinite=nonfinite, fast=fast, state_precision=state_precision
        )

    def build_chain(self, options: Mapping[str, Any]) -> Transform:
        blocks = [negate()] if options["maximize"] else []
        blocks += [add_l2_penalty(), scale_by_adadelta(), scale_by_learning_rate()]
        return chain(*blocks)
