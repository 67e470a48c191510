"""Hand-written C kernels for Adam/AdamW with bfloat16 or int8 moments, compiled at first use.

``state_precision="bf16"`` halves the bytes of Adam's moments, but inductor's code for 2-byte
buffers beside float32 ones is compute bound on a CPU (about 2.4x torch's fused float32 AdamW
at 20M parameters). The loop in ``csrc/adam_lowbit.c`` is plain C that the system compiler
vectorizes (``-O3 -march=native``): it reads ``theta, g, m, v`` and writes ``theta, m, v`` once,
20 bytes per parameter instead of float32's 28. Measured at 20M parameters on a quiet 2-core
EPYC: 0.76-0.96x torch's fused float32 AdamW on one thread (median 0.83x), 0.66-0.88x on two,
against 1.6-3.4x for the compiled kernel (``benchmarks/results/optim_step_lowbit_cpu.md``). Above
2^18 elements per thread the buffer is split over ``torch.get_num_threads()`` threads
(:data:`OPENMP`).

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

``state_precision="int8"`` has a kernel of its own in the same file: per block of 256
elements it decodes both moments (:func:`~dltricks.optim.state_precision.dequantize_blocks`),
updates them and the parameter as above, takes the block maxima, and encodes
(:func:`~dltricks.optim.state_precision.quantize_blocks`), written operation by operation as
those torch functions compute in float32, so equal moments get equal codes. Decoding and
encoding are integer operations on the float bits (the map's levels are those of a float
format with 3 mantissa bits). Where the compiler targets AVX2 and FMA the loop is written
with their intrinsics, eight elements at a time (:func:`int8_lanes`): gcc vectorizes the
plain loop 32 elements at a time, the width of the codes, and the shuffles that widen and
narrow them cost about a fifth of the step. It is compute bound on this CPU: 1.04-1.24x
torch's fused float32 AdamW at 20M parameters on one thread and 0.86-0.96x on two, against
9-15x for the compiled kernel (``benchmarks/results/optim_step_lowbit_cpu.md``).

Used by the fast path for CPU buckets of float32 parameters of :class:`~dltricks.optim.Adam`
and :class:`~dltricks.optim.AdamW` with bf16 or int8 state and without AMSGrad; everything
else runs the compiled kernel. The library is built with the C compiler on ``PATH`` (``cc`` or
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
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dltricks.optim.fast.kernel import FusedUpdate, Layout
from dltricks.optim.state_precision import INT8_BLOCK, SEED_KEY, StateCodec

SWITCH = "DLTRICKS_NATIVE"
"""Environment variable: ``0`` keeps the compiled kernel for bf16 and int8 Adam/AdamW."""

FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-shared", "-fPIC")
"""The C compiler's flags (no ``errno`` nor trap semantics for ``sqrtf``: the loop vectorizes;
IEEE results unchanged)."""

OPENMP = "-fopenmp"
"""Added to :data:`FLAGS` where the compiler takes it: the kernels split the buffer over
``torch.get_num_threads()`` threads of the OpenMP runtime in the process. On Linux that is
torch's own ``libgomp.so.1`` (the library the kernel asks for by that name is the one torch
loaded), so the step runs on the threads torch's kernels keep warm, instead of competing with
them for the cores (a Python thread pool ran 2 threads 1.3x slower next to torch's spinning
OpenMP workers). Without it, the kernels run on the calling thread."""

SOURCE = Path(__file__).parent / "csrc" / "adam_lowbit.c"
_SYMBOLS = {"bf16": "dltricks_adam_bf16", "int8": "dltricks_adam_int8"}
_COMPILE_TIMEOUT_S = 120

# The loaded kernel (or None after a failure) once looked for, and whether its failure was told.
_kernel: list[Any] = []
_warned: list[bool] = [False]


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


def build(compiler: str, flags: tuple[str, ...] = FLAGS) -> Path:
    """The shared library of :data:`SOURCE` built by ``compiler`` with ``flags`` (cached; see
    the module docstring). Raises ``OSError`` or ``subprocess.SubprocessError`` on failure."""
    source = SOURCE.read_bytes()
    version = subprocess.run(
        [compiler, "--version"], capture_output=True, check=True, timeout=_COMPILE_TIMEOUT_S
    ).stdout
    digest = hashlib.sha256()
    for part in (source, " ".join(flags).encode(), version, _cpu_identity().encode()):
        digest.update(part)
        digest.update(b"\0")
    folder = cache_dir()
    target = folder / f"adam_lowbit-{digest.hexdigest()[:24]}.so"
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, suffix=".so.tmp")
    os.close(handle)
    try:
        done = subprocess.run(
            [compiler, *flags, "-o", temporary, str(SOURCE), "-lm"],
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


def _load() -> dict[str, Any]:
    compiler = _compiler()
    if compiler is None:
        raise OSError("no C compiler (cc or gcc) on PATH")
    try:
        library = ctypes.CDLL(str(build(compiler, (*FLAGS, OPENMP))))
    except (OSError, subprocess.SubprocessError):  # no OpenMP here: one thread
        library = ctypes.CDLL(str(build(compiler)))
    kernels = {}
    for precision, symbol in _SYMBOLS.items():
        kernel = getattr(library, symbol)
        if precision == "bf16":  # p, g, m, v, n, key
            kernel.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64, ctypes.c_uint32]
        else:  # p, g, m codes, m absmax, v codes, v absmax, blocks
            kernel.argtypes = [ctypes.c_void_p] * 6 + [ctypes.c_int64]
        kernel.argtypes += [ctypes.c_float] * 9 + [ctypes.c_int32] * 3  # ..., threads
        kernel.restype = None
        kernels[precision] = kernel
    lanes = library.dltricks_int8_lanes
    lanes.argtypes, lanes.restype = [], ctypes.c_int32
    kernels["int8_lanes"] = int(lanes())
    return kernels


def adam_kernel(precision: str) -> Any | None:
    """The C function (``ctypes``) for ``precision`` ("bf16" or "int8"), built and loaded at
    the first call; None where ``DLTRICKS_NATIVE=0`` or it cannot be built or loaded (then one
    ``RuntimeWarning``)."""
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
                    f"dltricks: the native low-precision Adam kernels are unavailable "
                    f"({type(error).__name__}: {error}); using the compiled kernel",
                    RuntimeWarning,
                    stacklevel=2,
                )
    kernels = _kernel[0]
    return None if kernels is None else kernels[precision]


def int8_lanes() -> int | None:
    """How the loaded int8 kernel is built: 8 for the AVX2 loop (eight elements at a time),
    0 for the plain C loop the compiler vectorizes as it can; None without a kernel."""
    if adam_kernel("int8") is None:
        return None
    return int(_kernel[0]["int8_lanes"])


def forget() -> None:
    """Look for the kernel again at the next use (after a change of compiler or switch)."""
    _kernel.clear()
    _warned[0] = False


class NativeAdamUpdate:
    """Adam/AdamW with bf16 or int8 moments through the C kernel, with :class:`FusedUpdate`'s
    calling convention: ``(param, grad, steps, exp_avg, exp_avg_sq, sr_seed, *hyper)`` (bf16)
    or ``(param, grad, steps, exp_avg_int8, exp_avg_absmax, exp_avg_sq_int8,
    exp_avg_sq_absmax, *hyper)`` (int8), the hyperparameters in ``layout.hyper_keys`` order
    as 0-dim tensors; it writes ``param`` and the moments in place and adds one to
    ``steps``."""

    def __init__(
        self,
        kernel: Any,
        layout: Layout,
        *,
        maximize: bool,
        decoupled: bool,
        precision: str = "bf16",
    ) -> None:
        self.kernel = kernel
        self.layout = layout
        self.maximize = maximize
        self.decoupled = decoupled
        self.precision = precision
        self.failure: str | None = None  # as FusedUpdate's: this update never falls back
        self._names = layout.hyper_keys

    def __call__(self, *args: Tensor) -> None:
        if self.precision == "int8":
            param, grad, steps, *stored = args[:7]
            hyper = args[7:]
        else:
            param, grad, steps, *stored = args[:6]
            hyper = args[6:]
        values = dict(zip(self._names, (float(h) for h in hyper), strict=True))
        lr, weight_decay = values["lr"], values["weight_decay"]
        beta1, beta2, eps, t = values["beta1"], values["beta2"], values["eps"], values["step"]
        if self.decoupled:
            decay, l2 = 1.0 - lr * weight_decay, 0.0
        else:
            decay, l2 = 1.0, weight_decay
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
            torch.get_num_threads(),  # as torch's kernels; the C code splits over OpenMP
        )
        p, g = param.data_ptr(), grad.data_ptr()
        numel = param.numel()
        if self.precision == "int8":
            if numel % INT8_BLOCK:
                raise ValueError(f"an int8 bucket of {numel} elements is not whole blocks")
            m, m_absmax, v, v_absmax = (s.data_ptr() for s in stored)
            self.kernel(p, g, m, m_absmax, v, v_absmax, numel // INT8_BLOCK, *scalars)
        else:
            m, v, seed = stored[0].data_ptr(), stored[1].data_ptr(), stored[2]
            # state_precision.noise_key in uint32 arithmetic (int32 wraps the same way).
            key = (int(t) * 0x2C1B3C6D + int(float(seed[0])) * 0x297A2D39) & 0xFFFFFFFF
            self.kernel(p, g, m, v, numel, key, *scalars)
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
    """The C kernel's update for a bucket where it applies (bf16 or int8 state of float32 CPU
    parameters of Adam or AdamW without AMSGrad, and the kernel loads), else ``compiled``."""
    from dltricks.optim.adam import Adam, AdamW

    layout = compiled.layout
    scalars = {"bf16": (SEED_KEY,), "int8": ()}.get(codec.precision)
    if (
        type(optimizer) not in (Adam, AdamW)
        or scalars is None
        or dtype != torch.float32
        or device.type != "cpu"
        or group.get("amsgrad")
        or layout.tensor_keys != ("exp_avg", "exp_avg_sq")
        or layout.scalar_keys != scalars
        # The kernel's maps: exp_avg signed, exp_avg_sq unsigned.
        or "exp_avg" in codec.unsigned
        or "exp_avg_sq" not in codec.unsigned
    ):
        return compiled
    kernel = adam_kernel(codec.precision)
    if kernel is None:
        return compiled
    return NativeAdamUpdate(
        kernel,
        layout,
        maximize=bool(group["maximize"]),
        decoupled=bool(group["decoupled_weight_decay"]),
        precision=codec.precision,
    )
