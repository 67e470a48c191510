"""Synthetic classification sets."""

from __future__ import annotations

import numpy as np
import pytest

from dltricks.data import make_gaussian_mixture, make_teacher_classification


@pytest.mark.parametrize("make", [make_gaussian_mixture, make_teacher_classification])
def test_seeded_and_shaped(make) -> None:
    x1, y1 = make(300, 5, 3, seed=7)
    x2, y2 = make(300, 5, 3, seed=7)
    x3, _ = make(300, 5, 3, seed=8)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(x1, x3)
    assert x1.shape == (300, 5)
    assert x1.dtype == np.float32
    assert y1.shape == (300,)
    assert y1.dtype == np.int64
    assert set(np.unique(y1)) <= {0, 1, 2}


def test_mixture_is_balanced_and_separable() -> None:
    x, y = make_gaussian_mixture(3000, 10, 4, class_sep=8.0, seed=0)
    assert np.bincount(y).tolist() == [750, 750, 750, 750]
    # Nearest-class-mean classifier: well-separated blobs are almost perfectly classified.
    means = np.stack([x[y == c].mean(0) for c in range(4)])
    pred = ((x[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert (pred == y).mean() > 0.95


def test_teacher_uses_several_classes() -> None:
    _, y = make_teacher_classification(2000, 10, 5, seed=0)
    assert len(np.unique(y)) == 5


@pytest.mark.parametrize(
    "args", [(0, 3, 2), (10, 0, 2), (10, 3, 1)], ids=["samples", "features", "classes"]
)
def test_bad_sizes(args: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError, match="must be"):
        make_gaussian_mixture(*args)
