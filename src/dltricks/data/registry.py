"""``load_dataset``: one entry point from a name to a :class:`SplitDataset`."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from dltricks.data.container import SplitDataset
from dltricks.data.digits import digits_arrays
from dltricks.data.idx import IDX_FILES, DatasetFileNotFoundError, load_idx_split
from dltricks.data.mnist1d import mnist1d_arrays
from dltricks.data.splits import fit_standardizer, stratified_split
from dltricks.data.synthetic import make_gaussian_mixture

__all__ = ["DATASET_NAMES", "load_dataset", "make_split_dataset"]

#: Names accepted by :func:`load_dataset`.
DATASET_NAMES: tuple[str, ...] = ("digits", "mnist1d", "mnist", "fashion-mnist", "synthetic")

# Folders searched, in order, below the user's ``data_dir``: a folder named after the data set,
# torchvision's layout, then ``data_dir`` itself. Fashion-MNIST has the same file names as
# MNIST, so its own folders come first to avoid reading MNIST by mistake.
_IDX_SUBDIRS: dict[str, tuple[str, ...]] = {
    "mnist": ("mnist", "MNIST/raw", "."),
    "fashion-mnist": ("fashion-mnist", "fashion_mnist", "FashionMNIST/raw", "."),
}
_SYNTHETIC = {"n_train": 3000, "n_test": 1000, "n_features": 20, "n_classes": 4, "seed": 0}


def make_split_dataset(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    n_classes: int,
    input_shape: tuple[int, ...] | None = None,
    seed: int = 0,
    standardize: bool = True,
    val_fraction: float = 0.1,
    device: torch.device | str | None = None,
) -> SplitDataset:
    """Carve a validation split from train, optionally standardise, and build the tensors.

    The validation set is a stratified ``val_fraction`` of the train arrays drawn with ``seed``
    (see :func:`~dltricks.data.splits.stratified_split`); the test arrays are never touched by
    the seed. With ``standardize`` every split is transformed with per-feature mean and std of
    the remaining train split only, so no validation or test information leaks into training.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    shape = tuple(x_train.shape[1:]) if input_shape is None else input_shape
    flat = [np.asarray(a, dtype=np.float64).reshape(a.shape[0], -1) for a in (x_train, x_test)]
    train_idx, val_idx = stratified_split(np.asarray(y_train), val_fraction, seed)
    if train_idx.size == 0:
        raise ValueError("val_fraction leaves no training examples")
    xs = {"train": flat[0][train_idx], "val": flat[0][val_idx], "test": flat[1]}
    ys = {"train": y_train[train_idx], "val": y_train[val_idx], "test": y_test}
    mean = std = None
    if standardize:
        scaler = fit_standardizer(xs["train"])
        xs = {k: scaler.transform(v) for k, v in xs.items()}
        mean = torch.from_numpy(scaler.mean.astype(np.float32))
        std = torch.from_numpy(scaler.std.astype(np.float32))
    tx = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in xs.items()}
    ty = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.int64)) for k, v in ys.items()}
    data = SplitDataset(
        name=name,
        x_train=tx["train"],
        y_train=ty["train"],
        x_val=tx["val"],
        y_val=ty["val"],
        x_test=tx["test"],
        y_test=ty["test"],
        n_classes=n_classes,
        input_shape=shape,
        feature_mean=mean,
        feature_std=std,
    )
    return data if device is None else data.to(device)


def _idx_folder(name: str, data_dir: Path) -> Path:
    stem = IDX_FILES["train"]["images"]
    for sub in _IDX_SUBDIRS[name]:
        folder = (data_dir / sub).resolve()
        if (folder / stem).is_file() or (folder / f"{stem}.gz").is_file():
            return folder
    searched = ", ".join(str(data_dir / s) for s in _IDX_SUBDIRS[name])
    raise DatasetFileNotFoundError(f"no {name} IDX files ({stem}[.gz]) found; searched {searched}")


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    standardize: bool = True,
    val_fraction: float = 0.1,
    device: torch.device | str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> SplitDataset:
    """Load a data set by name, split into train/validation/test, all offline.

    Args:
        name: one of :data:`DATASET_NAMES`:
            ``"digits"`` (scikit-learn 8x8, 1438 train+val / 359 test, fixed test split),
            ``"mnist1d"`` (generated, published 4000/1000 split, length 40, seed 42),
            ``"mnist"`` / ``"fashion-mnist"`` (IDX files under ``data_dir``, 60000/10000),
            ``"synthetic"`` (4-class Gaussian mixture in 20-D, 3000/1000, fixed data seed).
        data_dir: folder with the IDX files, required for ``mnist`` and ``fashion-mnist``.
            Searched: ``DIR/<name>/``, ``DIR/MNIST/raw/`` (or ``FashionMNIST/raw/``), ``DIR/``.
        seed: seed of the validation split (the data and test split never depend on it).
        standardize: per-feature standardisation with train-split statistics.
        val_fraction: stratified share of the train data held out for validation, in [0, 1).
        device: where the tensors live (default CPU).
        cache_dir: MNIST-1D cache folder (default ``$DLTRICKS_CACHE`` or ``~/.cache/dltricks``).

    Raises:
        ValueError: unknown name, or ``data_dir`` missing for IDX data sets.
        DatasetFileNotFoundError, IDXFormatError: missing or malformed IDX files.
    """
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    x_tr, y_tr, x_te, y_te, input_shape, n_classes = _raw_arrays(name, data_dir, cache_dir)
    return make_split_dataset(
        name,
        x_tr,
        y_tr,
        x_te,
        y_te,
        n_classes=n_classes,
        input_shape=input_shape,
        seed=seed,
        standardize=standardize,
        val_fraction=val_fraction,
        device=device,
    )


_Raw = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[int, ...], int]


def _raw_arrays(
    name: str,
    data_dir: str | os.PathLike[str] | None,
    cache_dir: str | os.PathLike[str] | None,
) -> _Raw:
    if name == "digits":
        x_tr, y_tr, x_te, y_te = digits_arrays()
        return x_tr, y_tr, x_te, y_te, (8, 8), 10
    if name == "mnist1d":
        x_tr, y_tr, x_te, y_te = mnist1d_arrays(cache_dir=cache_dir)
        return x_tr, y_tr, x_te, y_te, (x_tr.shape[1],), 10
    if name in _IDX_SUBDIRS:
        if data_dir is None:
            raise ValueError(
                f"{name!r} is read from the standard IDX files: pass data_dir, the folder "
                f"that holds train-images-idx3-ubyte[.gz] and the other three files"
            )
        folder = _idx_folder(name, Path(data_dir))
        x_tr, y_tr = load_idx_split(folder, "train")
        x_te, y_te = load_idx_split(folder, "test")
        # Pixels to [0, 1] first so unstandardised data are on a sane scale too.
        return x_tr / 255.0, y_tr, x_te / 255.0, y_te, tuple(x_tr.shape[1:]), 10
    n_train, n_test = _SYNTHETIC["n_train"], _SYNTHETIC["n_test"]
    n_classes = _SYNTHETIC["n_classes"]
    x, y = make_gaussian_mixture(
        n_train + n_test, _SYNTHETIC["n_features"], n_classes, seed=_SYNTHETIC["seed"]
    )
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:], (x.shape[1],), n_classes
