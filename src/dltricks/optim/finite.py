"""The non-finite gradient check shared by the eager and the fast path."""

from __future__ import annotations

import cmath
from collections.abc import Sequence

import torch
from torch import Tensor


def all_finite(grads: Sequence[Tensor]) -> bool:
    """Whether every element of every tensor in ``grads`` is finite.

    A sum is finite when every element is, unless finite values overflow; a non-finite sum is
    confirmed elementwise, so the answer is exact. The sum reads each gradient once at
    streaming speed and allocates nothing of its size (``isfinite`` would), with one host sync
    per step.
    """
    if not grads:
        return True
    if len(grads) == 1 and grads[0].device.type == "cpu":  # the usual fast-path step
        if cmath.isfinite(grads[0].sum().item()):
            return True
        return _confirm_elementwise(grads)
    sums = [g.sum() for g in grads]
    if all(s.device.type == "cpu" for s in sums):
        if all(cmath.isfinite(s.item()) for s in sums):
            return True
    elif bool(torch.stack([torch.isfinite(s) for s in sums]).all()):
        return True
    return _confirm_elementwise(grads)


def _confirm_elementwise(grads: Sequence[Tensor]) -> bool:
    """Whether every element is finite, tensor by tensor (a non-finite sum may overflow)."""
    for g in grads:
        if g.is_sparse:
            g = g.coalesce().values()
        if g.is_complex():
            g = torch.view_as_real(g)
        if g.numel() == 0:
            continue
        low, high = torch.aminmax(g)
        if not (bool(torch.isfinite(low)) and bool(torch.isfinite(high))):
            return False
    return True
