"""RMSProp: divide by the root of a moving average of squared gradients."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from dltricks.optim.adapter import ComposedOptimizer, DerivedOption, NonFinitePolicy
from dltricks.optim.base import Transform
from dltricks.optim.blocks import (
    add_l2_penalty,
    centered_ema_of_squares,
    ema_of_squares,
    negate,
    root,
    scale_by_learning_rate,
    trace,
)
from dltricks.optim.combine import chain, identity, ratio


class RMSprop(ComposedOptimizer):
    r"""RMSProp; drop-in for ``torch.optim.RMSprop``.

    Math (``alpha`` = smoothing constant, ``mu`` = momentum)::

        g_t     = grad L(theta_{t-1}) + lambda * theta_{t-1}
        v_t     = alpha * v_{t-1} + (1 - alpha) * g_t^2                    (square_avg)
        a_t     = alpha * a_{t-1} + (1 - alpha) * g_t      (centered only: grad_avg)
        r_t     = g_t / (sqrt(v_t - a_t^2 [centered]) + eps)
        b_t     = mu * b_{t-1} + r_t                       (momentum > 0 only)
        theta_t = theta_{t-1} - eta * (b_t if mu > 0 else r_t)

    The lecture's RMSProp, ``sigma_t = sqrt(alpha sigma_{t-1}^2 + (1-alpha) g_t^2)``: the
    recent gradients weigh more than AdaGrad's whole history, so the step adapts when the
    error surface changes. No bias correction: the first step is about
    ``eta / sqrt(1 - alpha)``. Chain: ``[negate] -> add_l2_penalty ->
    ratio(identity, ema_of_squares(alpha) -> root(eps)) -> [trace(momentum)] ->
    scale_by_learning_rate``. Tieleman & Hinton 2012; centered form from Graves 2013.
    """

    structural_options = ("centered", "momentum_on", "maximize")
    derived_options: ClassVar[Mapping[str, DerivedOption]] = {
        "momentum_on": lambda group: group["momentum"] > 0
    }
    non_negative = ("lr", "eps", "weight_decay", "momentum")
    unit_interval = ("alpha",)
    flags = ("centered", "maximize")
    flag_defaults: ClassVar[Mapping[str, Any]] = {
        "momentum": 0,
        "centered": False,
        "foreach": None,
        "maximize": False,
        "differentiable": False,
        "capturable": False,
    }

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        *,
        nonfinite: NonFinitePolicy = "raise",
        fast: bool | None = None,
        state_precision: str = "fp32",
    ) -> None:
        defaults = {
            "lr": lr,
            "alpha": alpha,
            "eps": eps,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "centered": centered,
            "capturable": capturable,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
        }
        super().__init__(
            params, defaults, nonfinite=nonfinite, fast=fast, state_precision=state_precision
        )

    def build_chain(self, options: Mapping[str, Any]) -> Transform:
        second = (
            centered_ema_of_squares("alpha")
            if options["centered"]
            else ema_of_squares("alpha", key="square_avg")
        )
        blocks = [negate()] if options["maximize"] else []
        blocks += [add_l2_penalty(), ratio(identity(), chain(second, root()))]
        if options["momentum_on"]:
            # torch's RMSprop momentum buffer has no dampening; with d = 0 the first step's
            # copy equals the zero-start rule mu * 0 + r_1.
            blocks.append(trace("momentum", 0.0))
        blocks.append(scale_by_learning_rate())
        return chain(*blocks)
