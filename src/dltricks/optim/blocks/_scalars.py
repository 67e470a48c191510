"""Choosing between hyperparameter-like scalars, on the eager and the compiled path."""

from __future__ import annotations

import torch
from torch import Tensor

from dltricks.optim.base import Scalar


def choose(condition: bool | Tensor, if_true: Scalar, if_false: Scalar) -> Scalar:
    """``if_true if condition else if_false`` for numbers or 0-dim tensors.

    A plain branch for a Python condition; ``torch.where`` for a tensor one (the compiled
    path, or a comparison with a 0-dim state entry), with a Python number taken in float64
    so that it loses no digits before the result is cast where it is stored.
    """
    if not isinstance(condition, Tensor):
        return if_true if condition else if_false
    return torch.where(condition, _tensor(if_true, condition), _tensor(if_false, condition))


def _tensor(value: Scalar, like: Tensor) -> Tensor:
    if isinstance(value, Tensor):
        return value
    return torch.tensor(value, dtype=torch.float64, device=like.device)
