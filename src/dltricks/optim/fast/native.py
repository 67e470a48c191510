"""A hand-written C kernel for Adam/AdamW with bfloat16 moments, compiled at first use.

``state_precision="bf16"`` halves the bytes of Adam's moments, but inductor's code for 2-byte
buffers beside float32 ones is compute bound on a CPU (about 2.4x torch's fused float32 AdamW
at 20M parameters). The loop in ``csrc/adam_bf16.c`` is plain C that the system compiler
vectorizes (``-O3 -march=native``): it reads ``theta, g, m, v`` and writes ``theta, m, v`` once,
20 bytes per parameter instead of float32's 28. Measured at 20M parameters on one core of a
shared 2-core EPYC: 0.76-0.94x torch's fused float32 AdamW (85-94% of its memory bound),
against 2.4x for the compiled kernel (``benchmarks/results/optim_step_lowbit_cpu.md``). Above
2^18 elements per thread the buffer is split over ``torch.get_num_threads()`` threads.

Math (one element, float32 arithmetic; ``m``, ``v`` widened from their bfloat16 bits)::

    g' = -g if maximize else g;   g' += lambda theta          (Adam: coupled L2)
    m  = beta1 m + (1 - beta1) g'           v = beta2 v + (1 - beta2) g'^2
    theta = d theta - (eta / (1 - beta1^t)) m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

with ``d = 1 - eta lambda`` for AdamW (decoupled decay) and ``d = 1`` for Adam; the
hyperparameters are read from the group at every step (so a scheduler works), the bias
corrections computed in float64. ``m`` and ``v`` are stored rounded stochastically to
bfloat16 with the random bits of :mod:`~dltricks.optim.state_precision` (the hash of the
element's index in the run plus the key of ``step`` and ``sr_seed``; the low 16 bits for
``exp_avg``, the high 16 for ``exp_avg_sq``): the 16 bits are added below the 16 bits that
bfloat16 keeps, and the sum truncated, which rounds away from zero with probability (dropped
bits) / 2^16, unbiased, the same distribution as the compiled kernel's rule (the two pick
differently for a given draw). State layout and ``state_dict`` are those of the compiled
kernel: a checkpoint moves between them.

Used by the fast path for CPU buckets of float32 parameters of :class:`~dltricks.optim.Adam`
and :class:`~dltricks.optim.AdamW` with bf16 state and without AMSGrad; everything else runs
the compiled kernel. The library is built with the C compiler on ``PATH`` (``cc`` or
``gcc``) into ``$XDG_CACHE_HOME/dltricks/native`` (``~/.cache/dltricks/native``), named by a
hash of the source, the flags, the compiler's version and the CPU, written to a temporary
file and renamed. Where that fails (no compiler, a compile or load error), the compiled
kernel runs and one warning says why; ``DLTRICKS_NATIVE=0`` chooses the compiled kernel
silently.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dltricks.optim.fast.kernel import FusedUpdate, Layout
from dltricks.optim.state_precision import SEED_KEY, StateCodec

SWITCH = "DLTRICKS_NATIVE"
"""Environment variable: ``0`` keeps the compiled kernel for bf16 Adam/AdamW."""

FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-shared", "-fPIC")
"""The C compiler's flags (no ``errno`` nor trap semantics for ``sqrtf``: the loop vectorizes;
IEEE results unchanged)."""

SOURCE = Path(__file__).parent / "csrc" / "adam_bf16.c"
_SYMBOL = "dltricks_adam_bf16"
_COMPILE_TIMEOUT_S = 120

_MIN_PART = 1 << 18  # elements per thread at least (a thread's start costs microseconds)
_PART_ALIGN = 64
_pools: dict[int, ThreadPoolExecutor] = {}

# The loaded kernel (or None after a failure) once looked for, and whether its failure was told.
_kernel: list[Any] = []
_warned: list[bool] = [False]


def _pool(parts: int) -> ThreadPoolExecutor:
    pool = _pools.get(parts)
    if pool is None:
        pool = _pools[parts] = ThreadPoolExecutor(parts - 1, thread_name_prefix="dltricks")
    return pool


def cache_dir() -> Path:
    """Where built libraries are kept: ``$XDG_CACHE_HOME/dltricks/native``, by default
    ``~/.cache/dltricks/native``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dltricks" / "native"


