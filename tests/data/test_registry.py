"""load_dataset: names, splits, seeds, errors."""

from __future__ import annotations

import pytest
import torch

from dltricks.data import DATASET_NAMES, load_dataset


def test_digits_shapes_and_seed_roles() -> None:
    a = load_dataset("digits", seed=0)
    b = load_dataset("digits", seed=0)
    c = load_dataset("digits", seed=1)
    assert (a.n_train + a.n_val + a.n_test) == 1797
    assert a.n_test == 359
    assert a.n_features == 64
    assert a.n_classes == 10
    assert a.input_shape == (8, 8)
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(a, f"x_{split}"), getattr(b, f"x_{split}"))
    # The seed moves the validation split only; the test split is fixed.
    assert not torch.equal(a.y_val, c.y_val)
    raw_a = load_dataset("digits", seed=0, standardize=False)
    raw_c = load_dataset("digits", seed=1, standardize=False)
    assert torch.equal(raw_a.x_test, raw_c.x_test)
    assert set(a.y_val.tolist()) == set(range(10))


def test_synthetic_dataset() -> None:
    data = load_dataset("synthetic", val_fraction=0.2)
    assert (data.n_train, data.n_val, data.n_test) == (2400, 600, 1000)
    assert data.n_classes == 4
    assert data.n_features == 20
    per_feature_mean = data.x_train.double().mean(0)
    assert per_feature_mean.abs().max() < 1e-6


def test_val_fraction_zero_gives_empty_validation() -> None:
    data = load_dataset("digits", val_fraction=0.0)
    assert data.n_val == 0
    assert data.x_val.shape == (0, 64)


def test_device_argument() -> None:
    data = load_dataset("digits", device="cpu")
    assert data.device == torch.device("cpu")


def test_unknown_name() -> None:
    with pytest.raises(ValueError, match=r"unknown dataset 'cifar'.*digits"):
        load_dataset("cifar")


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_sets_need_data_dir(name: str) -> None:
    with pytest.raises(ValueError, match="data_dir"):
        load_dataset(name)


@pytest.mark.parametrize("fraction", [-0.1, 1.0])
def test_bad_val_fraction(fraction: float) -> None:
    with pytest.raises(ValueError, match="val_fraction"):
        load_dataset("digits", val_fraction=fraction)


def test_names_listed() -> None:
    assert set(DATASET_NAMES) == {"digits", "mnist1d", "mnist", "fashion-mnist", "synthetic"}


def test_summary_is_json_ready() -> None:
    import json

    summary = load_dataset("digits").summary()
    assert json.loads(json.dumps(summary)) == summary
