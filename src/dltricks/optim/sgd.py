"""SGD, with heavy-ball or Nesterov momentum, and the lecture's ``Momentum``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from dltricks.optim.adapter import ComposedOptimizer, DerivedOption, NonFinitePolicy
from dltricks.optim.base import Transform
from dltricks.optim.blocks import add_l2_penalty, negate, scale_by_learning_rate, trace
from dltricks.optim.combine import chain


class SGD(ComposedOptimizer):
    r"""Stochastic gradient descent with optional momentum; drop-in for ``torch.optim.SGD``.

    Math (``mu`` = momentum, ``d`` = dampening, ``lambda`` = weight_decay)::

        g_t   = grad L(theta_{t-1}) + lambda * theta_{t-1}      (negated first if maximize)
        b_t   = g_t  if t == 1  else  mu * b_{t-1} + (1 - d) * g_t
        u_t   = b_t                  (heavy ball)   or   g_t + mu * b_t   (nesterov)
        theta_t = theta_{t-1} - eta * u_t

    Chain: ``[negate] -> add_l2_penalty -> [trace(momentum, dampening, nesterov)] ->
    scale_by_learning_rate``. Matches ``torch.optim.SGD`` (same defaults, ``lr=1e-3``).
    Sources: Robbins & Monro 1951; Polyak 1964 (momentum); Sutskever et al. 2013 (Nesterov).
    """

    structural_options = ("momentum_on", "nesterov", "maximize")
    derived_options: ClassVar[Mapping[str, DerivedOption]] = {
        "momentum_on": lambda group: group["momentum"] != 0
    }
    non_negative = ("lr", "momentum", "dampening", "weight_decay")
    flags = ("nesterov", "maximize")
    flag_defaults: ClassVar[Mapping[str, Any]] = {
        "nesterov": False,
        "maximize": False,
        "foreach": None,
        "differentiable": False,
        "fused": False,
    }
    # torch's SGD saves no step count; its momentum buffer exists only after a first step,
    # which is all the chain reads t for (b_1 = u_1), so its checkpoints load as step 1.
    implied_step = 1.0
    supports_sparse_grads = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
        nonfinite: NonFinitePolicy = "raise",
        fast: bool | None = None,
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "maximize": maximize,
            "foreach": foreach,
            "differentiable": differentiable,
            "fused": fused,
        }
        super().__init__(params, defaults, nonfinite=nonfinite, fast=fast)

    def validate_group(self, group: Mapping[str, Any]) -> None:
        super().validate_group(group)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                "Nesterov momentum requires a momentum and zero dampening: "
                "nesterov=True requires momentum > 0 and dampening = 0, got "
                f"momentum={group['momentum']}, dampening={group['dampening']}"
            )

    def build_chain(self, options: Mapping[str, Any]) -> Transform:
        blocks = [negate()] if options["maximize"] else []
        blocks.append(add_l2_penalty())
        if options["momentum_on"]:
            blocks.append(trace(nesterov=options["nesterov"]))
        blocks.append(scale_by_learning_rate())
        return chain(*blocks)


class Momentum(SGD):
    r"""The lecture's Momentum: SGD with heavy-ball momentum 0.9 by default.

    Math (Hung-yi Lee's notation, ``lambda`` = momentum)::

        v_t     = lambda * v_{t-1} - eta * g_t
        theta_t = theta_{t-1} + v_t

    which is :class:`SGD` with ``momentum=lambda`` after scaling its buffer by ``-eta``
    (exact while ``eta`` is constant). Chain: ``add_l2_penalty -> trace(momentum) ->
    scale_by_learning_rate``. Matches ``torch.optim.SGD(momentum=0.9)``; Polyak 1964.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        momentum: float = 0.9,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
        nonfinite: NonFinitePolicy = "raise",
        fast: bool | None = None,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
            foreach=foreach,
            differentiable=differentiable,
            fused=fused,
            nonfinite=nonfinite,
            fast=fast,
        )
