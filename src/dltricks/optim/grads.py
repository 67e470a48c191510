"""Which gradients a step takes, and in which form: shared by the eager and the fast path."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


def params_with_grad(params: Iterable[Tensor]) -> list[Tensor]:
    """The parameters that have a gradient this step (the ones a step updates); whether a
    sparse one is taken is the optimizer's call (``ComposedOptimizer.params_to_step``)."""
    return [p for p in params if p.grad is not None]


def reject_sparse(grad: Tensor | None) -> None:
    """ValueError when ``grad`` is sparse: for a parameter held in a fast-path buffer."""
    if grad is not None and grad.is_sparse:
        raise ValueError(
            "sparse gradients are supported by SGD and Adagrad only, and only for parameters "
            "stepped eagerly: a parameter whose first step had a dense gradient (or none) may "
            "sit in a fast-path buffer; pass fast=False for it"
        )


def real_view(tensor: Tensor) -> Tensor:
    """``tensor`` as real numbers: a complex tensor as its (real, imaginary) pairs, as torch's
    optimizers update complex parameters (``torch.view_as_real``); a sparse gradient as the
    dense tensor it stands for (zero rows leave SGD's and Adagrad's update unchanged)."""
    if tensor.is_sparse:
        tensor = tensor.to_dense()
    return torch.view_as_real(tensor) if tensor.is_complex() else tensor
