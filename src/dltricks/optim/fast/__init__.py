"""The fused fast path: every optimizer step as one compiled pass over flat buffers.

:mod:`~dltricks.optim.fast.kernel` compiles a chain's pure, elementwise update with
``torch.compile`` into one kernel that reads the parameters, gradients and state and writes the
parameters and state in place; :mod:`~dltricks.optim.fast.flat` lays a group's tensors out in
flat buffers so that one kernel call covers the whole group; :mod:`~dltricks.optim.fast.path`
drives both for one optimizer; :mod:`~dltricks.optim.fast.segments` fuses the elementwise
stretches of a chain around its per-tensor blocks (Muon's Newton-Schulz, Adafactor's factored
statistics), which run per parameter between the kernels.
:class:`~dltricks.optim.ComposedOptimizer` documents how the path is chosen (``fast=``,
``DLTRICKS_FAST``).

What to expect (measured on a shared 2-core EPYC, one torch thread; the table and the command
are in ``benchmarks/results/optim_step_cpu.md``):

* **speed**: at 50M parameters every optimizer runs at the streaming-bandwidth bound, on par
  with torch's fused kernels where torch has them and 1.8-3.9x faster than torch's best mode
  where it has none. At 100K parameters a step is a little Python around one kernel call: a
  bucket's first call goes through ``torch.compile``, later ones call the compiled code
  directly (:meth:`FusedUpdate.bind`), and the adapter skips torch's hook/profiler wrapper
  while nothing uses it; every optimizer is then faster than torch's foreach mode (plain SGD
  0.8 of its time, the adaptive ones 0.2-0.3).
* **compilation**: a few seconds per chain (4-9 s cold on that machine, about 1-5 s when
  torch's on-disk inductor cache already holds the kernel, e.g. from an earlier process).
  Kernels are shared by every optimizer instance, group and size of the process (the length is
  symbolic), and a learning-rate or step change never recompiles.
* **memory**: no temporaries during a step (the peak resident set does not grow). The first
  fast step allocates the flat buffers and copies parameters, gradients and state into them:
  a one-time peak of about one extra copy of the parameters and gradients.
* **numbers**: float64 matches the eager path and torch to 1e-10 relative (the parity tests
  run on both paths). In float32 the compiled kernel rounds like the eager operations; after
  100 steps the largest difference measured was a few float32 ulp on about 1% of the elements
  (see the float32 section of the results).
* **non-finite values** under ``nonfinite="ignore"`` may propagate differently: the kernel
  computes Lion's ``sign(NaN)`` as 0 where the eager path gives NaN.
* **autograd**: parameters change through the flat buffers, and the step bumps their version
  counters, so a backward through a graph that saved a parameter before the step fails as it
  does after a torch optimizer's step.
* **finite check**: the default ``nonfinite="raise"`` reads the gradients once more (a sum,
  confirmed elementwise only when it is not finite), 4 bytes per parameter on top of the
  step's 12-28; ``nonfinite="ignore"`` skips it.

float16/bfloat16 parameters are fused too, with float32 arithmetic inside the kernel and one
rounding per stored value (torch's fused optimizers do the same; the eager path rounds after
every operation).

Fallbacks (the eager path, for the parameters or chains concerned): DTensor parameters
(FSDP2, tensor parallel: run per tensor, exactly as torch), non-contiguous parameters, devices
other than CPU and CUDA, parameters that share storage with another tensor, buckets under
:data:`MIN_FAST_NUMEL` elements in automatic mode, a chain with a block that declares nothing
or that does not compile (a ``RuntimeWarning`` says why), a chain of declared blocks with no
elementwise stretch (a ``partition``), one-element runs, and
steps traced by an outer ``torch.compile`` on a torch without ``torch.library.custom_op``
(otherwise such a step is one operator that runs this path: see
:mod:`~dltricks.optim.fast.compiled_step`). Parameters without a gradient at a step are skipped
exactly as on the eager path; if that leaves parameters of a bucket at different step counts,
each group of equal history gets its own kernel call on its slice of the buffers.

Private torch APIs are used only through :mod:`~dltricks.optim.fast.torch_internals`, each
with a public fallback.

Inductor specialises a CPU kernel on the torch thread count of its first compilation; change
``torch.set_num_threads`` before the first step, not after.
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
