"""The fused fast path: every optimizer step as one compiled pass over flat buffers.

:mod:`~dltricks.optim.fast.kernel` compiles a chain's pure, elementwise update with
``torch.compile`` into one kernel that reads the parameters, gradients and state and writes the
parameters and state in place; :mod:`~dltricks.optim.fast.flat` lays a group's tensors out in
flat buffers so that one kernel call covers the whole group; :mod:`~dltricks.optim.fast.path`
drives both for one optimizer. :class:`~dltricks.optim.ComposedOptimizer` documents when the
fast path is taken and when it falls back to the eager path.
"""

from dltricks.optim.fast.kernel import FusedUpdate, Layout, analyse, fused_update_for
from dltricks.optim.fast.path import FAST_DEVICES, FAST_DTYPES, MIN_FAST_NUMEL, FlatPath

__all__ = [
    "FAST_DEVICES",
    "FAST_DTYPES",
    "MIN_FAST_NUMEL",
    "FlatPath",
    "FusedUpdate",
    "Layout",
    "analyse",
    "fused_update_for",
]
