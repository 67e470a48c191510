"""Optimizer state in fewer bytes: bfloat16 with stochastic rounding, or 8-bit block codes.

An optimizer step is memory bound: AdamW reads and writes its two moments at every step, 16 of
the 28 bytes it moves per parameter in float32. ``state_precision`` (a constructor keyword of
every optimizer whose state is moments: Adam, AdamW, Adagrad, RMSprop, Adamax, NAdam, Adadelta,
Lion, AdaBelief) stores those moments in fewer bytes; the arithmetic stays in float32 (or the
parameter's dtype, if wider), inside the fused kernel on the fast path:

* ``"fp32"`` (default): the state in the parameter's dtype, exactly as torch keeps it.
* ``"bf16"``: every moment in bfloat16 (2 bytes), rounded *stochastically* when stored: a value
  ``x`` between the neighbouring bfloat16 values ``lo <= x < hi`` is stored as ``hi`` with
  probability ``(x - lo) / (hi - lo)``, so ``E[round(x)] = x`` and the small updates of a slow
  moving average (``(1 - beta2) g^2`` is far below a bfloat16 ulp of ``v``) are not lost, as
  they are with round-to-nearest. The random bits come from a counter-based hash of the
  element's index, the step count and a seed, kept in the state (``sr_seed``, so a resumed run
  continues the same stream). The seed is 0 for every new optimizer, not drawn from torch's
  generator: processes of a data-parallel run (DDP) start from different random states, and
  replicas that rounded differently would drift apart. A DTensor moment (FSDP2, tensor
  parallel) is rounded shard by shard, each shard with its own stretch of the stream and
  replicas of a shard alike.
* ``"int8"``: every moment in 8-bit codes plus one float32 scale per block of
  :data:`INT8_BLOCK` elements (Dettmers et al. 2022, "8-bit Optimizers via Block-wise
  Quantization"): about 1.016 bytes per element. A block stores ``absmax = max |x|`` and each
  element's ``a = |x| / absmax`` as its nearest level on a map that, like Dettmers' dynamic
  map, spends its codes evenly over orders of magnitude: the levels of a float format with 3
  mantissa bits, shifted down by the smallest of them so that code 0 is zero (an unsigned
  code 0 reads as a quarter of the lowest level: :data:`UNSIGNED_ZERO_LEVEL`;
  :func:`quantize_blocks`). Rounding to the nearest level errs by half a level step at most:
  ``(a + L0) / 16``, with ``L0`` the shift. Signed moments (e4m3 levels, the sign in the
  code's top bit) reach down to ``2^-19`` of the block's absmax, unsigned ones (second
  moments, accumulators: e5m3 levels) to ``2^-35``, about the square of the signed range, as
  a second moment relates to a first. Encoding and decoding are a few integer operations on
  the float's bits, no search and no root. Dettmers' dynamic *tree* map splits the bits
  between a decimal exponent and a fraction; it needs a search to encode. Tensors of fewer
  than :data:`INT8_MIN_NUMEL` elements keep float32 state (they cost little memory, and
  biases and norms are where quantization hurts most); every larger tensor is covered whatever
  its size: its last block is padded with zeros. Codes are uint8 tensors; int8 codes are
  checkpoints of the quarter-root map dltricks used before (``round(C a^(1/4))``): they are
  read by that map's formula and converted when loaded (:func:`is_quarter_root`).

State names (``optimizer.state[p]``, and so ``state_dict``): ``bf16`` keeps torch's names
(``exp_avg`` as a bfloat16 tensor) plus ``sr_seed``; ``int8`` keeps, for each moment ``name``,
``name_int8`` (the codes, shaped like the parameter) and ``name_absmax`` (one float32 per
block). :func:`decoded` gives a state in float32 whatever its form.

Loading (``load_state_dict``) accepts any of the three forms and converts it to this
optimizer's precision: to ``fp32`` by decoding (exact for bf16; the dequantized values for
int8), to ``bf16`` by rounding to nearest, to ``int8`` by quantizing the (decoded) values.
A state in the optimizer's own form loads back bit for bit.

Caveat: moments are rounded independently, so a quantity computed from two of them may lose
a property exact arithmetic guarantees: centered RMSprop's ``v - a^2`` can come out slightly
negative under int8 when the gradient barely varies (its square root is then NaN).

Speed: the state's bytes are saved; the time for bf16 Adam/AdamW on a CPU. For Adam/AdamW
with bf16 or int8 state on a CPU the fast path runs hand-written C kernels
(:mod:`dltricks.optim.fast.native`, built at first use with the system C compiler). At 20M
parameters on a quiet 2-core EPYC, against torch's fused float32 AdamW in the same run: bf16
0.76-0.96x on one thread (median 0.83x), 0.66-0.88x on two; int8 1.04-1.24x on one thread
and 0.86-0.96x on two. The int8 step is compute bound on this CPU: decoding, updating,
taking the block maxima and encoding take longer than moving its 16 bytes per parameter.
Everything else runs inductor's kernels, which (torch 2.13) load 1- and 2-byte buffers beside
float32 ones with partial vector loads and keep the int8 block maximum's inputs in float32
temporaries: bf16 about 1.6-3.4x (also where no C compiler is found, or with
``DLTRICKS_NATIVE=0``) and int8 9-15x torch's fused float32 AdamW
(``benchmarks/results/optim_step_lowbit_cpu.md``). int8 state is for memory.

Both paths run the same encode and decode functions (the fast path inside its one kernel):
they agree to the rounding of the stored form; the random bits of ``bf16`` depend on an
element's position in the flat buffer, so the two paths draw different (equally distributed)
roundings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from dltricks.optim.base import State
from dltricks.optim.fast.torch_internals import is_distributed_tensor

StatePrecision = Literal["fp32", "bf16", "int8"]
STATE_PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "int8")

INT8_BLOCK = 256
"""Elements per quantization block (each with its own float32 ``absmax``)."""

INT8_MIN_NUMEL = 4096
"""Tensors with fewer elements keep float32 state under ``state_precision="int8"``
(bitsandbytes' ``min_8bit_size`` default)."""

SEED_KEY = "sr_seed"
INT8_SUFFIX = "_int8"
ABSMAX_SUFFIX = "_absmax"

_SIGNED_CODES = 127  # magnitudes 0..127; the code's top bit is the sign
_UNSIGNED_CODES = 255  # codes 0..255
_SIGN_BIT = 128
UNSIGNED_ZERO_LEVEL = 2.0**-37
"""What an unsigned code 0 reads as, relative to the block's absmax: a quarter of the lowest
level ``2^-35``, the middle of the values that round to code 0 (see :func:`quantize_blocks`)."""
_MANTISSA_SHIFT = 20  # float32 bits below the 3 mantissa bits a level keeps
_ONE_BITS = 0x3F800000  # float32 1.0


def check_state_precision(value: Any) -> str:
    """``value`` if it names a state precision; ValueError naming the allowed ones otherwise."""
    if not isinstance(value, str) or value not in STATE_PRECISIONS:
        raise ValueError(
            f"state_precision must be one of {', '.join(map(repr, STATE_PRECISIONS))}; "
            f"got {value!r}"
        )
    return value


def lowest_level(signed: bool) -> float:
    """The smallest nonzero level of a map, relative to the block's absmax: ``2^-19``
    (about 1.9e-6) signed, ``2^-35`` (about 2.9e-11) unsigned (see :func:`quantize_blocks`)."""
    k = _level_bits_offset(signed)
    return _float_of_bits((k + 1) << _MANTISSA_SHIFT) - lowest_offset(signed)


# -- stochastic rounding to bfloat16 ------------------------------------------------------


def _mix(x: Tensor) -> Tensor:
    """A 32-bit integer hash (xor-shift-multiply, ``0x45d9f3b``) in int32 arithmetic.

    Wrapping multiplication; the logical right shift is an arithmetic shift and a mask."""
    x = x ^ ((x >> 16) & 0xFFFF)
    x = x * 0x45D9F3B
    x = x ^ ((x >> 16) & 0xFFFF)
    x = x * 0x45D9F3B
    return x ^ ((x >> 16) & 0xFFFF)


def noise_key(step: Tensor, seed: Tensor) -> Tensor:
    """The 0-dim int32 key of one step's random bits (``step``, ``seed``: 0-dim tensors): a
    different shift of the hashed sequence at every step and for every seed."""
    return step.to(torch.int32) * 0x2C1B3C6D + seed.to(torch.int32) * 0x297A2D39


def random_bits(index: Tensor, key: Tensor) -> Tensor:
    """32 random bits per element (int32): a hash of ``index + key``. Each stored moment
    takes 16 of them (:func:`uniform`)."""
    return _mix(index + key)


def uniform(bits: Tensor, half: int) -> Tensor:
    """A uniform float32 in ``(0, 1)`` from 16 of ``bits`` (``half`` 0: the low, 1: the high
    ones): ``(k + 1/2) / 2^16``."""
    k = (bits >> 16) & 0xFFFF if half else bits & 0xFFFF
    return k.to(torch.float32) * 2.0**-16 + 2.0**-17


def _to_bf16_nearest(x: Tensor) -> Tensor:
    """``x`` (float32) rounded to the nearest of 8 significant bits (bfloat16's precision),
    kept in float32: Veltkamp's splitting ``c = (2^16 + 1) x; c - (c - x)``. Written as float
    arithmetic because inductor drops the rounding of ``x.to(bfloat16).float()`` inside a
    kernel. Exact for ``|x| < 2^111`` (beyond, ``c`` overflows)."""
    c = x * 65537.0
    return c - (c - x)


def stochastic_round_bf16(x: Tensor, u: Tensor) -> Tensor:
    """``x`` (float32) rounded to bfloat16, up or down at random, unbiased.

    Math: with ``b`` the nearest bfloat16 value to ``x`` and ``o`` its neighbour on the other
    side of ``x``, the result is ``o`` with probability ``p = (x - b) / (o - b)`` (at most
    1/2) and ``b`` otherwise, so ``E[round(x)] = x``; ``u`` (uniform in (0, 1), one per
    element: :func:`uniform`) decides, ``o`` when ``u |o - b| < |x - b|``. With 16 random bits
    ``p`` is met to within ``2^-17``. Everything is float arithmetic, which inductor vectorizes
    (its bit casts are scalar code): ``b`` is the nearest rounding (:func:`_to_bf16_nearest`),
    and ``o`` the nearest rounding of ``b (1 +- 5 2^-10)``, which for every normal ``b`` (8
    significant bits) lands 0.625 to 1.25 spacings away, so it rounds to the neighbour
    exactly (the product is exact in float32). Values in bfloat16's subnormal range (below
    1.2e-38) round to nearest; NaN and infinities stay.
    """
    nearest = _to_bf16_nearest(x)
    residual = x - nearest
    away = residual * nearest > 0  # |x| > |nearest|: the neighbour is further from zero
    factor = torch.where(away, 1.0 + 5.0 * 2.0**-10, 1.0 - 5.0 * 2.0**-10)
    neighbour = _to_bf16_nearest(nearest * factor)
    up = (u * (neighbour - nearest)).abs() < residual.abs()
    return torch.where(up, neighbour, nearest).to(torch.bfloat16)


# -- 8-bit block quantization ----------------------------------------------------------------


def _level_bits_offset(signed: bool) -> int:
    """``k`` of the map (see :func:`quantize_blocks`): the top code ``C`` sits at the float32
    bits of 1.0, ``(C + k) << MANTISSA_SHIFT == 0x3F800000``."""
    return (_ONE_BITS >> _MANTISSA_SHIFT) - (_SIGNED_CODES if signed else _UNSIGNED_CODES)


def _float_of_bits(bits: int) -> float:
    return float(torch.tensor([bits], dtype=torch.int32).view(torch.float32).item())


def lowest_offset(signed: bool) -> float:
    """``L0`` of the map: the float32 ``(k << 20)`` by bits (``1.125 * 2^-16`` signed,
    ``1.125 * 2^-32`` unsigned), subtracted from every level so that code 0 is zero."""
    return _float_of_bits(_level_bits_offset(signed) << _MANTISSA_SHIFT)


def quantize_blocks(x: Tensor, signed: bool) -> tuple[Tensor, Tensor]:
    """Block codes of ``x`` (float32, shape ``(blocks, INT8_BLOCK)``): ``(codes, absmax)``.

    Math: ``absmax_b = max_i |x_bi|``; ``a = |x_bi| / absmax_b`` (clamped to 1) is stored
    as the code of the nearest level of a float format with 3 mantissa bits: the levels are

        level(c) = F((c + k) << 20) - L0,     c = 0 .. C,

    ``F(n)`` the float32 with bits ``n``, ``k`` such that ``level(C)`` is ``1 - L0`` (the
    bits of 1.0), ``L0 = F(k << 20)``. Above ``L0`` the levels step by 1/8 of a power of
    two (relative step 6.25%-12.5%, at most half of it as error); ``level(0) = 0`` and,
    below ``L0``, the steps are ``L0 / 8`` apart, like subnormals. The nearest level of
    ``a`` is the level of ``a + L0`` rounded to 3 mantissa bits, a bit operation:
    ``c = ((bits(a + L0) + 2^19) >> 20) - k`` (ties upward). Signed maps (``C = 127``:
    e4m3 levels, ``L0 = 1.125 * 2^-16``, smallest nonzero level ``2^-19`` of absmax) keep the
    sign in the code's top bit; unsigned maps (``C = 255``: e5m3 levels, ``L0 = 1.125 *
    2^-32``, smallest nonzero level ``2^-35``) clamp negative values to 0; they read code 0
    (every value below ``2^-36``) as the middle of those values, ``2^-37``
    (:data:`UNSIGNED_ZERO_LEVEL`), not as zero: a second moment too small for the map stays
    in Adam's denominator, instead of leaving the first moment divided by ``eps`` alone (read
    as zero, an element whose gradients are ``2^-19`` of its block's largest stepped 25x too
    far). The signed map reaches about the square root of the unsigned one, as a first
    moment relates to a second. Codes are uint8; ``absmax`` is float32, ``(blocks, 1)``.
    """
    absmax = x.abs().amax(dim=1, keepdim=True)
    inverse = torch.where(absmax > 0, 1.0 / absmax, torch.zeros_like(absmax))
    magnitude = x.abs() if signed else x.clamp(min=0.0)
    k = _level_bits_offset(signed)
    shifted = (magnitude * inverse).clamp(max=1.0) + lowest_offset(signed)
    c = ((shifted.view(torch.int32) + (1 << (_MANTISSA_SHIFT - 1))) >> _MANTISSA_SHIFT) - k
    if signed:
        c = torch.where(x < 0, c + _SIGN_BIT, c)
    return c.to(torch.uint8), absmax


def dequantize_blocks(codes: Tensor, absmax: Tensor, signed: bool) -> Tensor:
    """float32 values of block ``codes`` (uint8, ``(blocks, INT8_BLOCK)``) with ``absmax``
    (``(blocks, 1)``): ``level(c) absmax``, negative where a signed code's top bit is set
    (see :func:`quantize_blocks`). int8 ``codes`` are a checkpoint of the earlier
    quarter-root map (:func:`dequantize_blocks_quarter_root`)."""
    if codes.dtype == torch.int8:
        return dequantize_blocks_quarter_root(codes, absmax, signed)
    c = codes.to(torch.int32)
    magnitude = c & (_SIGN_BIT - 1) if signed else c
    k = _level_bits_offset(signed)
    level = ((magnitude + k) << _MANTISSA_SHIFT).view(torch.float32) - lowest_offset(signed)
    if not signed:
        level = level.clamp(min=UNSIGNED_ZERO_LEVEL)  # code 0 (every other level is above)
    value = level * absmax
    return torch.where(c >= _SIGN_BIT, -value, value) if signed else value


def dequantize_blocks_quarter_root(codes: Tensor, absmax: Tensor, signed: bool) -> Tensor:
    """float32 values of int8 codes of the map dltricks used before the float levels (kept
    to read its checkpoints): ``sign(c) (|c| / 127)^4 absmax`` signed, ``(u / 255)^4
    absmax`` unsigned with ``u`` the byte's unsigned value."""
    c = codes.to(torch.float32)
    if signed:
        s = c * (1.0 / _SIGNED_CODES)
        square = s * s
        level = s.abs() * s * square
    else:
        s = torch.where(c < 0, c + 256, c) * (1.0 / _UNSIGNED_CODES)
        square = s * s
        level = square * square
    return level * absmax


def is_quarter_root(entry: Mapping[str, Any]) -> bool:
    """Whether a parameter's int8 state holds codes of the earlier quarter-root map (int8
    tensors, where the float-level map stores uint8)."""
    return any(
        str(key).endswith(INT8_SUFFIX) and isinstance(value, Tensor) and value.dtype == torch.int8
        for key, value in entry.items()
    )


def blocks_of(numel: int) -> int:
    """How many blocks cover ``numel`` elements (the last one padded)."""
    return -(-numel // INT8_BLOCK)


def quantize_tensor(x: Tensor, signed: bool) -> tuple[Tensor, Tensor]:
    """Codes (int8, shaped like ``x``) and absmax (float32, ``(blocks_of(x.numel()),)``) of a
    tensor of any shape: flattened, zero-padded to whole blocks, :func:`quantize_blocks`."""
    n = x.numel()
    flat = x.detach().reshape(-1).float()
    padded = torch.nn.functional.pad(flat, (0, blocks_of(n) * INT8_BLOCK - n))
    codes, absmax = quantize_blocks(padded.view(-1, INT8_BLOCK), signed)
    return codes.reshape(-1)[:n].reshape(x.shape), absmax.reshape(-1)


def dequantize_tensor(codes: Tensor, absmax: Tensor, signed: bool) -> Tensor:
    """float32 values of :func:`quantize_tensor`'s ``codes`` and ``absmax``."""
    n = codes.numel()
    flat = torch.nn.functional.pad(codes.reshape(-1), (0, absmax.numel() * INT8_BLOCK - n))
    values = dequantize_blocks(flat.view(-1, INT8_BLOCK), absmax.reshape(-1, 1), signed)
    return values.reshape(-1)[:n].reshape(codes.shape)


# -- a state's stored form -------------------------------------------------------------------


def form_of(entry: Mapping[str, Any]) -> str:
    """The precision a parameter's state is stored in: ``"int8"`` if it holds ``*_int8``
    codes, ``"bf16"`` if it holds ``sr_seed``, else ``"fp32"``."""
    if any(str(key).endswith(INT8_SUFFIX) for key in entry):
        return "int8"
    return "bf16" if SEED_KEY in entry else "fp32"


@dataclass(frozen=True)
class StateCodec:
    """How one optimizer stores the moment tensors of a parameter's state.

    Attributes:
        precision: ``"bf16"`` or ``"int8"``.
        unsigned: the names of moments that are never negative (the unsigned int8 map).
    """

    precision: str
    unsigned: frozenset[str]

    @property
    def align(self) -> int:
        """Where a parameter's slice of a flat buffer may start (whole int8 blocks)."""
        return INT8_BLOCK if self.precision == "int8" else 16

    def stored_names(self, key: str) -> tuple[str, ...]:
        """The state entries that hold moment ``key``."""
        if self.precision == "int8":
            return (key + INT8_SUFFIX, key + ABSMAX_SUFFIX)
        return (key,)

    @property
    def scalar_names(self) -> tuple[str, ...]:
        """Extra 0-dim state entries (the rounding seed of bf16)."""
        return (SEED_KEY,) if self.precision == "bf16" else ()

    # -- one tensor at a time (the eager path, conversions) ----------------------------

    def encode(
        self, key: str, value: Tensor, step: Tensor, seed: Tensor | None, salt: int
    ) -> State:
        """The stored entries of moment ``key`` holding ``value`` (any shape); bf16 rounds
        stochastically with the bits of (``step``, ``seed``, ``salt``)."""
        if self.precision == "int8" or seed is None:
            return self.encode_nearest(key, value)
        if not is_distributed_tensor(value):
            return {key: self._stochastic(value, 0, value.numel(), step, seed, salt)}
        local = value.to_local()  # type: ignore[attr-defined]
        rounded = self._stochastic(local, _shard_base(value), value.numel(), step, seed, salt)
        return {key: _like_shard(value, rounded)}

    @staticmethod
    def _stochastic(
        value: Tensor, base: int, total: int, step: Tensor, seed: Tensor, salt: int
    ) -> Tensor:
        """``value`` rounded stochastically to bfloat16, with the random bits of the elements
        ``base + i`` of a tensor of ``total`` elements (``base``: where a shard starts)."""
        flat = value.detach().reshape(-1).float()
        index = torch.arange(flat.numel(), dtype=torch.int32, device=flat.device)
        # Moments beyond the first two use the index shifted past the tensor; the hash wraps
        # in int32, and so does the shift.
        shift = _wrapped_int32(base + (salt // 2) * total)
        bits = random_bits(index + shift, noise_key(step, seed))
        rounded = stochastic_round_bf16(flat, uniform(bits, salt % 2))
        return rounded.reshape(value.shape)

    def encode_nearest(self, key: str, value: Tensor) -> State:
        """The stored entries of moment ``key`` holding ``value``, rounded to nearest (a
        fresh state, a converted checkpoint)."""
        if self.precision == "int8":
            codes, absmax = quantize_tensor(value, key not in self.unsigned)
            return {key + INT8_SUFFIX: codes, key + ABSMAX_SUFFIX: absmax}
        return {key: value.detach().to(torch.bfloat16)}

    def encode_changed(
        self,
        changed: Mapping[str, Tensor],
        keys: tuple[str, ...],
        step: Tensor,
        seed: Tensor | None,
    ) -> State:
        """``changed`` with its moments (``keys``, in the kernel's order) encoded."""
        out: State = {}
        for key, value in changed.items():
            if key in keys:
                out.update(self.encode(key, value, step, seed, keys.index(key)))
            else:
                out[key] = value
        return out

    def decode(self, key: str, entry: Mapping[str, Any]) -> Tensor:
        """float32 values of moment ``key`` from its stored entries."""
        if self.precision == "int8":
            return dequantize_tensor(
                entry[key + INT8_SUFFIX], entry[key + ABSMAX_SUFFIX], key not in self.unsigned
            )
        return entry[key].float()  # type: ignore[no-any-return]

    # -- inside the fused kernel (flat buffers) ------------------------------------------

    def kernel_shape(self, param: Tensor, stored: tuple[Tensor, ...]) -> tuple[int, ...]:
        """The shape the kernel computes in: blocks by rows for int8, flat for bf16."""
        if self.precision == "int8":
            return (stored[1].shape[0], INT8_BLOCK)
        return (param.shape[0],)

    def kernel_decode(self, key: str, stored: tuple[Tensor, ...], shape: Any) -> Tensor:
        """float32 values of moment ``key`` from its flat buffers."""
        if self.precision == "int8":
            codes, absmax = stored
            return dequantize_blocks(
                codes.view(shape), absmax.view(-1, 1), key not in self.unsigned
            )
        return stored[0].float()

    def kernel_store(
        self,
        key: str,
        value: Tensor,
        stored: tuple[Tensor, ...],
        shape: Any,
        bits: Tensor | None,
        salt: int,
    ) -> None:
        """Encode ``value`` (in ``shape``) into moment ``key``'s flat buffers, in place
        (bf16: ``bits`` from :meth:`kernel_bits`, ``salt`` the moment's position)."""
        if self.precision == "int8":
            codes, absmax = quantize_blocks(value.float(), key not in self.unsigned)
            stored[0].view(shape).copy_(codes)
            stored[1].copy_(absmax.view(-1))
            return
        assert bits is not None
        stored[0].copy_(stochastic_round_bf16(value.float(), uniform(bits, salt % 2)))

    def kernel_bits(self, shape: Any, step: Tensor, seed: Tensor, pair: int) -> Tensor:
        """The random bits of moments ``2 pair`` and ``2 pair + 1`` over a flat buffer."""
        index = torch.arange(shape[0], dtype=torch.int32) + pair * shape[0]
        return random_bits(index, noise_key(step, seed))


def _wrapped_int32(value: int) -> int:
    """``value`` modulo 2^32 as a signed 32-bit integer."""
    return (value + (1 << 31)) % (1 << 32) - (1 << 31)


def _shard_base(value: Tensor) -> int:
    """Where the random stream of DTensor ``value``'s local shard starts (FSDP2, tensor
    parallel): ``k * value.numel()`` for the ``k``-th shard, counting only mesh dimensions the
    tensor is sharded over, so replicas (a replicated mesh dimension, HSDP) round alike."""
    mesh = value.device_mesh  # type: ignore[attr-defined]
    coordinate = mesh.get_coordinate() or [0] * mesh.ndim
    shard = 0
    for size, index, placement in zip(mesh.shape, coordinate, value.placements, strict=True):  # type: ignore[attr-defined]
        if placement.is_shard():
            shard = shard * size + index
    return shard * value.numel()


def _like_shard(value: Tensor, local: Tensor) -> Tensor:
    """``local`` as the local shard of a DTensor laid out as ``value``."""
    return type(value).from_local(  # type: ignore[attr-defined, no-any-return]
        local,
        value.device_mesh,  # type: ignore[attr-defined]
        value.placements,  # type: ignore[attr-defined]
        run_check=False,
        shape=value.shape,
        stride=value.stride(),
    )


def decoded(entry: Mapping[str, Any], unsigned: frozenset[str] | tuple[str, ...] = ()) -> State:
    """A parameter's state in float32 whatever form it is stored in (a new dict).

    int8 moments are dequantized (``unsigned``: the names of moments on the unsigned map; by
    default those :data:`~dltricks.optim.adapter.NON_NEGATIVE_STATE` names); bf16 moments
    are widened (exact) and ``sr_seed`` dropped; other entries are returned as they are.
    """
    form = form_of(entry)
    if form == "fp32":
        return dict(entry)
    if not unsigned:
        from dltricks.optim.adapter import NON_NEGATIVE_STATE

        unsigned = NON_NEGATIVE_STATE
    out: State = {}
    for key, value in entry.items():
        if key == SEED_KEY or str(key).endswith(ABSMAX_SUFFIX):
            continue
        if form == "int8" and str(key).endswith(INT8_SUFFIX):
            name = key[: -len(INT8_SUFFIX)]
            absmax = entry.get(name + ABSMAX_SUFFIX)
            if not isinstance(absmax, Tensor):
                raise ValueError(f"state {key!r} has no {name + ABSMAX_SUFFIX!r} beside it")
            out[name] = dequantize_tensor(value, absmax, name not in unsigned)
        elif form == "bf16" and isinstance(value, Tensor) and value.dtype == torch.bfloat16:
            out[key] = value.float()
        else:
            out[key] = value
    return out
