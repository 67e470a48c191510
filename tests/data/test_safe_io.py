"""Atomic writes and the checked file format."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from dltricks.data.safe_io import CorruptFileError, atomic_write_bytes, read_checked, write_checked


def test_checked_round_trip_and_header_is_readable(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "f.bin"
    payload = bytes(range(256)) * 3
    write_checked(path, payload, kind="test-kind")
    assert read_checked(path, kind="test-kind") == payload
    header = path.read_bytes().split(b"\n", 1)[0].decode()
    # Independent check of the header: the digest is sha256 of the payload.
    assert header == (
        f"dltricks-checked v1 kind=test-kind length={len(payload)} "
        f"sha256={hashlib.sha256(payload).hexdigest()}"
    )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b[:-1], "truncated"),
        (lambda b: b[: len(b) // 2], "truncated"),
        (lambda b: b + b"x", "padded"),
        (lambda b: b[:-5] + bytes([b[-5] ^ 0x01]) + b[-4:], "checksum"),
        (lambda b: b"garbage without newline", "no dltricks-checked header"),
        (lambda b: b"dltricks-checked v9 kind=k length=1 sha256=00\nx", "malformed"),
        (lambda b: b"", "no dltricks-checked header"),
    ],
)
def test_corruption_is_detected(tmp_path: Path, mutate, message: str) -> None:
    path = tmp_path / "f.bin"
    write_checked(path, b"payload bytes" * 10, kind="k")
    path.write_bytes(mutate(path.read_bytes()))
    with pytest.raises(CorruptFileError, match=message) as info:
        read_checked(path, kind="k")
    assert info.value.path == path
    assert str(path) in str(info.value)


def test_wrong_kind_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    write_checked(path, b"abc", kind="one")
    with pytest.raises(CorruptFileError, match="expected 'two'"):
        read_checked(path, kind="two")


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_checked(tmp_path / "nope", kind="k")


def test_failed_atomic_write_keeps_old_content_and_no_temp_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_bad_kind_name_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="kind"):
        write_checked(tmp_path / "f", b"", kind="has space")


def test_a_refused_write_names_the_target_not_the_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from dltricks.data import safe_io

    target = tmp_path / "results.json"

    def refuse(*args: object, dir: str, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", f"{dir}/.results.json.x.tmp")

    monkeypatch.setattr(safe_io.tempfile, "mkstemp", refuse)
    with pytest.raises(PermissionError) as info:
        atomic_write_bytes(target, b"x")
    assert (info.value.errno, info.value.filename) == (errno.EACCES, str(target))
    assert info.value.filename2 is None
    assert not target.exists()
