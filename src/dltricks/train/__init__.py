"""The trainer: any classifier, any ``torch.optim`` optimizer, the data of ``dltricks.data``.

``fit(model, optimizer, data, TrainConfig(...))`` runs mini-batch training with the lecture's
three test-side tricks: early stopping on validation loss (:class:`EarlyStopping`), L1/L2
penalties in the loss (``TrainConfig.l1``/``l2``; decoupled weight decay belongs to the
optimizer), and dropout (in the model; the trainer switches train/eval modes). It returns a
:class:`TrainResult` with per-epoch :class:`EpochRecord` history, is bit-reproducible on CPU
for a seed, and resumes exactly from its per-epoch checkpoints.
"""

from __future__ import annotations

from dltricks.train.callbacks import Callback, EpochContext, StepContext
from dltricks.train.checkpoint import (
    CheckpointError,
    CheckpointLockedError,
    CheckpointMismatchError,
    load_checkpoint,
    save_checkpoint,
)
from dltricks.train.config import EarlyStopping, TrainConfig
from dltricks.train.early_stopping import EarlyStoppingMonitor
from dltricks.train.loop import OptimizerFactory, fit
from dltricks.train.metrics import LossFn, evaluate
from dltricks.train.regularization import (
    l1_penalty,
    l2_penalty,
    penalized_parameters,
    regularization_penalty,
)
from dltricks.train.result import EpochRecord, SplitMetrics, StopReason, TrainResult

__all__ = [
    "Callback",
    "CheckpointError",
    "CheckpointLockedError",
    "CheckpointMismatchError",
    "EarlyStopping",
    "EarlyStoppingMonitor",
    "EpochContext",
    "EpochRecord",
    "LossFn",
    "OptimizerFactory",
    "SplitMetrics",
    "StepContext",
    "StopReason",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "fit",
    "l1_penalty",
    "l2_penalty",
    "load_checkpoint",
    "penalized_parameters",
    "regularization_penalty",
    "save_checkpoint",
]
