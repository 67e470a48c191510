"""MNIST-1D generated offline and cached; generation runs once per test session."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from dltricks.data import CorruptFileError, load_dataset, read_checked, write_checked
from dltricks.data import mnist1d as mnist1d_module
from dltricks.data.mnist1d import CACHE_ENV_VAR, default_cache_dir, mnist1d_arrays


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict:
    cache = tmp_path_factory.mktemp("mnist1d-cache")
    np_before = np.random.get_state()[1].copy()
    py_before = random.getstate()
    arrays = mnist1d_arrays(cache_dir=cache)
    return {
        "cache": cache,
        "arrays": arrays,
        "np_unchanged": np.array_equal(np.random.get_state()[1], np_before),
        "py_unchanged": random.getstate() == py_before,
    }


def cache_file(cache: Path) -> Path:
    (path,) = cache.glob("mnist1d-*.checked")
    return path


def test_published_shapes(generated: dict) -> None:
    x_train, y_train, x_test, y_test = generated["arrays"]
    assert x_train.shape == (4000, 40)
    assert x_test.shape == (1000, 40)
    assert y_train.shape == (4000,)
    assert y_test.shape == (1000,)
    assert x_train.dtype == np.float32
    assert y_train.dtype == np.int64
    assert set(np.unique(y_train)) == set(range(10))
    # make_dataset standardises the whole set (train and test together).
    everything = np.concatenate([x_train, x_test]).astype(np.float64)
    assert abs(everything.mean()) < 1e-4
    assert abs(everything.std() - 1) < 1e-4


def test_generation_leaves_global_rngs_alone(generated: dict) -> None:
    assert generated["np_unchanged"]
    assert generated["py_unchanged"]


def test_cache_is_used(generated: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_generation(args: object) -> dict:
        raise AssertionError("should have read the cache")

    monkeypatch.setattr(mnist1d_module, "_generate", no_generation)
    again = mnist1d_arrays(cache_dir=generated["cache"])
    for a, b in zip(again, generated["arrays"], strict=True):
        np.testing.assert_array_equal(a, b)
    data = load_dataset("mnist1d", cache_dir=generated["cache"])
    assert (data.n_train, data.n_val, data.n_test) == (3600, 400, 1000)
    assert data.n_features == 40
    assert data.n_classes == 10
    assert data.input_shape == (40,)


def _fake_generate(generated: dict, calls: list[int]):
    x_train, y_train, x_test, y_test = generated["arrays"]

    def fake(args: object) -> dict:
        calls.append(1)
        return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}

    return fake


@pytest.mark.parametrize("damage", ["flip", "truncate", "wrong_shapes"])
def test_bad_cache_is_regenerated(
    generated: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    good = cache_file(generated["cache"])
    path = tmp_path / good.name
    blob = good.read_bytes()
    if damage == "flip":
        path.write_bytes(blob[:-100] + bytes([blob[-100] ^ 0xFF]) + blob[-99:])
    elif damage == "truncate":
        path.write_bytes(blob[: len(blob) // 2])
    else:
        import io

        buffer = io.BytesIO()
        np.savez(
            buffer,
            x_train=np.zeros((10, 40)),
            y_train=np.zeros(10),
            x_test=np.zeros((1, 40)),
            y_test=np.zeros(1),
        )
        write_checked(path, buffer.getvalue(), kind="mnist1d-arrays")
    calls: list[int] = []
    monkeypatch.setattr(mnist1d_module, "_generate", _fake_generate(generated, calls))
    arrays = mnist1d_arrays(cache_dir=tmp_path)
    assert calls == [1]
    np.testing.assert_array_equal(arrays[0], generated["arrays"][0])
    # The rewritten cache is valid again and equal to the good one.
    assert read_checked(path, kind="mnist1d-arrays") == read_checked(good, kind="mnist1d-arrays")


def test_unwritable_cache_still_returns_data(
    generated: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    calls: list[int] = []
    monkeypatch.setattr(mnist1d_module, "_generate", _fake_generate(generated, calls))
    arrays = mnist1d_arrays(cache_dir=blocker / "sub")
    assert arrays[0].shape == (4000, 40)


def test_cache_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv(CACHE_ENV_VAR)
    assert default_cache_dir() == Path.home() / ".cache" / "dltricks"


def test_corrupt_error_is_value_error() -> None:
    assert issubclass(CorruptFileError, ValueError)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="train_split"):
        mnist1d_arrays(train_split=1.0, use_cache=False)
