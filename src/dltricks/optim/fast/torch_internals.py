"""Every use of torch's private or version-dependent APIs by the fast path, in one place.

Each function here has a public fallback: where this torch lacks the private API (or it
changed), the function says so by its return value and the caller takes the public path,
slower but with the same numbers. ``tests/optim/test_fast_internals.py`` removes each API in
turn and checks that a step still gives the same result.
"""

from __future__ import annotations

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
