"""Every use of torch's private or version-dependent APIs by the fast path, in one place.

Each function here has a public fallback: where this torch lacks the private API (or it
changed), the function says so by its return value and the caller takes the public path,
slower but with the same numbers. ``tests/optim/test_fast_internals.py`` removes each API in
turn and checks that a step still gives the same result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor


def is_distributed_tensor(tensor: Tensor) -> bool:
    """Whether ``tensor`` is a ``torch.distributed.tensor.DTensor`` (FSDP2, tensor parallel).

    False where this torch has no DTensor (built without distributed support).
    """
    dtensor = _dtensor_class()
    return dtensor is not None and isinstance(tensor, dtensor)


def _dtensor_class() -> Any:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:
        try:  # torch < 2.5 kept it under _tensor
            from torch.distributed._tensor import DTensor
        except ImportError:
            return None
    return DTensor


def dynamo_global_state() -> Any:
    """Dynamo's check of torch's global state (``GlobalStateGuard``: default dtype, thread
    count, grad mode, autocast...), or None where this torch lacks it.

    Fallback: the fast path keeps calling its kernel through ``torch.compile`` (slower per call
    at small sizes, same numbers).
    """
    try:
        from torch._C._dynamo.guards import GlobalStateGuard
    except ImportError:
        return None
    return GlobalStateGuard()


def inductor_compile_fx() -> Callable[..., Any] | None:
    """Inductor's ``compile_fx`` (what the ``"inductor"`` backend calls), or None.

    Fallback: the public ``torch.compile(backend="inductor", options=...)``, which does not
    hand out the compiled graph, so the kernel is called through ``torch.compile``.
    """
    try:
        from torch._inductor.compile_fx import compile_fx
    except ImportError:
        return None
    return compile_fx  # type: ignore[no-any-return]


def placeholder_example(node: Any) -> Tensor | None:
    """The fake tensor dynamo recorded for a graph input (``node.meta["example_value"]``),
    or None. Fallback: the graph is not called directly (see :func:`inductor_compile_fx`)."""
    meta = getattr(node, "meta", None)
    value = meta.get("example_value") if isinstance(meta, dict) else None
    return value if isinstance(value, Tensor) else None


def symbol_of(size: Any) -> Any:
    """The symbol behind a symbolic size (``SymInt.node.expr``), or None."""
    node = getattr(size, "node", None)
    return getattr(node, "expr", None)


def calls_unboxed(compiled: Any) -> bool:
    """Whether the graph inductor returned to the backend can be called with the inputs as
    positional arguments, as dynamo calls it (aot_autograd's forward wrapper; it carries the
    inner graph's ``_boxed_call`` flag, which therefore says nothing here).

    Fallback (False): the kernel is called through ``torch.compile``.
    """
    return callable(compiled) and not isinstance(compiled, list | tuple)


def optimizer_hook_dicts() -> tuple[Any, Any] | None:
    """torch's global optimizer step hooks (``torch.optim.optimizer``'s
    ``_global_optimizer_pre_hooks`` and ``_global_optimizer_post_hooks``), or None.

    Fallback: every step runs inside torch's own step wrapper (hooks and profiler range
    always honoured, a few microseconds more per step).
    """
    import torch.optim.optimizer as torch_optimizer

    pre = getattr(torch_optimizer, "_global_optimizer_pre_hooks", None)
    post = getattr(torch_optimizer, "_global_optimizer_post_hooks", None)
    if pre is None or post is None:
        return None
    return pre, post


def profiler_enabled() -> bool:
    """Whether the autograd profiler is on (``torch.autograd.profiler._is_profiler_enabled``);
    True where this torch does not say (fallback: torch's step wrapper, as when profiling)."""
    import torch.autograd.profiler as profiler

    return bool(getattr(profiler, "_is_profiler_enabled", True))
