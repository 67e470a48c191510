"""Stratified splits and train-only standardisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dltricks.data import fit_standardizer, make_split_dataset, stratified_split


def labels_fixture() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.permutation(np.repeat(np.arange(5), [50, 30, 20, 13, 7]))


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 0.5, 0.9])
def test_split_is_a_partition_of_exact_size(fraction: float) -> None:
    y = labels_fixture()
    keep, held = stratified_split(y, fraction, seed=0)
    assert len(np.intersect1d(keep, held)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([keep, held])), np.arange(len(y)))
    assert len(held) == round(fraction * len(y))


def test_split_is_stratified() -> None:
    y = labels_fixture()
    _, held = stratified_split(y, 0.2, seed=5)
    counts = np.bincount(y[held], minlength=5)
    expected = np.bincount(y, minlength=5) * 0.2
    assert np.all(np.abs(counts - expected) < 1.0)


def test_split_is_deterministic_and_seeded() -> None:
    y = labels_fixture()
    a = stratified_split(y, 0.3, seed=1)
    b = stratified_split(y, 0.3, seed=1)
    c = stratified_split(y, 0.3, seed=2)
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_split_rejects_bad_fraction(fraction: float) -> None:
    with pytest.raises(ValueError, match="fraction"):
        stratified_split(np.zeros(10), fraction, seed=0)


def test_standardizer_handles_constant_features() -> None:
    x = np.array([[1.0, 5.0], [3.0, 5.0]])
    scaler = fit_standardizer(x)
    np.testing.assert_allclose(scaler.transform(x), [[-1.0, 0.0], [1.0, 0.0]])


def make_arrays(seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    x_train = rng.normal(3.0, 2.0, size=(200, 6))
    x_train[:, 5] = 7.0  # a constant feature
    y_train = np.arange(200) % 4
    x_test = rng.normal(-1.0, 5.0, size=(50, 6))
    y_test = np.arange(50) % 4
    return x_train, y_train, x_test, y_test


def test_standardisation_uses_train_split_statistics_only() -> None:
    x_train, y_train, x_test, y_test = make_arrays()
    data = make_split_dataset("t", x_train, y_train, x_test, y_test, n_classes=4, seed=3)
    raw = make_split_dataset(
        "t", x_train, y_train, x_test, y_test, n_classes=4, seed=3, standardize=False
    )
    # Reference statistics computed here from the (unstandardised) train split.
    mean = raw.x_train.double().mean(0)
    std = raw.x_train.double().std(0, unbiased=False)
    std[std == 0] = 1.0
    for split in ("train", "val", "test"):
        expected = (getattr(raw, f"x_{split}").double() - mean) / std
        # float32 storage of the raw split differs from the float64 source by ~1e-7.
        torch.testing.assert_close(
            getattr(data, f"x_{split}").double(), expected, rtol=1e-6, atol=1e-6
        )
    # Changing validation or test data leaves the statistics alone.
    other = make_split_dataset("t", x_train, y_train, x_test * 100 + 4, y_test, n_classes=4, seed=3)
    assert data.feature_mean is not None
    assert other.feature_mean is not None
    torch.testing.assert_close(other.feature_mean, data.feature_mean, rtol=0, atol=0)


def test_validation_split_carved_from_train() -> None:
    x_train, y_train, x_test, y_test = make_arrays()
    x_train[:, 0] = np.arange(200)  # an id column to trace rows
    data = make_split_dataset(
        "t", x_train, y_train, x_test, y_test, n_classes=4, seed=0, standardize=False
    )
    ids_train = set(data.x_train[:, 0].long().tolist())
    ids_val = set(data.x_val[:, 0].long().tolist())
    assert ids_train.isdisjoint(ids_val)
    assert ids_train | ids_val == set(range(200))
    assert data.n_val == 20
    assert data.n_test == 50
    assert data.x_train.dtype == torch.float32
    assert data.y_train.dtype == torch.int64


def test_split_dataset_validates_shapes() -> None:
    from dltricks.data import SplitDataset

    x = torch.zeros(4, 3)
    y = torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="y_val"):
        SplitDataset("t", x, y, x, y[:3], x, y, n_classes=2, input_shape=(3,))
    with pytest.raises(ValueError, match="x_test"):
        SplitDataset("t", x, y, x, y, torch.zeros(4, 2), y, n_classes=2, input_shape=(3,))


@settings(max_examples=60, deadline=None)
@given(
    labels=st.lists(st.integers(0, 6), min_size=1, max_size=200),
    fraction=st.floats(0.0, 0.95),
    seed=st.integers(0, 2**32 - 1),
)
def test_split_properties(labels: list[int], fraction: float, seed: int) -> None:
    y = np.array(labels)
    keep, held = stratified_split(y, fraction, seed)
    np.testing.assert_array_equal(np.sort(np.concatenate([keep, held])), np.arange(len(y)))
    assert len(held) == round(fraction * len(y))
    # Per class, the held-out count is within one of the proportional share.
    for cls in np.unique(y):
        share = np.sum(y == cls) * len(held) / len(y)
        assert abs(np.sum(y[held] == cls) - share) < 1.0 + 1e-9
    again = stratified_split(y, fraction, seed)
    np.testing.assert_array_equal(again[1], held)
