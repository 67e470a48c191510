"""Seeded synthetic classification sets, for experiments that need a known ground truth."""

from __future__ import annotations

import numpy as np

__all__ = ["make_gaussian_mixture", "make_teacher_classification"]


def _check_sizes(n_samples: int, n_features: int, n_classes: int) -> None:
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    if n_features < 1:
        raise ValueError(f"n_features must be >= 1, got {n_features}")
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")


def make_gaussian_mixture(
    n_samples: int,
    n_features: int,
    n_classes: int,
    *,
    class_sep: float = 2.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """One isotropic Gaussian blob per class.

    Class means are drawn from ``N(0, class_sep^2 / n_features * I)`` (so the typical distance
    between two means is about ``class_sep * sqrt(2)`` whatever the dimension), samples are
    ``mean + N(0, I)``. Labels cycle through the classes, so classes are balanced to within one.
    Returns float32 features of shape ``(n_samples, n_features)`` and int64 labels.
    """
    _check_sizes(n_samples, n_features, n_classes)
    if class_sep < 0:
        raise ValueError(f"class_sep must be >= 0, got {class_sep}")
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, class_sep / np.sqrt(n_features), size=(n_classes, n_features))
    labels = rng.permutation(np.arange(n_samples) % n_classes).astype(np.int64)
    x = means[labels] + rng.normal(size=(n_samples, n_features))
    return x.astype(np.float32), labels


def make_teacher_classification(
    n_samples: int,
    n_features: int,
    n_classes: int,
    *,
    hidden: int = 32,
    depth: int = 2,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Labels from a random tanh "teacher" MLP applied to standard normal inputs.

    The teacher has ``depth`` hidden layers of width ``hidden`` with weights ``N(0, 1/fan_in)``
    and tanh, and a linear read-out; the label is the argmax of its output. A student of the
    same shape can reach 100% accuracy, so the data separate optimisation from capacity.
    Classes are not exactly balanced.
    """
    _check_sizes(n_samples, n_features, n_classes)
    if hidden < 1 or depth < 0:
        raise ValueError(f"hidden must be >= 1 and depth >= 0, got {hidden}, {depth}")
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_samples, n_features))
    h = x
    fan_in = n_features
    for _ in range(depth):
        h = np.tanh(h @ rng.normal(0.0, 1.0 / np.sqrt(fan_in), size=(fan_in, hidden)))
        fan_in = hidden
    logits = h @ rng.normal(0.0, 1.0 / np.sqrt(fan_in), size=(fan_in, n_classes))
    return x.astype(np.float32), logits.argmax(axis=1).astype(np.int64)
