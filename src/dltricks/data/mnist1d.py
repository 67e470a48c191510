"""MNIST-1D (Greydanus 2020), generated locally and cached with a checksum.

The ``mnist1d`` package's ``get_dataset`` downloads a pickle; this module only ever calls its
``make_dataset``, which builds the data from templates in about a second. The published setup
(5000 samples split 4000/1000, sequences of length 40, seed 42) is the default.

Generation is cached as a checked file (see :mod:`dltricks.data.safe_io`) under
``$DLTRICKS_CACHE`` or ``~/.cache/dltricks``. The cache key covers every generation argument
and the ``mnist1d`` version. A cache file that fails its checksum or holds the wrong shapes is
regenerated and rewritten, never used; a cache folder that cannot be written is skipped.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import random
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from dltricks.data.safe_io import CorruptFileError, read_checked, write_checked

__all__ = ["CACHE_ENV_VAR", "default_cache_dir", "mnist1d_arrays"]

CACHE_ENV_VAR = "DLTRICKS_CACHE"
_KIND = "mnist1d-arrays"
_logger = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$DLTRICKS_CACHE`` if set, else ``~/.cache/dltricks``."""
    env = os.environ.get(CACHE_ENV_VAR)
    return Path(env) if env else Path.home() / ".cache" / "dltricks"


def _generation_args(num_samples: int, train_split: float, length: int, seed: int) -> Any:
    from mnist1d.data import get_dataset_args

    args = get_dataset_args()
    args.num_samples = num_samples
    args.train_split = train_split
    args.final_seq_length = length
    args.seed = seed
    return args


def _generate(args: Any) -> dict[str, np.ndarray]:
    from mnist1d.data import make_dataset

    # make_dataset reseeds Python's and numpy's global generators; put them back so loading
    # data never changes randomness elsewhere in the caller's program.
    py_state = random.getstate()
    np_state = np.random.get_state()
    try:
        raw = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return {
        "x_train": np.asarray(raw["x"], dtype=np.float32),
        "y_train": np.asarray(raw["y"], dtype=np.int64),
        "x_test": np.asarray(raw["x_test"], dtype=np.float32),
        "y_test": np.asarray(raw["y_test"], dtype=np.int64),
    }


def _expected_shapes(args: Any) -> dict[str, tuple[int, ...]]:
    per_class = args.num_samples // 10
    n = per_class * 10
    n_train = int(n * args.train_split)
    length = args.final_seq_length
    return {
        "x_train": (n_train, length),
        "y_train": (n_train,),
        "x_test": (n - n_train, length),
        "y_test": (n - n_train,),
    }


def _cache_key(args: Any) -> str:
    fields = {k: v for k, v in vars(args).items() if k != "url"}
    try:
        version = metadata.version("mnist1d")
    except metadata.PackageNotFoundError:
        version = "unknown"
    blob = json.dumps({"args": fields, "mnist1d": version}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _decode(payload: bytes, path: Path, shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in shapes}
    except (KeyError, ValueError, OSError) as exc:
        raise CorruptFileError(path, f"unreadable arrays ({exc})") from exc
    for name, shape in shapes.items():
        if arrays[name].shape != shape:
            raise CorruptFileError(path, f"{name} has shape {arrays[name].shape}, want {shape}")
    for name in ("y_train", "y_test"):
        labels = arrays[name]
        if labels.size and (labels.min() < 0 or labels.max() > 9):
            raise CorruptFileError(path, f"{name} has labels outside 0..9")
    return arrays


def mnist1d_arrays(
    *,
    num_samples: int = 5000,
    train_split: float = 0.8,
    length: int = 40,
    seed: int = 42,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return MNIST-1D as ``(x_train, y_train, x_test, y_test)`` (float32, int64).

    Defaults reproduce the published data: 4000 train and 1000 test sequences of length 40.
    ``make_dataset`` already centres and scales the whole set to mean 0 and std 1 (over train
    and test together, as in the original); per-feature standardisation on the train split is
    left to :func:`dltricks.data.load_dataset`.
    """
    if num_samples < 10:
        raise ValueError(f"num_samples must be >= 10, got {num_samples}")
    if not 0.0 < train_split < 1.0:
        raise ValueError(f"train_split must be in (0, 1), got {train_split}")
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    args = _generation_args(num_samples, train_split, length, seed)
    shapes = _expected_shapes(args)
    path = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = path / f"mnist1d-{_cache_key(args)}.checked"

    if use_cache and path.exists():
        try:
            arrays = _decode(read_checked(path, kind=_KIND), path, shapes)
            return arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"]
        except (CorruptFileError, OSError) as exc:
            _logger.warning("ignoring bad MNIST-1D cache, regenerating: %s", exc)

    arrays = _generate(args)
    for name, shape in shapes.items():
        if arrays[name].shape != shape:  # pragma: no cover - guards a changed mnist1d
            raise RuntimeError(f"mnist1d produced {name} of shape {arrays[name].shape}")
    if use_cache:
        buffer = io.BytesIO()
        np.savez(
            buffer,
            x_train=arrays["x_train"],
            y_train=arrays["y_train"],
            x_test=arrays["x_test"],
            y_test=arrays["y_test"],
        )
        try:
            write_checked(path, buffer.getvalue(), kind=_KIND)
        except OSError as exc:
            _logger.warning("could not write MNIST-1D cache %s: %s", path, exc)
    return arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"]
