"""Typed records of a run: one per epoch, the final metrics, and the whole result."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["EpochRecord", "SplitMetrics", "StopReason", "TrainResult"]

#: Why a run ended: all epochs done, early stopping, or a non-finite training loss.
StopReason = Literal["epochs", "early_stopping", "diverged"]


@dataclass(frozen=True)
class EpochRecord:
    """Metrics at the end of one epoch (epochs count from 1).

    All losses are the *data* loss (mean cross-entropy by default) without the penalty, measured
    in eval mode over the whole split, so dropout does not distort them and runs with and
    without regularisation compare directly; ``penalty`` is the regularisation term at the same
    weights (0 when unregularised). The training loss averaged over the epoch's mini-batches
    (with dropout active and weights moving) is ``mean_batch_loss``. Validation fields are
    ``None`` when the data have no validation split. ``steps`` counts optimizer steps so far.
    """

    epoch: int
    steps: int
    train_loss: float
    train_accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    test_loss: float
    test_accuracy: float
    penalty: float
    mean_batch_loss: float
    lr: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of this epoch's record."""
        return asdict(self)


@dataclass(frozen=True)
class SplitMetrics:
    """Loss and accuracy of the returned model on each split (val ``None`` without val)."""

    train_loss: float
    train_accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    test_loss: float
    test_accuracy: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the metrics (val entries ``None`` without a validation split)."""
        return asdict(self)


@dataclass(frozen=True)
class TrainResult:
    """Everything a run produced, besides the trained model itself.

    Attributes:
        config: the :class:`~dltricks.train.TrainConfig` as a dict.
        history: one :class:`EpochRecord` per epoch run.
        best_epoch: epoch with the best validation loss (the early-stopping rule's best when
            early stopping is on, else the first epoch with the lowest validation loss);
            ``None`` without a validation split.
        stopped_epoch: the epoch after which early stopping or divergence ended the run, or
            ``None`` when all ``epochs`` ran.
        stop_reason: ``"epochs"``, ``"early_stopping"`` or ``"diverged"``.
        restored_best: whether the model was reset to the weights of ``best_epoch``.
        final: metrics of the returned model (after any restore).
        resumed_from_epoch: the last completed epoch loaded from a checkpoint (0 for a fresh
            run). Bookkeeping only: it is excluded from :meth:`to_dict` so that a resumed run's
            result equals an uninterrupted one's.
    """

    config: dict[str, Any]
    history: list[EpochRecord]
    best_epoch: int | None
    stopped_epoch: int | None
    stop_reason: StopReason
    restored_best: bool
    final: SplitMetrics
    resumed_from_epoch: int = field(default=0, compare=False)

    @property
    def epochs_run(self) -> int:
        """How many epochs ran (``len(history)``)."""
        return len(self.history)

    @property
    def steps(self) -> int:
        """Optimizer steps taken over the whole run."""
        return self.history[-1].steps if self.history else 0

    def curve(self, name: str) -> list[float | None]:
        """One metric over epochs, e.g. ``result.curve("val_loss")``."""
        if name not in EpochRecord.__dataclass_fields__:
            raise ValueError(f"unknown metric {name!r}")
        return [getattr(r, name) for r in self.history]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (floats may be NaN or inf after divergence)."""
        return {
            "config": self.config,
            "history": [r.to_dict() for r in self.history],
            "best_epoch": self.best_epoch,
            "stopped_epoch": self.stopped_epoch,
            "stop_reason": self.stop_reason,
            "restored_best": self.restored_best,
            "epochs_run": self.epochs_run,
            "steps": self.steps,
            "final": self.final.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, resumed_from_epoch: int = 0) -> TrainResult:
        """The result :meth:`to_dict` wrote; ``resumed_from_epoch`` is bookkeeping, not stored."""
        return cls(
            config=dict(data["config"]),
            history=[EpochRecord(**r) for r in data["history"]],
            best_epoch=data["best_epoch"],
            stopped_epoch=data["stopped_epoch"],
            stop_reason=data["stop_reason"],
            restored_best=data["restored_best"],
            final=SplitMetrics(**data["final"]),
            resumed_from_epoch=resumed_from_epoch,
        )
