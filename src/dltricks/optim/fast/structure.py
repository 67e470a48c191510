"""The structure of a user's chain: a key equal for chains that compute the same thing.

Two chains built by the same code with the same constants (``chain(scale_by_adam(0.9, 0.999),
scale_by_learning_rate())`` written in a function that makes a new optimizer per run) are
different Python objects, but one compiled kernel serves both. :func:`structural_key` reads a
Transform's functions: their code objects, module globals, defaults and the values their
closures captured, recursively through captured Transforms and functions. Captured values of
other kinds (a tensor, a list the user may change, an object of the user's) make the chain's
structure unknowable from outside: the key is then ``None`` and the caller keys by the
Transform object itself, as before.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Hashable
from typing import Any

from dltricks.optim.base import Transform

# Nesting deeper than this (a chain of chains of chains...) is keyed by identity.
MAX_DEPTH = 32


class _UnknownStructureError(Exception):
    """A captured value whose meaning cannot be read from outside."""


class _Same:
    """Equal only to itself (compared by identity), and keeps its object alive."""

    __slots__ = ("obj",)

    def __init__(self, obj: object) -> None:
        self.obj = obj

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Same) and other.obj is self.obj

    def __hash__(self) -> int:
        return id(self.obj)


def structural_key(transform: Transform) -> Hashable | None:
    """A hashable key equal for Transforms that compute the same update, or None if unknown.

    Equal keys mean: the same declaration (name, state keys, ``elementwise``), and ``init``
    and ``update`` functions with the same code, globals, defaults and captured constants.
    Numbers are keyed by type and exact value (``0.0`` and ``-0.0``, ``1`` and ``True`` differ).
    """
    try:
        return _key(transform, 0)
    except _UnknownStructureError:
        return None


def _key(value: Any, depth: int) -> Hashable:
    if depth > MAX_DEPTH:
        raise _UnknownStructureError
    if value is None or isinstance(value, str | bytes):
        return (type(value).__name__, value)
    if isinstance(value, bool | int):
        return (type(value).__name__, int(value))
    if isinstance(value, float):
        return ("float", value.hex())
    if isinstance(value, Transform):
        return (
            "Transform",
            value.name,
            value.state_keys,
            value.elementwise,
            _key(value.init, depth + 1),
            _key(value.update, depth + 1),
        )
    if isinstance(value, tuple | frozenset):
        items = sorted(map(repr, value)) if isinstance(value, frozenset) else value
        return (type(value).__name__, *(_key(v, depth + 1) for v in items))
    if isinstance(value, types.FunctionType):
        return _function_key(value, depth)
    if isinstance(value, functools.partial):
        return (
            "partial",
            _key(value.func, depth + 1),
            _key(value.args, depth + 1),
            tuple(sorted((k, _key(v, depth + 1)) for k, v in value.keywords.items())),
        )
    if isinstance(value, types.BuiltinFunctionType | types.ModuleType):
        return (type(value).__name__, _Same(value))
    raise _UnknownStructureError


def _function_key(fn: types.FunctionType, depth: int) -> Hashable:
    cells = fn.__closure__ or ()
    try:
        captured = tuple(_key(cell.cell_contents, depth + 1) for cell in cells)
    except ValueError:  # an empty cell (a name assigned after the function was made)
        raise _UnknownStructureError from None
    kwdefaults = fn.__kwdefaults__ or {}
    return (
        "function",
        fn.__code__,
        # Functions of one module share its globals: the same code then means the same names.
        _Same(fn.__globals__),
        _key(fn.__defaults__ or (), depth + 1),
        tuple(sorted((k, _key(v, depth + 1)) for k, v in kwdefaults.items())),
        captured,
    )
