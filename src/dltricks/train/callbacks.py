"""Hooks into the training loop, for diagnostics that watch a run without changing it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dltricks.train.result import EpochRecord

__all__ = ["Callback", "EpochContext", "StepContext"]


@dataclass(frozen=True)
class StepContext:
    """The state at one optimizer step.

    ``epoch`` counts from 1, ``step`` is the number of optimizer steps taken before this one
    (0 for the first), ``batch_index`` the batch within the epoch. ``loss`` is the mini-batch
    data loss and ``penalty`` the regularisation term (``None`` when unregularised), both
    detached; reading them with ``float()`` synchronises a GPU, so do it only when needed.
    """

    epoch: int
    step: int
    batch_index: int
    loss: torch.Tensor
    penalty: torch.Tensor | None
    model: nn.Module
    optimizer: torch.optim.Optimizer


@dataclass(frozen=True)
class EpochContext:
    """The record of a finished epoch, with the model and optimizer as they are after it."""

    record: EpochRecord
    model: nn.Module
    optimizer: torch.optim.Optimizer


class Callback:
    """Subclass and override the hooks you need; every hook does nothing by default.

    Hooks run with the trainer's torch RNG forked, so a callback that draws random numbers
    (a random probe batch, say) does not change the run's dropout masks, and the trainer puts
    the model back in train mode afterwards. Callback state is not checkpointed.

    * :meth:`on_after_backward`: gradients of this step are in ``.grad``, weights not yet
      updated (per-layer gradient norms).
    * :meth:`on_step_end`: after ``optimizer.step()``; ``.grad`` still holds this step's
      gradients (update-to-weight ratios need a copy of the weights from the previous hook).
    * :meth:`on_epoch_end`: after the epoch's metrics and its checkpoint are written, so an
      exception raised here leaves a checkpoint to resume from.
    """

    def on_after_backward(self, ctx: StepContext) -> None:
        """Called after ``loss.backward()``, before ``optimizer.step()``."""

    def on_step_end(self, ctx: StepContext) -> None:
        """Called after ``optimizer.step()``."""

    def on_epoch_end(self, ctx: EpochContext) -> None:
        """Called after the epoch's evaluation and checkpoint."""
