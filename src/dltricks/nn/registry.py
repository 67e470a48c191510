"""Look up activation modules by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from dltricks.nn.activations import (
    ELU,
    GELU,
    SELU,
    LeakyReLU,
    Mish,
    PReLU,
    ReLU,
    Sigmoid,
    SiLU,
    Swish,
    Tanh,
)
from dltricks.nn.maxout import GroupMax

__all__ = ["activation_names", "canonical_activation_name", "get_activation"]

_FACTORIES: dict[str, Callable[..., nn.Module]] = {
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "prelu": PReLU,
    "elu": ELU,
    "selu": SELU,
    "gelu": GELU,
    "silu": SiLU,
    "swish": Swish,
    "mish": Mish,
    "maxout": GroupMax,
    "identity": nn.Identity,
}
# Spellings people type: "LeakyReLU", "leaky-relu", "Linear" (no nonlinearity).
_ALIASES = {"linear": "identity", "none": "identity", "logistic": "sigmoid"}


def _key(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "").replace(" ", "")


_BY_KEY = {_key(name): name for name in _FACTORIES} | {
    _key(alias): target for alias, target in _ALIASES.items()
}


def activation_names() -> tuple[str, ...]:
    """The canonical activation names accepted by :func:`get_activation`."""
    return tuple(_FACTORIES)


def canonical_activation_name(name: str) -> str:
    """Map a spelling (case, ``_``/``-`` insensitive; aliases) to its canonical name."""
    if not isinstance(name, str):
        raise ValueError(f"activation name must be a string, got {name!r}")
    canonical = _BY_KEY.get(_key(name))
    if canonical is None:
        raise ValueError(
            f"unknown activation {name!r}; valid names: {', '.join(activation_names())}"
        )
    return canonical


def get_activation(name: str, **kwargs: Any) -> nn.Module:
    """A new activation module by name, e.g. ``get_activation("leaky_relu", negative_slope=0.1)``.

    Names are case-insensitive and ignore ``_``/``-``; ``"maxout"`` takes ``k`` (default 2)
    and returns a :class:`GroupMax`. Raises ``ValueError`` listing the valid names.
    """
    return _FACTORIES[canonical_activation_name(name)](**kwargs)
