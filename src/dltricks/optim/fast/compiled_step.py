"""An optimizer step inside ``torch.compile``: one opaque operator, no graph break.

``torch.compile(optimizer.step)`` (torch's recipe for compiled optimizers) and a compiled
training step that calls ``optimizer.step()`` trace the step into their graph. Traced as
Python, a dltricks step would graph-break on the non-finite check (a value read back to the
host), recompile for every parameter's step count, and unroll the per-parameter loop. Instead,
the traced step is one call of the custom operator ``dltricks::optimizer_step``: dynamo records
it as a single node, and at run time it takes the optimizer's ordinary step (the fused fast
path, its finite check and its errors included), exactly as without ``torch.compile``. So
``fullgraph=True`` works with every non-finite policy, nothing recompiles per parameter, and a
compiled step costs what a plain one does.

The operator mutates the parameters and the state of the optimizer it is given (by a handle,
an integer); what it declares to the compiler is the mutation of a one-element token tensor
owned by the optimizer, which keeps the call in the graph and in order. Code traced after the
step in the same graph should not read the parameters (a training step's next forward runs
in the next call, which is the usual case).
"""

from __future__ import annotations

import itertools
import weakref
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from dltricks.optim.adapter import ComposedOptimizer

_handles = itertools.count(1)
_OPTIMIZERS: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()


def _run_step(token: Tensor, handle: int) -> None:
    optimizer = _OPTIMIZERS.get(handle)
    if optimizer is None:
        raise RuntimeError("dltricks.optimizer_step: the optimizer was garbage-collected")
    optimizer.step_outside_compile()
    token.add_(1)


def _define_operator() -> Any:
    custom_op = getattr(getattr(torch, "library", None), "custom_op", None)
    if custom_op is None:  # torch < 2.4: steps inside torch.compile run as traced Python
        return None
    operator = custom_op("dltricks::optimizer_step", mutates_args=("token",))(_run_step)

    @operator.register_fake  # type: ignore[untyped-decorator,misc]
    def _(token: Tensor, handle: int) -> None:
        return None

    return operator


_OPERATOR = _define_operator()


def available() -> bool:
    """Whether this torch can define the operator (``torch.library.custom_op``, torch 2.4+)."""
    return _OPERATOR is not None


def register(optimizer: ComposedOptimizer) -> None:
    """Give ``optimizer`` its handle and token (when it is made or copied: not while traced)."""
    handle = next(_handles)
    _OPTIMIZERS[handle] = optimizer
    optimizer.__dict__["_compile_handle"] = (handle, torch.zeros(1))


def step_in_graph(optimizer: ComposedOptimizer) -> None:
    """Record one step of ``optimizer`` in the graph being traced (see the module docstring)."""
    found = optimizer.__dict__.get("_compile_handle")
    if found is None:
        raise RuntimeError(
            f"{type(optimizer).__name__} was not made by its constructor (no compile handle); "
            "call dltricks.optim.fast.compiled_step.register(optimizer) before compiling"
        )
    handle, token = found
    _OPERATOR(token, handle)
