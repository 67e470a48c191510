"""Seeded, stratified splits and train-only standardisation."""

from __future__ import annotations

import numpy as np

__all__ = ["StandardScaler", "fit_standardizer", "stratified_split"]


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices ``0..n-1`` into (kept, held_out) with ``held_out`` about ``fraction * n``.

    Stratified: every class contributes to ``held_out`` in proportion to its size, so a small
    validation set still has all classes in their original shares. The held-out size is exactly
    ``round(fraction * n)``; per-class counts are floors of the proportional share, and the
    remaining slots go to the classes with the largest remainders (ties broken by class label),
    which keeps the result deterministic. Within a class, members are drawn with
    ``numpy.random.default_rng(seed)``, so the same seed always gives the same split.

    Both index arrays are sorted, so the original order of the data is kept within each part.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    n = labels.shape[0]
    n_held = round(fraction * n)
    if n_held == 0:
        return np.arange(n), np.empty(0, dtype=np.int64)

    classes, counts = np.unique(labels, return_counts=True)
    share = counts * (n_held / n)
    per_class = np.floor(share).astype(np.int64)
    leftover = n_held - int(per_class.sum())
    # Largest remainder first; a stable sort on the negated remainders breaks ties by class.
    order = np.argsort(-(share - per_class), kind="stable")
    per_class[order[:leftover]] += 1

    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for cls, k in zip(classes, per_class, strict=True):
        members = np.flatnonzero(labels == cls)
        held.append(rng.permutation(members)[:k])
    held_idx = np.sort(np.concatenate(held)).astype(np.int64)
    mask = np.ones(n, dtype=bool)
    mask[held_idx] = False
    return np.flatnonzero(mask).astype(np.int64), held_idx


class StandardScaler:
    """Per-feature ``(x - mean) / std`` with statistics fitted on one array (the train split).

    Features with zero variance in the fitted data (e.g. always-black MNIST border pixels) get
    ``std = 1`` so they map to ``x - mean`` instead of dividing by zero.
    """

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.mean = mean
        self.std = std

    def transform(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.std).astype(np.float32)


def fit_standardizer(x_train: np.ndarray) -> StandardScaler:
    """Fit a :class:`StandardScaler` on ``x_train`` only (float64 statistics)."""
    x64 = np.asarray(x_train, dtype=np.float64)
    mean = x64.mean(axis=0)
    std = x64.std(axis=0)
    std = np.where(std > 0.0, std, 1.0)
    return StandardScaler(mean, std)
