"""Muon: momentum, orthogonalised by Newton-Schulz, for the hidden matrices of a network."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from dltricks.optim.adapter import ComposedOptimizer, DerivedOption, NonFinitePolicy
from dltricks.optim.base import Hyperparameter, Transform
from dltricks.optim.blocks import add_decayed_weights, ema, scale_by_learning_rate
from dltricks.optim.blocks.orthogonalize import (
    ADJUST_LR_FNS,
    NS_COEFFICIENTS,
    shape_scaled_orthogonalize,
)
from dltricks.optim.combine import branch, chain, identity, lerp_merge

EPS = 1e-7
"""torch.optim.Muon's default ``eps`` (the Frobenius norm's floor before Newton-Schulz)."""


def muon_update(
    *,
    nesterov: bool = True,
    ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
    ns_steps: int = 5,
    eps: Hyperparameter = EPS,
    adjust_lr_fn: str | None = None,
    momentum: Hyperparameter = "momentum",
    lr: Hyperparameter = "lr",
    weight_decay: Hyperparameter = "weight_decay",
) -> Transform:
    """Muon's whole update as a chain, for :func:`~dltricks.optim.partition.partition` and
    :class:`~dltricks.optim.ChainOptimizer` (:class:`Muon` is this chain as an optimizer).

    Math (``mu`` = momentum, ``s(A, B)`` the shape factor of ``adjust_lr_fn``)::

        B_t     = mu B_{t-1} + (1 - mu) g_t                     (momentum_buffer, from 0)
        N_t     = g_t + mu (B_t - g_t)  if nesterov  else  B_t
        O_t     = NS_k^{(a,b,c)}(N_t; eps)                      (bfloat16, then cast back)
        theta_t = theta_{t-1} - eta (s(A, B) O_t + lambda theta_{t-1})

    Chain: ``branch(identity, ema(momentum) -> momentum_buffer; lerp(momentum))`` (or just
    the ema without Nesterov) ``-> shape_scaled_orthogonalize -> add_decayed_weights ->
    scale_by_learning_rate``: elementwise, per tensor, elementwise. On the fast path the first
    and last stretches are each one kernel over the flat buffers, and Newton-Schulz runs per
    matrix between them. Only for 2-D parameters.
    """
    moment = ema(momentum, key="momentum_buffer")
    direction = branch(identity(), moment, merge=lerp_merge(momentum)) if nesterov else moment
    return chain(
        direction,
        shape_scaled_orthogonalize(ns_coefficients, ns_steps, eps, adjust_lr_fn),
        add_decayed_weights(weight_decay),
        scale_by_learning_rate(lr),
    )


def _check_scalar(name: str, value: Any, message: str) -> None:
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"Tensor {name} must be 1-element")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not value >= 0.0:
        raise ValueError(message.format(value))


class Muon(ComposedOptimizer):
    r"""Muon (MomentUm Orthogonalized by Newton-Schulz); drop-in for ``torch.optim.Muon``.

    Math (torch's, ``mu`` = momentum, ``lambda`` = weight_decay, ``k`` = ns_steps)::

        B_t     = mu B_{t-1} + (1 - mu) g_t              (momentum_buffer, a lerp from 0)
        N_t     = lerp(g_t, B_t, mu)  if nesterov  else  B_t
        O_t     = NS_k^{(a,b,c)}(N_t / max(||N_t||_F, eps))     in bfloat16
        theta_t = (1 - eta lambda) theta_{t-1} - eta s(A, B) O_t

    with ``s = sqrt(max(1, A/B))`` (``adjust_lr_fn`` None or "original", Jordan) or
    ``0.2 sqrt(max(A, B))`` ("match_rms_adamw", Moonlight). Chain: :func:`muon_update`,
    ``branch(identity, ema(momentum); lerp(momentum)) -> shape_scaled_orthogonalize ->
    add_decayed_weights -> scale_by_learning_rate``. The orthogonalisation reads the whole
    matrix and runs per tensor; on the fast path the momentum before it and the step after it
    are each one fused kernel over the flat buffers.

    Only 2-D parameters (ValueError otherwise): give the embeddings, biases, norms and the
    output head to AdamW, in the same optimizer with
    :func:`~dltricks.optim.partition.partition` (see the README's recipe). Jordan et al.
    2024, "Muon: An optimizer for hidden layers in neural networks"; Liu et al. 2025, "Muon is
    Scalable for LLM Training".
    """

    structural_options = ("nesterov", "ns_coefficients", "ns_steps", "adjust_lr_fn")
    derived_options: ClassVar[Mapping[str, DerivedOption]] = {
        "ns_coefficients": lambda group: tuple(group["ns_coefficients"])
    }
    # torch's Muon keeps no step count, and the chain never reads t.
    implied_step = 0.0
    # torch's Muon has no implementation flags (no foreach, maximize or differentiable).
    flag_defaults: ClassVar[Mapping[str, Any]] = {}

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
        eps: float = EPS,
        ns_steps: int = 5,
        adjust_lr_fn: str | None = None,
        *,
        nonfinite: NonFinitePolicy = "raise",
        fast: bool | None = None,
    ) -> None:
        defaults = {
            "lr": lr,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "nesterov": nesterov,
            "ns_coefficients": ns_coefficients,
            "eps": eps,
            "ns_steps": ns_steps,
            "adjust_lr_fn": adjust_lr_fn,
        }
        super().__init__(params, defaults, nonfinite=nonfinite, fast=fast)

    def validate_group(self, group: Mapping[str, Any]) -> None:
        # torch's checks and messages first, then the rest of what a step needs.
        _check_scalar("lr", group["lr"], "Learning rate should be >= 0 but is: {}")
        _check_scalar("momentum", group["momentum"], "momentum should be >= 0 but is: {}")
        _check_scalar(
            "weight_decay", group["weight_decay"], "weight decay should be >= 0 but is: {}"
        )
        if group["adjust_lr_fn"] not in ADJUST_LR_FNS:
            raise ValueError(
                f"Adjust learning rate function {group['adjust_lr_fn']} is not supported"
            )
        _check_scalar("eps", group["eps"], "eps should be >= 0 but is: {}")
        if not isinstance(group["nesterov"], bool):
            raise ValueError(f"nesterov must be True or False, got {group['nesterov']!r}")
        steps = group["ns_steps"]
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"ns_steps must be a whole number >= 0, got {steps!r}")
        if steps >= 100:
            raise ValueError("Number of steps must be less than 100 for computational efficiency")
        coefficients = group["ns_coefficients"]
        if not isinstance(coefficients, tuple | list) or len(coefficients) != 3:
            raise ValueError("Coefficients must be a tuple of exactly 3 values")
        super().validate_group(group)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        params = param_group["params"]
        tensors = [params] if isinstance(params, Tensor) else list(params)
        for entry in tensors:
            p = entry[1] if isinstance(entry, tuple) and len(entry) == 2 else entry
            if isinstance(p, Tensor) and p.ndim != 2:
                raise ValueError(
                    "Muon only supports 2D parameters whereas we found a parameter with "
                    f"size: {p.size()}"
                )
        super().add_param_group({**param_group, "params": tensors})

    def params_to_step(self, group: Mapping[str, Any], params: Iterable[Tensor]) -> list[Tensor]:
        out = super().params_to_step(group, params)
        if any(torch.is_complex(p) for p in out):
            raise RuntimeError("Muon does not support complex parameters")
        return out

    def build_chain(self, options: Mapping[str, Any]) -> Transform:
        return muon_update(
            nesterov=options["nesterov"],
            ns_coefficients=options["ns_coefficients"],
            ns_steps=options["ns_steps"],
            eps="eps",
            adjust_lr_fn=options["adjust_lr_fn"],
        )
