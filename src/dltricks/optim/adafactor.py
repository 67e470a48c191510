"""Adafactor: a factored second moment, update clipping and a relative step size."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from dltricks.optim.adapter import NON_NEGATIVE_STATE, ComposedOptimizer, NonFinitePolicy
from dltricks.optim.base import Scalar, Transform
from dltricks.optim.blocks import negate
from dltricks.optim.blocks.factored import (
    clip_by_block_rms,
    decay_weights,
    factored_second_moment,
    scale_by_relative_step,
)
from dltricks.optim.combine import chain
from dltricks.optim.validation import check_flag, check_implementation_flags


def _number(value: Any) -> float:
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)


class Adafactor(ComposedOptimizer):
    r"""Adafactor; drop-in for ``torch.optim.Adafactor``.

    Math (torch's, ``tau`` = beta2_decay, ``d`` the clipping threshold, for a matrix ``G_t``
    of shape ``(n, m)``; a vector keeps a full ``V_t``)::

        beta2hat_t = 1 - t^tau
        rho_t      = min(eta, 1 / sqrt(t))
        alpha_t    = max(eps2, RMS(theta_{t-1})) rho_t
        R_t        = beta2hat_t R_{t-1} + (1 - beta2hat_t) mean_j G_ij^2       (row_var)
        C_t        = beta2hat_t C_{t-1} + (1 - beta2hat_t) mean_i G_ij^2       (col_var)
        V_t        = R_t C_t / max(mean_i R_t, eps1)
        U_t        = G_t / sqrt(max(V_t, eps1^2))
        theta_t    = (1 - eta lambda) theta_{t-1} - alpha_t U_t / max(1, RMS(U_t) / d)

    ``eps1`` None means the parameter dtype's machine epsilon. Chain: ``[negate] ->
    factored_second_moment(beta2_decay, eps1) -> clip_by_block_rms(d) ->
    scale_by_relative_step(lr, eps2) -> decay_weights(lr, weight_decay)``; the three in the
    middle read whole tensors and run per tensor; on the fast path the negation and the last
    block (the decay and the step) are fused kernels over the flat buffers. State per
    ``(n, m)`` matrix: ``n + m`` numbers instead of Adam's ``2 n m``. Shazeer & Stern 2018,
    "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost".
    """

    structural_options = ("maximize",)
    flags = ("maximize",)
    # What torch.optim.Adafactor's __setstate__ fills in (foreach), and maximize, whose
    # absence torch's step would not survive; torch's Adafactor has no ``differentiable``.
    flag_defaults: ClassVar[Mapping[str, Any]] = {"foreach": None, "maximize": False}
    non_negative_state = (*NON_NEGATIVE_STATE, "row_var", "col_var", "variance")

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 1e-2,
        beta2_decay: float = -0.8,
        eps: tuple[float | None, float] = (None, 1e-3),
        d: float = 1.0,
        weight_decay: float = 0.0,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        nonfinite: NonFinitePolicy = "raise",
        fast: bool | None = None,
    ) -> None:
        defaults = {
            "lr": lr,
            "beta2_decay": beta2_decay,
            "eps": eps,
            "d": d,
            "weight_decay": weight_decay,
            "foreach": foreach,
            "maximize": maximize,
        }
        super().__init__(params, defaults, nonfinite=nonfinite, fast=fast)

    def validate_group(self, group: Mapping[str, Any]) -> None:
        # torch's checks, in torch's order, with torch's messages.
        lr = _number(group["lr"])
        if not lr >= 0.0:
            raise ValueError(f"Learning rate should be >= 0 but is: {lr}")
        beta2_decay = _number(group["beta2_decay"])
        if not beta2_decay <= 0.0:
            raise ValueError(f"beta2_decay should be <= 0 but is: {beta2_decay}")
        eps = group["eps"]
        if not isinstance(eps, tuple | list) or len(eps) != 2:
            raise ValueError(f"eps must be a pair (eps1, eps2), got {eps!r}")
        if eps[0] is not None and not _number(eps[0]) >= 0.0:
            raise ValueError(f"epsilon1 should be >= 0 but is: {eps[0]}")
        if not _number(eps[1]) >= 0.0:
            raise ValueError(f"epsilon2 should be >= 0 but is: {eps[1]}")
        if not _number(group["d"]) >= 1.0:
            raise ValueError(f"Clipping threshold d should be >= 1 but is: {group['d']}")
        if not _number(group["weight_decay"]) >= 0.0:
            raise ValueError(f"weight_decay should be >= 0 but is: {group['weight_decay']}")
        check_flag("maximize", group["maximize"])
        check_implementation_flags(group, type(self).__name__)

    @staticmethod
    def group_hyper(group: Mapping[str, Any]) -> dict[str, Scalar]:
        """The group's numbers, with ``eps`` split into ``eps1`` (absent when None) and
        ``eps2``."""
        hyper = ComposedOptimizer.group_hyper(group)
        eps1, eps2 = group["eps"]
        if eps1 is not None:
            hyper["eps1"] = _number(eps1)
        hyper["eps2"] = _number(eps2)
        return hyper

    @staticmethod
    def group_value(group: Mapping[str, Any], name: str) -> Scalar:
        """One entry of :meth:`group_hyper`, ``eps1`` and ``eps2`` included."""
        if name in ("eps1", "eps2"):
            value = group["eps"][name == "eps2"]
            if value is None:
                raise KeyError(name)
            return _number(value)
        return ComposedOptimizer.group_value(group, name)

    def params_to_step(self, group: Mapping[str, Any], params: Iterable[Tensor]) -> list[Tensor]:
        out = super().params_to_step(group, params)
        if any(torch.is_complex(p) for p in out):
            raise RuntimeError("Adafactor does not support complex parameters")
        return out

    def build_chain(self, options: Mapping[str, Any]) -> Transform:
        blocks = [negate()] if options["maximize"] else []
        blocks += [
            factored_second_moment("beta2_decay", "eps1"),
            clip_by_block_rms("d"),
            scale_by_relative_step("lr", "eps2"),
            decay_weights("lr", "weight_decay"),
        ]
        return chain(*blocks)