def _compiler() -> str | None:
    return shutil.which("cc") or shutil.which("gcc")


def _cpu_identity() -> str:
    """What ``-march=native`` depends on: the architecture and the CPU's feature flags."""
    identity = platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith(("flags", "Features", "model name")):
                    identity += line
    except OSError:
        identity += platform.processor()
    return identity


def build(compiler: str) -> Path:
    """The shared library of :data:`SOURCE` built by ``compiler`` (cached; see the module
    docstring). Raises ``OSError`` or ``subprocess.SubprocessError`` on failure."""
    source = SOURCE.read_bytes()
    version = subprocess.run(
        [compiler, "--version"], capture_output=True, check=True, timeout=_COMPILE_TIMEOUT_S
    ).stdout
    digest = hashlib.sha256()
    for part in (source, " ".join(FLAGS).encode(), version, _cpu_identity().encode()):
        digest.update(part)
        digest.update(b"\0")
    folder = cache_dir()
    target = folder / f"adam_bf16-{digest.hexdigest()[:24]}.so"
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, suffix=".so.tmp")
    os.close(handle)
    try:
        done = subprocess.run(
            [compiler, *FLAGS, "-o", temporary, str(SOURCE), "-lm"],
            capture_output=True,
            timeout=_COMPILE_TIMEOUT_S,
        )
        if done.returncode != 0:
            message = done.stderr.decode(errors="replace").strip()[-500:]
            raise subprocess.SubprocessError(f"{compiler} failed: {message}")
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return target


def _load() -> Any:
    compiler = _compiler()
    if compiler is None:
        raise OSError("no C compiler (cc or gcc) on PATH")
    library = ctypes.CDLL(str(build(compiler)))
    kernel = getattr(library, _SYMBOL)
    kernel.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64, ctypes.c_uint32]
    kernel.argtypes += [ctypes.c_float] * 9 + [ctypes.c_int32] * 2
    kernel.restype = None
    return kernel


def adam_bf16_kernel() -> Any | None:
    """The C function (``ctypes``), built and loaded at the first call; None where
    ``DLTRICKS_NATIVE=0`` or it cannot be built or loaded (then one ``RuntimeWarning``)."""
    if os.environ.get(SWITCH, "1").strip() == "0":
        return None
    if not _kernel:
        try:
            _kernel.append(_load())
        except (OSError, AttributeError, subprocess.SubprocessError) as error:
            _kernel.append(None)
            if not _warned[0]:
                _warned[0] = True
                warnings.warn(
                    f"dltricks: the native bf16 Adam kernel is unavailable "
                    f"({type(error).__name__}: {error}); using the compiled kernel",
                    RuntimeWarning,
                    stacklevel=2,
                )
    return _kernel[0]


def forget() -> None:
    """Look for the kernel again at the next use (after a change of compiler or switch)."""
    _kernel.clear()
    _warned[0] = False


