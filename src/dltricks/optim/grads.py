"""Which gradients a step takes: shared by the eager and the fast path."""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor


def params_with_grad(params: Iterable[Tensor]) -> list[Tensor]:
    """The parameters that have a gradient this step (the ones a step updates); ValueError
    for a sparse gradient, which no dltricks optimizer supports."""
    out = [p for p in params if p.grad is not None]
    for p in out:
        reject_sparse(p.grad)
    return out


def reject_sparse(grad: Tensor | None) -> None:
    """ValueError when ``grad`` is sparse."""
    if grad is not None and grad.is_sparse:
        raise ValueError("sparse gradients are not supported by dltricks optimizers")
