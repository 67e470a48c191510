"""Argument checks shared by the optimizers: each raises ValueError naming the argument."""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor


def _number(name: str, value: Any) -> float:
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"{name} must be a number or a one-element tensor, got shape {tuple(value.shape)}"
            )
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def check_non_negative(name: str, value: Any) -> None:
    """``value >= 0`` and finite."""
    if _number(name, value) < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


def check_positive(name: str, value: Any) -> None:
    """``value > 0`` and finite."""
    if _number(name, value) <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")


def check_unit_interval(name: str, value: Any, *, include_one: bool = False) -> None:
    """``0 <= value < 1`` (or ``<= 1`` with ``include_one``)."""
    number = _number(name, value)
    upper_ok = number <= 1 if include_one else number < 1
    if number < 0 or not upper_ok:
        bound = "]" if include_one else ")"
        raise ValueError(f"{name} must be in [0, 1{bound}, got {value}")


def check_betas(betas: Any) -> None:
    """A pair ``(beta1, beta2)`` with each in ``[0, 1)``."""
    if not isinstance(betas, tuple | list) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    check_unit_interval("betas[0]", betas[0])
    check_unit_interval("betas[1]", betas[1])


def check_flag(name: str, value: Any) -> None:
    """A plain bool (so a stray number is not silently taken as true)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
