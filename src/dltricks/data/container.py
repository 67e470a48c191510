"""The one in-memory container every dataset loader returns."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

__all__ = ["SplitDataset"]


@dataclass(frozen=True)
class SplitDataset:
    """A classification data set split into train, validation and test tensors.

    Features are float32 of shape ``(n, n_features)`` (images are flattened; ``input_shape``
    keeps their original shape for models that want it, e.g. ``(28, 28)`` or ``(40,)``).
    Labels are int64 of shape ``(n,)`` with values in ``[0, n_classes)``.

    ``feature_mean`` and ``feature_std`` hold the train-split statistics used to standardise
    all three splits (``None`` when the data were not standardised), so new inputs can be
    transformed the same way: ``(x - feature_mean) / feature_std``.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    input_shape: tuple[int, ...]
    feature_mean: torch.Tensor | None = None
    feature_std: torch.Tensor | None = None

    def __post_init__(self) -> None:
        n_features = self.x_train.shape[1] if self.x_train.dim() == 2 else -1
        for split in ("train", "val", "test"):
            x = getattr(self, f"x_{split}")
            y = getattr(self, f"y_{split}")
            if x.dim() != 2 or x.shape[1] != n_features:
                raise ValueError(
                    f"x_{split} must have shape (n, {n_features}), got {tuple(x.shape)}"
                )
            if y.dim() != 1 or y.shape[0] != x.shape[0]:
                raise ValueError(f"y_{split} must have shape ({x.shape[0]},), got {tuple(y.shape)}")
        if self.n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {self.n_classes}")

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_val(self) -> int:
        return int(self.x_val.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.x_test.shape[0])

    @property
    def device(self) -> torch.device:
        return self.x_train.device

    def to(self, device: torch.device | str) -> SplitDataset:
        """Return a copy with every tensor on ``device`` (self if already there)."""
        target = torch.device(device)
        if self.device == target:
            return self

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(target)

        return replace(
            self,
            x_train=self.x_train.to(target),
            y_train=self.y_train.to(target),
            x_val=self.x_val.to(target),
            y_val=self.y_val.to(target),
            x_test=self.x_test.to(target),
            y_test=self.y_test.to(target),
            feature_mean=move(self.feature_mean),
            feature_std=move(self.feature_std),
        )

    def summary(self) -> dict[str, Any]:
        """JSON-ready description (sizes, not data) for results files."""
        return {
            "name": self.name,
            "n_train": self.n_train,
            "n_val": self.n_val,
            "n_test": self.n_test,
            "n_features": self.n_features,
            "n_classes": self.n_classes,
            "input_shape": list(self.input_shape),
            "standardized": self.feature_mean is not None,
        }
