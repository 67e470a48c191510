"""The early-stopping state machine, separate from the loop so it can be tested on its own."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from dltricks.train.config import EarlyStopping

__all__ = ["EarlyStoppingMonitor"]


class EarlyStoppingMonitor:
    """Tracks the best validation loss and decides when to stop (rule: :class:`EarlyStopping`).

    Call :meth:`update` once per epoch with the validation loss; it records a copy of the
    model's weights whenever the epoch improves (only if ``restore_best``), and returns
    ``True`` when training should stop.
    """

    def __init__(self, rule: EarlyStopping) -> None:
        self.rule = rule
        self.best_loss = math.inf
        self.best_epoch: int | None = None
        self.bad_epochs = 0
        self.best_state: dict[str, torch.Tensor] | None = None

    def update(self, epoch: int, val_loss: float, model: nn.Module | None = None) -> bool:
        """Record epoch ``epoch``'s validation loss; return whether to stop now."""
        if val_loss < self.best_loss - self.rule.min_delta:
            self.best_loss = val_loss
            self.best_epoch = epoch
            self.bad_epochs = 0
            if self.rule.restore_best and model is not None:
                # clone: state_dict() shares storage with the live parameters.
                self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return False
        self.bad_epochs += 1
        return self.bad_epochs > self.rule.patience

    def restore(self, model: nn.Module) -> bool:
        """Load the best weights into ``model`` if they were recorded; return whether it did."""
        if not self.rule.restore_best or self.best_state is None:
            return False
        model.load_state_dict(self.best_state)
        return True

    def state_dict(self) -> dict[str, Any]:
        """The rule's progress, for a checkpoint: best loss and epoch, epochs without
        improvement, best weights."""
        return {
            "best_loss": self.best_loss,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "best_state": self.best_state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the progress :meth:`state_dict` returned, to resume a run where it stopped."""
        self.best_loss = float(state["best_loss"])
        self.best_epoch = state["best_epoch"]
        self.bad_epochs = int(state["bad_epochs"])
        self.best_state = state["best_state"]
