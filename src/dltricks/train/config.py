"""What a training run is: the settings that decide its numbers, validated on construction."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["EarlyStopping", "TrainConfig"]


def _check_finite_nonnegative(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class EarlyStopping:
    """Stop when the validation loss has not improved for more than ``patience`` epochs.

    An epoch *improves* when its validation loss is below ``best - min_delta`` (a NaN loss never
    improves). ``patience`` is the number of non-improving epochs tolerated in a row: the run
    stops at the end of the ``patience + 1``-th consecutive one, so ``patience=0`` stops at the
    first epoch that does not improve. (Keras and Lightning stop at the ``patience``-th; ours
    tolerates exactly ``patience`` bad epochs.) With ``restore_best`` the model ends with the
    weights of the best epoch, as the lecture's early stopping prescribes.
    """

    patience: int = 10
    min_delta: float = 0.0
    restore_best: bool = True

    def __post_init__(self) -> None:
        _check_int("patience", self.patience, 0)
        _check_finite_nonnegative("min_delta", self.min_delta)
        if not isinstance(self.restore_best, bool):
            raise ValueError(f"restore_best must be a bool, got {self.restore_best!r}")


@dataclass(frozen=True)
class TrainConfig:
    """The settings of a run; everything here can change the numbers, so it is checkpointed.

    Args:
        epochs: passes over the train split (>= 1).
        batch_size: examples per optimizer step (>= 1), or ``None`` for full-batch steps.
            The last batch of an epoch may be smaller (nothing is dropped).
        l1: coefficient of the L1 penalty ``l1 * sum |w|`` added to the loss.
        l2: coefficient of the L2 penalty ``(l2 / 2) * sum w^2`` added to the loss, so with
            plain SGD an L2 step is ``w <- (1 - lr * l2) w - lr * dL/dw`` (the lecture's form,
            and torch.optim.SGD's ``weight_decay=l2``). This is *coupled* regularisation: the
            penalty's gradient goes through the optimizer, so an adaptive optimizer rescales it.
            Decoupled weight decay (Loshchilov & Hutter 2019) is applied by the optimizer
            itself, e.g. ``torch.optim.AdamW(weight_decay=...)``; use one or the other.
        penalize_biases: also penalise 1-D parameters (biases, norm scales, PReLU slopes). Off
            by default: penalties are meant for weight matrices and kernels.
        early_stopping: the early-stopping rule on validation loss, or ``None`` to train all
            ``epochs`` (the model then ends with its last weights).
        seed: seeds the batch order and the trainer's own torch RNG stream (dropout masks).
        shuffle: reshuffle the train split every epoch (otherwise batches follow data order).
        eval_batch_size: chunk size for evaluation (memory only; does not change which
            examples are evaluated).
    """

    epochs: int
    batch_size: int | None = 64
    l1: float = 0.0
    l2: float = 0.0
    penalize_biases: bool = False
    early_stopping: EarlyStopping | None = None
    seed: int = 0
    shuffle: bool = True
    eval_batch_size: int = 4096

    def __post_init__(self) -> None:
        _check_int("epochs", self.epochs, 1)
        if self.batch_size is not None:
            _check_int("batch_size", self.batch_size, 1)
        _check_finite_nonnegative("l1", self.l1)
        _check_finite_nonnegative("l2", self.l2)
        _check_int("seed", self.seed, 0)
        _check_int("eval_batch_size", self.eval_batch_size, 1)
        if self.early_stopping is not None and not isinstance(self.early_stopping, EarlyStopping):
            raise ValueError(
                f"early_stopping must be an EarlyStopping or None, got {self.early_stopping!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (nested ``early_stopping`` as a dict or ``None``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """The settings :meth:`to_dict` wrote (``early_stopping`` rebuilt from its dict)."""
        fields = dict(data)
        stopping = fields.get("early_stopping")
        if isinstance(stopping, dict):
            fields["early_stopping"] = EarlyStopping(**stopping)
        return cls(**fields)
