"""IDX readers on small files written here, byte by byte, independent of the library writer."""

from __future__ import annotations

import gzip
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from dltricks.data import (
    DatasetFileNotFoundError,
    IDXFormatError,
    load_dataset,
    load_idx_split,
    read_idx,
    write_idx,
)

NAMES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """Hand-built IDX bytes for uint8 arrays (magic 0x0000080N)."""
    array = np.asarray(array, dtype=np.uint8)
    magic = 0x0800 + array.ndim if magic is None else magic
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_raw(path: Path, data: bytes, gz: bool) -> Path:
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def make_split(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    return images, labels


def write_set(folder: Path, gz: bool, n_train: int = 40, n_test: int = 20, seed: int = 0) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {"train": make_split(rng, n_train), "test": make_split(rng, n_test)}
    for split, (images, labels) in arrays.items():
        write_raw(folder / NAMES[(split, "images")], idx_bytes(images), gz)
        write_raw(folder / NAMES[(split, "labels")], idx_bytes(labels), gz)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_read_split_matches_written_arrays(tmp_path: Path, gz: bool) -> None:
    arrays = write_set(tmp_path, gz)
    for split in ("train", "test"):
        images, labels = load_idx_split(tmp_path, split)
        np.testing.assert_array_equal(images, arrays[split][0])
        np.testing.assert_array_equal(labels, arrays[split][1])
        assert images.dtype == np.uint8
        assert labels.dtype == np.int64


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_write_idx_read_idx_round_trip(tmp_path: Path, dtype: type, suffix: str) -> None:
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    if dtype is np.uint8:
        array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / f"a.idx{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    np.testing.assert_array_equal(back, array)
    assert back.dtype == np.dtype(dtype)


def test_write_idx_matches_hand_built_bytes(tmp_path: Path) -> None:
    array = np.arange(12, dtype=np.uint8).reshape(3, 2, 2)
    write_idx(tmp_path / "a", array)
    assert (tmp_path / "a").read_bytes() == idx_bytes(array)


@pytest.mark.parametrize("gz", [False, True])
def test_missing_file_named(tmp_path: Path, gz: bool) -> None:
    write_set(tmp_path, gz)
    suffix = ".gz" if gz else ""
    (tmp_path / (NAMES[("test", "labels")] + suffix)).unlink()
    with pytest.raises(DatasetFileNotFoundError, match="t10k-labels-idx1-ubyte") as info:
        load_idx_split(tmp_path, "test")
    assert isinstance(info.value, FileNotFoundError)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("truncated_data", "truncated"),
        ("truncated_header", "truncated"),
        ("trailing", "trailing bytes"),
        ("swapped_magic", "wrong magic number 2049, expected 2051"),
        ("not_idx", "wrong magic number"),
        ("count_mismatch", "19 labels but t10k-images-idx3-ubyte"),
        ("label_out_of_range", "label 10 at index 3 outside"),
        ("empty", "file too short"),
    ],
)
def test_malformed_files_raise_naming_the_file(
    tmp_path: Path, gz: bool, case: str, message: str
) -> None:
    arrays = write_set(tmp_path, gz)
    images, labels = arrays["test"]
    img_path = tmp_path / NAMES[("test", "images")]
    lab_path = tmp_path / NAMES[("test", "labels")]
    bad_path = img_path
    if case == "truncated_data":
        data = idx_bytes(images)[:-7]
    elif case == "truncated_header":
        data = idx_bytes(images)[:9]
    elif case == "trailing":
        data = idx_bytes(images) + b"\x00"
    elif case == "swapped_magic":
        data = idx_bytes(labels)
    elif case == "not_idx":
        data = b"\x89PNG\r\n\x1a\n" + bytes(100)
    elif case == "empty":
        data = b""
    elif case == "count_mismatch":
        bad_path, data = lab_path, idx_bytes(labels[:-1])
    else:  # label_out_of_range
        bad = labels.copy()
        bad[3] = 10
        bad_path, data = lab_path, idx_bytes(bad)
    if gz:
        (bad_path.parent / (bad_path.name + ".gz")).unlink()
    written = write_raw(bad_path, data, gz)
    with pytest.raises(IDXFormatError, match=message) as info:
        load_idx_split(tmp_path, "test")
    assert info.value.path == written
    assert str(written) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_corrupt_gzip_named(tmp_path: Path) -> None:
    write_set(tmp_path, gz=True)
    path = tmp_path / (NAMES[("train", "images")] + ".gz")
    path.write_bytes(path.read_bytes()[:30])  # cut-off gzip stream
    with pytest.raises(IDXFormatError, match="gzip") as info:
        load_idx_split(tmp_path, "train")
    assert info.value.path == path


def test_load_dataset_mnist_from_folder(tmp_path: Path) -> None:
    arrays = write_set(tmp_path / "MNIST" / "raw", gz=True, n_train=50)
    data = load_dataset("mnist", data_dir=tmp_path, val_fraction=0.2, standardize=False)
    assert (data.n_train, data.n_val, data.n_test) == (40, 10, 20)
    assert data.n_features == 784
    assert data.input_shape == (28, 28)
    # Pixels are scaled to [0, 1]; test images come through unchanged otherwise.
    expected = arrays["test"][0].reshape(20, -1).astype(np.float32) / 255.0
    np.testing.assert_allclose(data.x_test.numpy(), expected, rtol=0, atol=1e-7)


def test_fashion_prefers_its_own_folder(tmp_path: Path) -> None:
    write_set(tmp_path, gz=False, seed=1)  # MNIST-like files directly in data_dir
    fashion = write_set(tmp_path / "fashion-mnist", gz=False, seed=2)
    data = load_dataset("fashion-mnist", data_dir=tmp_path, standardize=False)
    expected = fashion["test"][0].reshape(20, -1).astype(np.float32) / 255.0
    np.testing.assert_allclose(data.x_test.numpy(), expected, atol=1e-7)


def test_load_dataset_mnist_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetFileNotFoundError, match="train-images-idx3-ubyte"):
        load_dataset("mnist", data_dir=tmp_path)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    ("shape", "message"),
    [((0, 28, 28), "holds no images (0 samples)"), ((5, 0, 0), "images of 0x0 pixels hold no")],
    ids=["no-samples", "no-pixels"],
)
def test_well_formed_files_without_data_are_refused_naming_the_file(
    tmp_path: Path, gz: bool, shape: tuple[int, int, int], message: str
) -> None:
    write_set(tmp_path, gz)
    images_name = NAMES[("train", "images")]
    labels_name = NAMES[("train", "labels")]
    for name in (images_name, labels_name):
        for stale in tmp_path.glob(f"{name}*"):
            stale.unlink()
    images = np.zeros(shape, dtype=np.uint8)
    labels = np.zeros(shape[0], dtype=np.uint8)
    written = write_raw(tmp_path / images_name, idx_bytes(images), gz)
    write_raw(tmp_path / labels_name, idx_bytes(labels), gz)
    assert read_idx(written).shape == shape, "the file itself is well-formed IDX"
    with pytest.raises(IDXFormatError, match=re.escape(message)) as info:
        load_idx_split(tmp_path, "train")
    assert info.value.path == written
    with pytest.raises(IDXFormatError, match=re.escape(message)):
        load_dataset("mnist", data_dir=tmp_path)