class NativeAdamUpdate:
    """Adam/AdamW with bf16 moments through the C kernel, with :class:`FusedUpdate`'s calling
    convention: ``(param, grad, steps, exp_avg, exp_avg_sq, sr_seed, *hyper)``, the
    hyperparameters in ``layout.hyper_keys`` order as 0-dim tensors; it writes ``param`` and
    the moments in place and adds one to ``steps``."""

    def __init__(self, kernel: Any, layout: Layout, *, maximize: bool, decoupled: bool) -> None:
        self.kernel = kernel
        self.layout = layout
        self.maximize = maximize
        self.decoupled = decoupled
        self.failure: str | None = None  # as FusedUpdate's: this update never falls back
        self._names = layout.hyper_keys

    def __call__(self, *args: Tensor) -> None:
        param, grad, steps, exp_avg, exp_avg_sq, seed, *hyper = args
        values = dict(zip(self._names, (float(h) for h in hyper), strict=True))
        lr, weight_decay = values["lr"], values["weight_decay"]
        beta1, beta2, eps, t = values["beta1"], values["beta2"], values["eps"], values["step"]
        if self.decoupled:
            decay, l2 = 1.0 - lr * weight_decay, 0.0
        else:
            decay, l2 = 1.0, weight_decay
        # state_precision.noise_key in uint32 arithmetic (int32 wraps the same way).
        key = (int(t) * 0x2C1B3C6D + int(float(seed[0])) * 0x297A2D39) & 0xFFFFFFFF
        scalars = (
            decay,
            l2,
            lr / (1.0 - beta1**t),
            beta1,
            1.0 - beta1,
            beta2,
            1.0 - beta2,
            1.0 / math.sqrt(1.0 - beta2**t),
            eps,
            int(self.maximize),
            int(l2 != 0.0),
        )
        pointers = (param.data_ptr(), grad.data_ptr(), exp_avg.data_ptr(), exp_avg_sq.data_ptr())
        numel = param.numel()

        def run(start: int, stop: int) -> None:
            # Elements [start, stop): the hash's index is the element's, so key + start.
            p, g, m, v = pointers
            self.kernel(
                p + 4 * start,
                g + 4 * start,
                m + 2 * start,
                v + 2 * start,
                stop - start,
                (key + start) & 0xFFFFFFFF,
                *scalars,
            )

        parts = min(torch.get_num_threads(), numel // _MIN_PART)
        if parts <= 1:
            run(0, numel)
        else:
            # As torch's kernels: torch's thread count. ctypes releases the GIL during a call.
            size = -(-numel // parts // _PART_ALIGN) * _PART_ALIGN
            bounds = [(a, min(a + size, numel)) for a in range(0, numel, size)]
            futures = [_pool(parts).submit(run, a, b) for a, b in bounds[1:]]
            run(*bounds[0])
            for future in futures:
                future.result()
        steps.add_(1.0)

    def bind(self, args: Sequence[Tensor]) -> BoundNative:
        """Run once on ``args`` and return a caller of the same arguments (as
        :meth:`FusedUpdate.bind`)."""
        self(*args)
        return BoundNative(self, args)


class BoundNative:
    """A :class:`NativeAdamUpdate` bound to its arguments (see :class:`BoundUpdate
    <dltricks.optim.fast.kernel.BoundUpdate>`)."""

    direct = True
    """Calls skip dynamo (there is none)."""

    def __init__(self, update: NativeAdamUpdate, args: Sequence[Tensor]) -> None:
        self.update = update
        self.args: list[Tensor | None] = list(args)

    def replace(self, position: int, tensor: Tensor | None) -> None:
        """Use ``tensor`` as argument ``position`` from now on (None: none until replaced)."""
        self.args[position] = tensor

    def __call__(self) -> None:
        if any(a is None for a in self.args):
            raise RuntimeError("a fused update was called with a released argument")
        self.update(*self.args)  # type: ignore[arg-type]


def native_update_for(
    optimizer: Any,
    group: Mapping[str, Any],
    codec: StateCodec,
    dtype: torch.dtype,
    device: torch.device,
    compiled: FusedUpdate,
) -> FusedUpdate | NativeAdamUpdate:
    """The C kernel's update for a bucket where it applies (bf16 state of float32 CPU
    parameters of Adam or AdamW without AMSGrad, and the kernel loads), else ``compiled``."""
    from dltricks.optim.adam import Adam, AdamW

    layout = compiled.layout
    if (
        type(optimizer) not in (Adam, AdamW)
        or codec.precision != "bf16"
        or dtype != torch.float32
        or device.type != "cpu"
        or group.get("amsgrad")
        or layout.tensor_keys != ("exp_avg", "exp_avg_sq")
        or layout.scalar_keys != (SEED_KEY,)
    ):
        return compiled
    kernel = adam_bf16_kernel()
    if kernel is None:
        return compiled
    return NativeAdamUpdate(
        kernel,
        layout,
        maximize=bool(group["maximize"]),
        decoupled=bool(group["decoupled_weight_decay"]),
    )
