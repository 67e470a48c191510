"""Evaluation of a classifier on a whole split, in eval mode and without gradients."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["LossFn", "evaluate"]

#: ``loss_fn(logits, targets) -> mean loss`` (a 0-d tensor), e.g. ``F.cross_entropy``.
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: LossFn,
    batch_size: int,
) -> tuple[float, float]:
    """Return ``(mean loss, accuracy)`` of ``model`` on ``(x, y)``.

    The caller sets the mode (the trainer uses eval mode). Chunks of ``batch_size`` bound the
    memory; their mean losses are weighted by chunk size and summed in float64, so the result
    is the mean over all examples. An empty split gives ``(nan, nan)``.
    """
    n = int(x.shape[0])
    if n == 0:
        return float("nan"), float("nan")
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    for start in range(0, n, batch_size):
        xb = x[start : start + batch_size]
        yb = y[start : start + batch_size]
        logits = model(xb)
        total += loss_fn(logits, yb).double() * xb.shape[0]
        correct += (logits.argmax(dim=1) == yb).sum()
    return float(total) / n, int(correct) / n
