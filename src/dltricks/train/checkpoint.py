"""Checkpoint files: torch-serialised state inside a checksummed, atomically written file.

A checkpoint is written with :func:`dltricks.data.safe_io.write_checked` (temporary file in the
same folder, flush, fsync, ``os.replace``, fsync of the folder), so a crash at any moment leaves
either the previous checkpoint or the new one. Reading verifies the sha256 of the payload and
unpickles with ``weights_only=True`` (tensors and plain containers only), so a truncated,
corrupt or foreign file raises :class:`CheckpointError` and is never used.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from dltricks.data.safe_io import CorruptFileError, read_checked, write_checked

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "CheckpointLockedError",
    "CheckpointMismatchError",
    "checkpoint_lock",
    "load_checkpoint",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = 1
_KIND = "dltricks-train-checkpoint"


class CheckpointError(ValueError):
    """A checkpoint cannot be used: truncated, corrupt, foreign, or of an unknown format."""


class CheckpointMismatchError(CheckpointError):
    """A valid checkpoint that belongs to a different run (settings, data or model differ)."""


class CheckpointLockedError(RuntimeError):
    """Another live process is training into the same checkpoint file."""


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Atomically write ``state`` (tensors and plain containers) as a checked checkpoint."""
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state}, buffer)
    write_checked(path, buffer.getvalue(), kind=_KIND)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and verify a checkpoint; tensors are loaded onto the CPU.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the checksum, header, format or content is wrong.
    """
    try:
        payload = read_checked(path, kind=_KIND)
    except CorruptFileError as exc:
        raise CheckpointError(f"unusable checkpoint {exc}") from exc
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise CheckpointError(f"unusable checkpoint {path}: cannot unpickle ({exc})") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(
            f"unusable checkpoint {path}: format {found!r}, expected {CHECKPOINT_FORMAT}"
        )
    return state


@contextlib.contextmanager
def checkpoint_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``<path>.lock`` while training into ``path``.

    The operating system drops the lock when the process dies (even by SIGKILL), so a stale
    lock file never blocks a later resume. Where ``fcntl`` is missing (Windows) no lock is
    taken.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    lock_path = Path(f"{os.fspath(path)}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise CheckpointLockedError(
                f"{path} is in use by another training run (lock {lock_path} is held)"
            ) from exc
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
