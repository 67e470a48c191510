"""Data for the lab, all offline: bundled, generated, or read from files the user names.

``load_dataset(name, ...)`` returns a :class:`SplitDataset` (train/validation/test tensors,
flattened float32 features, int64 labels) for ``"digits"``, ``"mnist1d"``, ``"mnist"``,
``"fashion-mnist"`` and ``"synthetic"``. The lower-level array loaders, the IDX reader/writer,
the split and standardisation helpers and the crash-safe file helpers are exported too.
"""

from __future__ import annotations

from dltricks.data.container import SplitDataset
from dltricks.data.digits import digits_arrays
from dltricks.data.idx import (
    DatasetFileNotFoundError,
    IDXFormatError,
    load_idx_split,
    read_idx,
    write_idx,
)
from dltricks.data.mnist1d import CACHE_ENV_VAR, default_cache_dir, mnist1d_arrays
from dltricks.data.registry import DATASET_NAMES, load_dataset, make_split_dataset
from dltricks.data.safe_io import CorruptFileError, atomic_write_bytes, read_checked, write_checked
from dltricks.data.splits import StandardScaler, fit_standardizer, stratified_split
from dltricks.data.synthetic import make_gaussian_mixture, make_teacher_classification

__all__ = [
    "CACHE_ENV_VAR",
    "DATASET_NAMES",
    "CorruptFileError",
    "DatasetFileNotFoundError",
    "IDXFormatError",
    "SplitDataset",
    "StandardScaler",
    "atomic_write_bytes",
    "default_cache_dir",
    "digits_arrays",
    "fit_standardizer",
    "load_dataset",
    "load_idx_split",
    "make_gaussian_mixture",
    "make_split_dataset",
    "make_teacher_classification",
    "mnist1d_arrays",
    "read_checked",
    "read_idx",
    "stratified_split",
    "write_checked",
    "write_idx",
]
