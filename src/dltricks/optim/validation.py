"""Argument checks shared by the optimizers: each raises ValueError naming the argument.

Messages begin as ``torch.optim``'s do ("Invalid learning rate: -1", "Invalid beta parameter
at index 0: 1.0"), so that code and tests matching torch's messages match ours, and then say
which rule the value breaks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from torch import Tensor

# torch's wording for the arguments whose message is not "Invalid <name> value".
_TORCH_NAMES: Mapping[str, str] = {
    "lr": "learning rate",
    "eps": "epsilon value",
    "betas[0]": "beta parameter at index 0",
    "betas[1]": "beta parameter at index 1",
}


def _invalid(name: str, value: Any) -> str:
    """The start of torch's message for an invalid ``name``."""
    return f"Invalid {_TORCH_NAMES.get(name, f'{name} value')}: {value}"


def _number(name: str, value: Any) -> float:
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"Tensor {name} must be 1-element: {name} must be a number or a one-element "
                f"tensor, got shape {tuple(value.shape)}"
            )
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{_invalid(name, repr(value))}: {name} must be a number")
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{_invalid(name, value)}: {name} must be finite")
    return float(value)


def check_non_negative(name: str, value: Any) -> None:
    """``value >= 0`` and finite."""
    if _number(name, value) < 0:
        raise ValueError(f"{_invalid(name, value)}: {name} must be >= 0")


def check_positive(name: str, value: Any) -> None:
    """``value > 0`` and finite."""
    if _number(name, value) <= 0:
        raise ValueError(f"{_invalid(name, value)}: {name} must be > 0")


def check_unit_interval(name: str, value: Any, *, include_one: bool = False) -> None:
    """``0 <= value < 1`` (or ``<= 1`` with ``include_one``)."""
    number = _number(name, value)
    upper_ok = number <= 1 if include_one else number < 1
    if number < 0 or not upper_ok:
        bound = "]" if include_one else ")"
        raise ValueError(f"{_invalid(name, value)}: {name} must be in [0, 1{bound}")


def check_betas(betas: Any) -> None:
    """A pair ``(beta1, beta2)`` with each in ``[0, 1)``, both numbers or both tensors."""
    if not isinstance(betas, tuple | list) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    if isinstance(betas[0], Tensor) != isinstance(betas[1], Tensor):
        raise ValueError(f"betas must be either both floats or both Tensors, got {betas!r}")
    check_unit_interval("betas[0]", betas[0])
    check_unit_interval("betas[1]", betas[1])


def check_flag(name: str, value: Any) -> None:
    """A plain bool (so a stray number is not silently taken as true)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def check_implementation_flags(group: Mapping[str, Any], class_name: str) -> None:
    """torch's implementation flags, where ``group`` has them: each value that means what
    dltricks does is accepted; any other raises ValueError naming it and what to do instead.

    * ``foreach`` (None, True or False) chooses among torch's loops over tensors, which
      compute the same update; dltricks chooses its own path (``fast``), so any value is fine.
    * ``fused`` (None, True or False): True asks, as in torch, for a step that takes
      ``torch.amp.GradScaler``'s scale and inf flag itself, and for the fused path (see
      :class:`~dltricks.optim.ComposedOptimizer`); as in torch it cannot go with
      ``foreach=True`` (RuntimeError, torch's message).
    * ``capturable``: False. True asks for a step that CUDA graphs can capture, which the
      dltricks step (it reads the step count on the host) is not.
    * ``differentiable``: False. True asks for a step autograd can differentiate through;
      the dltricks step updates in place without recording a graph.
    """
    foreach = group.get("foreach")
    if foreach is not None and not isinstance(foreach, bool):
        raise ValueError(f"foreach must be None, True or False, got {foreach!r}")
    fused = group.get("fused")
    if fused is not None and not isinstance(fused, bool):
        raise ValueError(f"fused must be None, True or False, got {fused!r}")
    if fused and foreach:
        raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
    if group.get("capturable", False) is not False:
        raise ValueError(
            f"capturable={group['capturable']!r} is not supported by dltricks.optim."
            f"{class_name} (its step is not CUDA-graph capturable); pass capturable=False, or "
            f"use torch.optim.{class_name}(capturable=True)"
        )
    if group.get("differentiable", False) is not False:
        raise ValueError(
            f"differentiable={group['differentiable']!r} is not supported by dltricks.optim."
            f"{class_name} (its step updates in place without autograd); pass "
            f"differentiable=False, or use torch.optim.{class_name}(differentiable=True)"
        )
