"""Crash-safe files: atomic writes and a checksummed container format.

A file written here is either the complete old version or the complete new one, never a mix:
the bytes go to a temporary file in the same directory (so the final rename stays on one file
system), are flushed and fsynced, and then ``os.replace`` swaps the name in one step. The
directory is fsynced too, so the rename itself survives a power cut on POSIX systems.

Files get the permissions an ordinary ``open(path, "w")`` would give a new file:
``0o666`` less the process's umask (``0644`` under umask ``022``). ``mkstemp`` alone makes
``0600``, which would keep a shared report or cache from a colleague or a web server.

The *checked* format prefixes a payload with one ASCII header line::

    dltricks-checked v1 kind=<kind> length=<bytes> sha256=<hex digest>\\n<payload>

Reading verifies the kind, the exact length and the digest, so a truncated, corrupt or
mistaken file raises :class:`CorruptFileError` instead of being used. The header is plain text
so ``head -1 FILE`` tells a person what a file is.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "CorruptFileError",
    "atomic_write_bytes",
    "atomic_write_from",
    "new_file_mode",
    "read_checked",
    "write_checked",
]

_MAGIC = "dltricks-checked"
_VERSION = "v1"
_HEADER_RE = re.compile(
    rb"^dltricks-checked v1 kind=(?P<kind>[A-Za-z0-9_.-]+) "
    rb"length=(?P<length>[0-9]+) sha256=(?P<digest>[0-9a-f]{64})$"
)
# Headers are short; reading a bounded prefix keeps a wrong (huge, binary) file from being
# scanned for a newline that never comes.
_MAX_HEADER = 512


class CorruptFileError(ValueError):
    """A checked file is truncated, corrupt, or not the kind of file the caller expected."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


_UMASK_LOCK = threading.Lock()


def _current_umask() -> int:
    # Linux reports the umask without changing it; elsewhere it can only be read by setting
    # it, which the lock keeps from racing with another thread of this module.
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The permission bits a newly created file gets here: ``0o666`` less the umask."""
    return 0o666 & ~_current_umask()


def _fsync_directory(directory: Path) -> None:
    # Opening a directory read-only and fsyncing it is how POSIX makes a rename durable;
    # Windows cannot open directories, and there the rename is already as durable as it gets.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a mix.

    Creates missing parent directories. The file gets :func:`new_file_mode` (the umask's
    permissions, as a plain ``open`` would give). On any failure the temporary file is removed
    and the previous content of ``path`` (if any) is left untouched.

    Raises:
        OSError: the write failed (disk full, permission, read-only file system...), naming
            ``path`` (not the temporary file), also where the system call named no file
            (``write`` on a full disk).
    """
    target = Path(path)
    # A folder that cannot be made is named by mkdir's own error; past it, errors name the
    # target, not the hidden temporary file the user never asked for.
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as error:
        raise _naming(error, target) from error
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), new_file_mode())
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        if isinstance(error, OSError):
            raise _naming(error, target) from error
        raise
    _fsync_directory(target.parent)


def atomic_write_from(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> None:
    """Atomically write what ``write(stream)`` puts into a binary stream (a figure's
    ``savefig``, an image's ``save``) to ``path``, as :func:`atomic_write_bytes` does.

    The bytes are collected in memory first: a writer that fails halfway leaves nothing.
    """
    buffer = io.BytesIO()
    write(buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _naming(error: OSError, target: Path) -> OSError:
    """The same error naming ``target`` (the file the caller asked for)."""
    if error.filename == str(target) and error.filename2 is None:
        return error
    # OSError(errno, ...) picks the subclass (PermissionError, ...) from the errno itself.
    return OSError(error.errno, error.strerror or str(error), str(target))


def write_checked(path: str | os.PathLike[str], payload: bytes, *, kind: str) -> None:
    """Atomically write ``payload`` with a header carrying ``kind``, its length and sha256."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", kind):
        raise ValueError(f"kind must be letters, digits, '_', '.' or '-', got {kind!r}")
    digest = hashlib.sha256(payload).hexdigest()
    header = f"{_MAGIC} {_VERSION} kind={kind} length={len(payload)} sha256={digest}\n"
    atomic_write_bytes(path, header.encode("ascii") + payload)


def read_checked(path: str | os.PathLike[str], *, kind: str) -> bytes:
    """Return the payload of a checked file after verifying kind, length and sha256.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        CorruptFileError: if the header is missing or malformed, the kind differs, the file is
            shorter or longer than its header says, or the digest does not match.
    """
    source = Path(path)
    data = source.read_bytes()
    newline = data.find(b"\n", 0, _MAX_HEADER)
    if newline < 0:
        raise CorruptFileError(source, "no dltricks-checked header (not a dltricks file?)")
    match = _HEADER_RE.match(data[:newline])
    if match is None:
        raise CorruptFileError(source, "malformed dltricks-checked header")
    found_kind = match["kind"].decode("ascii")
    if found_kind != kind:
        raise CorruptFileError(source, f"holds a {found_kind!r} file, expected {kind!r}")
    payload = data[newline + 1 :]
    expected_length = int(match["length"])
    if len(payload) != expected_length:
        raise CorruptFileError(
            source,
            f"truncated or padded: payload has {len(payload)} bytes, header says {expected_length}",
        )
    if hashlib.sha256(payload).hexdigest() != match["digest"].decode("ascii"):
        raise CorruptFileError(source, "sha256 checksum mismatch (file is corrupt)")
    return payload
