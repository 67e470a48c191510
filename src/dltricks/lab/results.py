"""results.json and unit records: plain JSON with an embedded checksum, written atomically.

A results file is ordinary JSON a person can read, with one extra top-level entry,
``"sha256"``: the digest of the canonical JSON of everything else. Reading recomputes it, so
a truncated or edited file is reported, never silently used. Writes go through a temporary
file, fsync and rename (:func:`dltricks.data.atomic_write_bytes`), so a crash leaves the old
file or the new one, never a mix.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

from dltricks.data import CorruptFileError, atomic_write_bytes

__all__ = ["CorruptFileError", "canonical_json", "config_hash", "read_json", "write_json"]

_DIGEST_KEY = "sha256"


def _clean(value: Any) -> Any:
    """JSON has no NaN or infinity: store them as null so every reader can parse the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no NaN, fixed separators."""
    return json.dumps(_clean(value), sort_keys=True, separators=(",", ":"), allow_nan=False)


def config_hash(config: Any) -> str:
    """A short stable id of a configuration (first 16 hex digits of its sha256)."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:16]


def write_json(path: str | os.PathLike[str], content: dict[str, Any]) -> None:
    """Atomically write ``content`` as indented JSON with its checksum embedded."""
    if _DIGEST_KEY in content:
        raise ValueError(f"{_DIGEST_KEY!r} is reserved for the checksum")
    body = _clean(content)
    digest = hashlib.sha256(canonical_json(body).encode()).hexdigest()
    text = json.dumps({**body, _DIGEST_KEY: digest}, indent=1, sort_keys=True, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode())


def read_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a file written by :func:`write_json`, verifying its checksum.

    Raises:
        FileNotFoundError: no such file.
        CorruptFileError: not JSON, no checksum, or a checksum that does not match.
    """
    path = Path(path)
    raw = path.read_bytes()
    try:
        content = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CorruptFileError(path, f"not valid JSON ({error})") from None
    if not isinstance(content, dict) or _DIGEST_KEY not in content:
        raise CorruptFileError(path, "no embedded sha256 checksum")
    digest = content.pop(_DIGEST_KEY)
    if hashlib.sha256(canonical_json(content).encode()).hexdigest() != digest:
        raise CorruptFileError(path, "checksum mismatch: the file was truncated or edited")
    return content
