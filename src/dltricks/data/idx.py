"""Readers for the IDX files of MNIST and Fashion-MNIST (gzipped or not).

IDX format (LeCun et al.): two zero bytes, a type code, the number of dimensions ``d``, then
``d`` big-endian uint32 sizes and the data in big-endian C order. MNIST uses type 0x08
(unsigned byte), so images start with the magic number 2051 (``00 00 08 03``) and labels with
2049 (``00 00 08 01``). Fashion-MNIST uses the same file names and format.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = [
    "IDX_FILES",
    "DatasetFileNotFoundError",
    "IDXFormatError",
    "find_idx_file",
    "load_idx_split",
    "read_idx",
    "write_idx",
]

# type code -> (numpy big-endian dtype)
_IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
_NP_TO_CODE: dict[str, int] = {np.dtype(v).str: k for k, v in _IDX_DTYPES.items()}

#: The four standard file names (without ``.gz``), by split and part.
IDX_FILES: dict[str, dict[str, str]] = {
    "train": {"images": "train-images-idx3-ubyte", "labels": "train-labels-idx1-ubyte"},
    "test": {"images": "t10k-images-idx3-ubyte", "labels": "t10k-labels-idx1-ubyte"},
}
IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049


class IDXFormatError(ValueError):
    """An IDX file is truncated, has the wrong magic number, or disagrees with its partner."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class DatasetFileNotFoundError(FileNotFoundError):
    """A data file the user was asked to provide is not in the folder they named."""


def _read_bytes(path: Path) -> bytes:
    if path.suffix == ".gz":
        try:
            with gzip.open(path, "rb") as handle:
                return handle.read()
        except (OSError, EOFError, zlib.error) as exc:
            # gzip raises EOFError for a cut-off stream and BadGzipFile (an OSError) for junk.
            raise IDXFormatError(path, f"not a readable gzip file ({exc})") from exc
    return path.read_bytes()


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (``.gz`` by suffix) into a native-endian numpy array.

    Raises:
        IDXFormatError: bad magic bytes or type code, or the data are shorter or longer than
            the header's sizes say.
    """
    source = Path(path)
    return _parse_idx(_read_bytes(source), source)


def _parse_idx(data: bytes, source: Path) -> np.ndarray:
    if len(data) < 4:
        raise IDXFormatError(source, f"truncated: {len(data)} bytes, no IDX header")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in _IDX_DTYPES:
        raise IDXFormatError(
            source, f"wrong magic number 0x{int.from_bytes(data[:4], 'big'):08x}: not IDX"
        )
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise IDXFormatError(source, "truncated inside the header")
    shape = struct.unpack(f">{ndim}I", data[4:header_len])
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    got = len(data) - header_len
    if got != expected:
        what = "truncated" if got < expected else "has trailing bytes"
        raise IDXFormatError(
            source, f"{what}: {got} data bytes, header shape {shape} needs {expected}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write ``array`` as an IDX file (gzipped if ``path`` ends in ``.gz``).

    The inverse of :func:`read_idx`; used by tests and by users who build small IDX sets.
    """
    arr = np.asarray(array)
    big = arr.dtype.newbyteorder(">") if arr.dtype.itemsize > 1 else arr.dtype
    code = _NP_TO_CODE.get(np.dtype(big).str)
    if code is None:
        raise ValueError(f"dtype {arr.dtype} has no IDX type code")
    header = struct.pack(">HBB", 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    payload = header + np.ascontiguousarray(arr, dtype=big).tobytes()
    target = Path(path)
    if target.suffix == ".gz":
        # mtime=0 keeps the bytes reproducible.
        payload = gzip.compress(payload, mtime=0)
    target.write_bytes(payload)


def find_idx_file(directory: Path, stem: str) -> Path:
    """Return ``directory/stem`` or ``directory/stem.gz`` (raw preferred), or raise."""
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DatasetFileNotFoundError(
        f"{directory / stem}[.gz] not found: put the standard IDX file '{stem}' "
        f"(or '{stem}.gz') in {directory}"
    )


def load_idx_split(
    directory: str | os.PathLike[str], split: str, n_classes: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Read the images and labels of one split (``"train"`` or ``"test"``) from a folder.

    Returns ``(images, labels)``: uint8 of shape ``(n, rows, cols)`` and int64 of shape ``(n,)``.

    Raises:
        DatasetFileNotFoundError: a file is missing (the message names it).
        IDXFormatError: a file is malformed, holds no samples (or empty images), images and
            labels disagree in count, or a label is outside ``[0, n_classes)`` (the message
            names the file).
    """
    if split not in IDX_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder = Path(directory)
    images_path = find_idx_file(folder, IDX_FILES[split]["images"])
    labels_path = find_idx_file(folder, IDX_FILES[split]["labels"])
    images = _read_checked_magic(images_path, IMAGES_MAGIC, ndim=3)
    labels = _read_checked_magic(labels_path, LABELS_MAGIC, ndim=1)
    # Well-formed but empty files would pass every check above and fail far away (an empty
    # batch, a mean over nothing): a data set needs samples, and images need pixels.
    if images.shape[0] == 0:
        raise IDXFormatError(images_path, "holds no images (0 samples)")
    if images.shape[1] == 0 or images.shape[2] == 0:
        raise IDXFormatError(
            images_path, f"images of {images.shape[1]}x{images.shape[2]} pixels hold no data"
        )
    if images.shape[0] != labels.shape[0]:
        raise IDXFormatError(
            labels_path,
            f"{labels.shape[0]} labels but {images_path.name} has {images.shape[0]} images",
        )
    if labels.size and (int(labels.max()) >= n_classes):
        bad = int(np.flatnonzero(labels >= n_classes)[0])
        raise IDXFormatError(
            labels_path, f"label {int(labels[bad])} at index {bad} outside [0, {n_classes})"
        )
    return images, labels.astype(np.int64)


def _read_checked_magic(path: Path, magic: int, ndim: int) -> np.ndarray:
    # Check the magic before parsing so an images/labels mix-up says so instead of reporting
    # a confusing size mismatch.
    data = _read_bytes(path)
    found = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if found != magic:
        shown = "none (file too short)" if found is None else f"{found}"
        raise IDXFormatError(
            path,
            f"wrong magic number {shown}, expected {magic} "
            f"({'images' if magic == IMAGES_MAGIC else 'labels'}, unsigned byte, {ndim}-D)",
        )
    array = _parse_idx(data, path)
    if array.dtype != np.uint8 or array.ndim != ndim:
        raise IDXFormatError(path, f"expected {ndim}-D unsigned bytes, got {array.dtype}")
    return array
