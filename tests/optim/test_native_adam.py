"""The C kernels of bf16- and int8-state Adam/AdamW (dltricks.optim.fast.native).

References are computed here in float64 from torch's Adam/AdamW formula, on the moments as
stored (bfloat16, decoded exactly; int8 codes, decoded by the map's definition) before each step;
bf16 rounding is checked against the two bfloat16 neighbours and the probability of rounding
up computed from the float32 bits, int8 codes against the nearest level of the map.
"""

from __future__ import annotations

import copy
import math
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import dltricks.optim as ours
from dltricks.optim.fast import native
from dltricks.optim.fast.kernel import FusedUpdate, Layout
from tests.optim import int8_map

HAVE_COMPILER = shutil.which("cc") is not None or shutil.which("gcc") is not None
needs_compiler = pytest.mark.skipif(not HAVE_COMPILER, reason="no C compiler on PATH")


@pytest.fixture(autouse=True)
def fresh_kernel(tmp_path_factory: pytest.TempPathFactory, monkeypatch: Any) -> Iterator[None]:
    """Each test looks for the kernel again, in a cache of this test session."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.delenv(native.SWITCH, raising=False)
    native.forget()
    yield
    native.forget()


def _update_of(opt: torch.optim.Optimizer) -> Any:
    flat = opt._flat  # type: ignore[attr-defined]
    (bucket,) = [b for plan in flat.plans if plan is not None for b in plan.buckets]
    return bucket.fused


def _bf16_ulp(x: torch.Tensor) -> torch.Tensor:
    """The spacing of bfloat16 values at |x| (float64; x normal, nonzero)."""
    return torch.exp2(torch.floor(torch.log2(x.abs())) - 7)


def _reference_step(
    p: torch.Tensor,
    g: torch.Tensor,
    m: torch.Tensor,
    v: torch.Tensor,
    *,
    t: int,
    lr: float,
    wd: float,
    maximize: bool,
    decoupled: bool,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """torch's Adam/AdamW step in float64: (param, exp_avg, exp_avg_sq, |update term|)."""
    b1, b2 = betas
    g = -g if maximize else g
    if decoupled:
        p = p * (1 - lr * wd)
    else:
        g = g + wd * p
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    term = lr / (1 - b1**t) * m / (v.sqrt() / math.sqrt(1 - b2**t) + eps)
    return p - term, m, v, term.abs()


def _check_steps(opt_class: Any, maximize: bool, wd: float, numel: int, steps: int) -> None:
    torch.manual_seed(0)
    param = torch.nn.Parameter(torch.randn(numel))
    opt = opt_class(
        [param], lr=1e-2, weight_decay=wd, maximize=maximize, state_precision="bf16", fast=True
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0 / (1 + k))
    decoupled = opt_class is ours.AdamW
    for t in range(1, steps + 1):
        state = opt.state[param]
        m0 = state["exp_avg"].double() if state else torch.zeros(numel, dtype=torch.float64)
        v0 = state["exp_avg_sq"].double() if state else torch.zeros(numel, dtype=torch.float64)
        p0 = param.detach().double().clone()
        lr = opt.param_groups[0]["lr"]
        param.grad = torch.randn(numel)
        want_p, want_m, want_v, term = _reference_step(
            p0, param.grad.double(), m0, v0, t=t, lr=lr, wd=wd, maximize=maximize,
            decoupled=decoupled,
        )  # fmt: skip
        opt.step()
        schedule.step()
        assert isinstance(_update_of(opt), native.NativeAdamUpdate)
        state = opt.state[param]
        assert state["exp_avg"].dtype == torch.bfloat16
        assert int(state["step"]) == t
        # float32 arithmetic: a few roundings of the parameter and of the update term.
        tolerance = 2.0**-21 * (p0.abs() + term)
        assert ((param.detach().double() - want_p).abs() <= tolerance).all()
        for key, want in (("exp_avg", want_m), ("exp_avg_sq", want_v)):
            error = (state[key].double() - want).abs()
            assert (error <= _bf16_ulp(want) * (1 + 2.0**-8)).all(), key


@needs_compiler
@pytest.mark.parametrize("opt_class", [ours.Adam, ours.AdamW], ids=["Adam", "AdamW"])
@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_steps_match_float64_reference(opt_class: Any, maximize: bool, wd: float) -> None:
    _check_steps(opt_class, maximize, wd, numel=5000, steps=3)


@needs_compiler
@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_threads_split_the_buffer_without_changing_the_result(precision: str) -> None:
    """Above 2^18 elements per thread the step runs in parts: bf16's random bits follow the
    element and int8's blocks are independent, so the result is the one-thread result, bit
    for bit."""
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 3):
            torch.set_num_threads(count)
            torch.manual_seed(1)
            param = torch.nn.Parameter(torch.randn(3 << 18 | 5))
            opt = ours.AdamW([param], lr=1e-3, state_precision=precision, fast=True)
            for _ in range(2):
                param.grad = torch.randn(param.shape)
                opt.step()
            assert isinstance(_update_of(opt), native.NativeAdamUpdate)
            results.append((param.detach().clone(), dict(opt.state[param])))
    finally:
        torch.set_num_threads(threads)
    (p1, s1), (p3, s3) = results
    assert torch.equal(p1, p3)
    assert set(s1) == set(s3)
    for key in s1:
        # The stored bytes (bf16 compared as bits).
        first, third = (s[key].reshape(-1).view(torch.uint8) for s in (s1, s3))
        assert torch.equal(first, third), key


@needs_compiler
def test_stochastic_rounding_is_unbiased() -> None:
    """With beta1 = beta2 = 0 the new moments are g and g^2 (float32): every element holds
    the same value, rounded with its own random bits. The stored values are its two bfloat16
    neighbours, and their mean is the value within a bound computed from the binomial."""
    numel = 1 << 16
    x = torch.tensor(1.0 + 0.3 * 2.0**-7, dtype=torch.float32)
    param = torch.nn.Parameter(torch.zeros(numel))
    opt = ours.AdamW([param], lr=1e-6, betas=(0.0, 0.0), state_precision="bf16", fast=True)
    for _ in range(2):  # the second step draws other bits
        param.grad = torch.full((numel,), float(x))
        opt.step()
        for key, value in (("exp_avg", x), ("exp_avg_sq", x * x)):
            exact = float(value)
            bits = int(value.view(torch.int32)) & 0xFFFFFFFF
            low = torch.tensor(bits & 0xFFFF0000, dtype=torch.int64).to(torch.int32)
            below = float(low.view(torch.float32))
            ulp = 2.0 ** (math.floor(math.log2(exact)) - 7)
            up = (exact - below) / ulp  # the probability of rounding up
            stored = opt.state[param][key].double()
            assert set(stored.unique().tolist()) <= {below, below + ulp}
            sigma = ulp * math.sqrt(up * (1 - up) / numel)
            assert abs(float(stored.mean()) - exact) <= 6 * sigma + ulp * 2.0**-16, key


@needs_compiler
def test_state_dict_round_trip() -> None:
    torch.manual_seed(2)
    grads = [torch.randn(5000) for _ in range(4)]
    param = torch.nn.Parameter(torch.randn(5000))
    opt = ours.AdamW([param], lr=1e-2, state_precision="bf16", fast=True)
    for g in grads[:2]:
        param.grad = g.clone()
        opt.step()
    saved = copy.deepcopy(opt.state_dict())  # state_dict holds the live tensors
    other = torch.nn.Parameter(param.detach().clone())
    resumed = ours.AdamW([other], lr=1e-2, state_precision="bf16", fast=True)
    resumed.load_state_dict(saved)
    for g in grads[2:]:
        param.grad, other.grad = g.clone(), g.clone()
        opt.step()
        resumed.step()
    assert isinstance(_update_of(resumed), native.NativeAdamUpdate)
    assert torch.equal(param.detach(), other.detach())
    for key in ("exp_avg", "exp_avg_sq", "sr_seed", "step"):
        assert torch.equal(opt.state[param][key], resumed.state[other][key]), key


def test_no_compiler_gives_none_with_one_warning(monkeypatch: Any) -> None:
    monkeypatch.setattr(native.shutil, "which", lambda name: None)
    with pytest.warns(RuntimeWarning, match="no C compiler"):
        assert native.adam_kernel("bf16") is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert native.adam_kernel("bf16") is None  # told once


@needs_compiler
def test_compile_error_gives_none_with_a_warning(monkeypatch: Any, tmp_path: Path) -> None:
    broken = tmp_path / "broken.c"
    broken.write_text("this is not C\n")
    monkeypatch.setattr(native, "SOURCE", broken)
    with pytest.warns(RuntimeWarning, match="failed"):
        assert native.adam_kernel("bf16") is None


def test_switch_off_is_silent(monkeypatch: Any) -> None:
    monkeypatch.setenv(native.SWITCH, "0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert native.adam_kernel("bf16") is None


def test_amsgrad_and_other_dtypes_keep_the_compiled_kernel() -> None:
    param = torch.nn.Parameter(torch.randn(100))
    group = {"amsgrad": True, "maximize": False, "decoupled_weight_decay": True}
    opt = ours.AdamW([param], amsgrad=True, state_precision="bf16")
    codec = opt.codec_for(param)
    assert codec is not None
    compiled = object.__new__(FusedUpdate)
    compiled.layout = Layout(("exp_avg", "exp_avg_sq"), ("sr_seed",), ("lr",))
    cpu = torch.device("cpu")
    assert native.native_update_for(opt, group, codec, torch.float32, cpu, compiled) is compiled
    group["amsgrad"] = False
    for dtype in (torch.float64, torch.bfloat16):
        assert native.native_update_for(opt, group, codec, dtype, cpu, compiled) is compiled


@pytest.mark.slow
def test_fallback_runs_the_compiled_kernel(monkeypatch: Any) -> None:
    """Without a compiler the bucket runs today's compiled kernel, which keeps the same
    contract (float64 reference, one warning)."""
    monkeypatch.setattr(native.shutil, "which", lambda name: None)
    torch.manual_seed(0)
    param = torch.nn.Parameter(torch.randn(5000))
    opt = ours.AdamW([param], lr=1e-2, state_precision="bf16", fast=True)
    param.grad = torch.randn(5000)
    p0, g0 = param.detach().double().clone(), param.grad.double()
    with pytest.warns(RuntimeWarning, match="native low-precision Adam kernels are unavailable"):
        opt.step()
    assert isinstance(_update_of(opt), FusedUpdate)
    zeros = torch.zeros(5000, dtype=torch.float64)
    want_p, want_m, _, term = _reference_step(
        p0, g0, zeros, zeros, t=1, lr=1e-2, wd=1e-2, maximize=False, decoupled=True
    )
    assert ((param.detach().double() - want_p).abs() <= 2.0**-21 * (p0.abs() + term)).all()
    error = (opt.state[param]["exp_avg"].double() - want_m).abs()
    assert (error <= _bf16_ulp(want_m) * (1 + 2.0**-8)).all()


@needs_compiler
def test_part_of_a_bucket_and_freed_gradients() -> None:
    """A parameter without a gradient is left alone (the kernel runs over the others' slice),
    and gradients freed by ``zero_grad()`` and made again by backward are the ones read."""
    torch.manual_seed(3)
    first = torch.nn.Parameter(torch.randn(5000))
    second = torch.nn.Parameter(torch.randn(3000))
    opt = ours.Adam([first, second], lr=1e-2, weight_decay=0.1, state_precision="bf16", fast=True)
    ((first**2).sum() + (second**3).sum()).backward()
    opt.step()
    opt.zero_grad()  # set_to_none: the gradient buffer is freed
    (second**3).sum().backward()  # only the second gets a gradient
    before = first.detach().clone()
    state = opt.state[second]
    m0, v0 = state["exp_avg"].double(), state["exp_avg_sq"].double()
    assert second.grad is not None
    p0, g0 = second.detach().double().clone(), second.grad.double()
    opt.step()
    assert isinstance(_update_of(opt), native.NativeAdamUpdate)
    assert torch.equal(first.detach(), before)
    assert int(opt.state[first]["step"]) == 1
    assert int(opt.state[second]["step"]) == 2
    want_p, want_m, want_v, term = _reference_step(
        p0, g0, m0, v0, t=2, lr=1e-2, wd=0.1, maximize=False, decoupled=False
    )
    assert ((second.detach().double() - want_p).abs() <= 2.0**-21 * (p0.abs() + term)).all()
    for key, want in (("exp_avg", want_m), ("exp_avg_sq", want_v)):
        error = (opt.state[second][key].double() - want).abs()
        assert (error <= _bf16_ulp(want) * (1 + 2.0**-8)).all(), key


# -- int8 state ------------------------------------------------------------------------------


def _assert_nearest_codes(
    codes: torch.Tensor, absmax: torch.Tensor, want: torch.Tensor, signed: bool
) -> None:
    """``codes``/``absmax`` (one block per 256 elements) encode ``want`` (float64) as the
    map's definition says (``tests/optim/int8_map.py``): ``absmax`` is the block's
    ``max |want|`` and each code the level nearest to ``|want| / absmax``, with the sign,
    up to float32 rounding of the moment (a code may be the other level of a midpoint only
    when the value is within float32 slack of it)."""
    n = want.numel()
    blocks = absmax.numel()
    padded = torch.zeros(blocks * 256, dtype=torch.float64)
    padded[:n] = want
    block_max = padded.view(blocks, 256).abs().amax(dim=1)
    torch.testing.assert_close(absmax.double(), block_max, rtol=1e-6, atol=0)
    scale = block_max.repeat_interleave(256)[:n]
    a = torch.where(scale > 0, want.abs() / scale, torch.zeros_like(want)).clamp(max=1)
    magnitude, sign = int8_map.magnitude_and_sign(codes, signed)
    if signed:
        assert bool((sign[(want < 0) & (magnitude > 0)] < 0).all())
        assert bool((sign[(want > 0) & (magnitude > 0)] > 0).all())
    levels = int8_map.levels(signed)
    ours_error = (levels[magnitude] - a).abs()
    best_error = (levels[int8_map.nearest(a, signed)] - a).abs()
    # float32 moments: a few 2^-24 of the terms they are summed from, widely.
    assert bool((ours_error <= best_error + 1e-5 * a + 1e-6).all())


def _decoded(codes: torch.Tensor, absmax: torch.Tensor, signed: bool) -> torch.Tensor:
    """float64 values of uint8 codes, by the map's definition (independent of the library)."""
    return int8_map.decode(codes, absmax, signed)


def _use_loop(loop: str, monkeypatch: Any) -> None:
    """Build the kernel with the AVX2 int8 loop (the default where the CPU has AVX2) or
    the plain C loop (``-mno-avx2``), and check which one loaded."""
    if loop == "plain":
        monkeypatch.setattr(native, "FLAGS", (*native.FLAGS, "-mno-avx2"))
        native.forget()
    lanes = native.int8_lanes()
    if loop == "avx2" and lanes != 8:
        pytest.skip("this CPU or compiler has no AVX2 and FMA: the plain loop is the kernel")
    assert lanes == (8 if loop == "avx2" else 0)


@needs_compiler
@pytest.mark.parametrize("loop", ["avx2", "plain"])
@pytest.mark.parametrize("opt_class", [ours.Adam, ours.AdamW], ids=["Adam", "AdamW"])
@pytest.mark.parametrize(("maximize", "wd"), [(False, 0.0), (True, 0.1), (False, 0.1)])
def test_int8_steps_match_float64_reference(
    opt_class: Any, maximize: bool, wd: float, loop: str, monkeypatch: Any
) -> None:
    """Each step from the stored state: the parameter as torch's formula in float64 on the
    decoded moments, and the new codes the nearest of the map to the float64 moments; for
    both loops of the int8 kernel."""
    _use_loop(loop, monkeypatch)
    torch.manual_seed(4)
    numel = 5000  # not whole blocks: the last block padded
    param = torch.nn.Parameter(torch.randn(numel))
    opt = opt_class(
        [param], lr=1e-2, weight_decay=wd, maximize=maximize, state_precision="int8", fast=True
    )
    decoupled = opt_class is ours.AdamW
    for t in range(1, 4):
        state = opt.state[param]
        if state:
            m0 = _decoded(state["exp_avg_int8"], state["exp_avg_absmax"], True)
            v0 = _decoded(state["exp_avg_sq_int8"], state["exp_avg_sq_absmax"], False)
        else:
            m0 = v0 = torch.zeros(numel, dtype=torch.float64)
        p0 = param.detach().double().clone()
        param.grad = torch.randn(numel) * (1 + torch.arange(numel) % 7)  # spread magnitudes
        want_p, want_m, want_v, term = _reference_step(
            p0, param.grad.double(), m0, v0, t=t, lr=1e-2, wd=wd, maximize=maximize,
            decoupled=decoupled,
        )  # fmt: skip
        opt.step()
        assert isinstance(_update_of(opt), native.NativeAdamUpdate)
        state = opt.state[param]
        assert state["exp_avg_int8"].dtype == torch.uint8
        assert int(state["step"]) == t
        # float32 arithmetic: the decoding adds two roundings to each moment (the bf16
        # kernel's widening is exact); four times the bf16 test's bound, widely.
        tolerance = 2.0**-19 * (p0.abs() + term)
        assert ((param.detach().double() - want_p).abs() <= tolerance).all()
        _assert_nearest_codes(state["exp_avg_int8"], state["exp_avg_absmax"], want_m, True)
        _assert_nearest_codes(state["exp_avg_sq_int8"], state["exp_avg_sq_absmax"], want_v, False)


@needs_compiler
def test_int8_checkpoint_moves_between_the_native_and_the_compiled_kernel(
    monkeypatch: Any,
) -> None:
    """The C kernel keeps the compiled kernel's state layout: a run saved under one resumes
    under the other, and both follow the float64 reference from the loaded state."""
    torch.manual_seed(6)
    param = torch.nn.Parameter(torch.randn(5000))
    opt = ours.AdamW([param], lr=1e-2, state_precision="int8", fast=True)
    for _ in range(2):
        param.grad = torch.randn(5000)
        opt.step()
    assert isinstance(_update_of(opt), native.NativeAdamUpdate)
    saved = copy.deepcopy(opt.state_dict())
    monkeypatch.setenv(native.SWITCH, "0")
    other = torch.nn.Parameter(param.detach().clone())
    resumed = ours.AdamW([other], lr=1e-2, state_precision="int8", fast=True)
    resumed.load_state_dict(saved)
    state = resumed.state[other]
    m0 = _decoded(state["exp_avg_int8"], state["exp_avg_absmax"], True)
    v0 = _decoded(state["exp_avg_sq_int8"], state["exp_avg_sq_absmax"], False)
    p0 = other.detach().double().clone()
    other.grad = torch.randn(5000)
    resumed.step()
    assert isinstance(_update_of(resumed), FusedUpdate)
    want_p, want_m, _, term = _reference_step(
        p0, other.grad.double(), m0, v0, t=3, lr=1e-2, wd=1e-2, maximize=False, decoupled=True
    )
    assert ((other.detach().double() - want_p).abs() <= 2.0**-19 * (p0.abs() + term)).all()
    _assert_nearest_codes(state["exp_avg_int8"], state["exp_avg_absmax"], want_m, True)


@needs_compiler
@pytest.mark.parametrize("loop", ["avx2", "plain"])
def test_int8_codes_equal_the_compiled_kernel(loop: str, monkeypatch: Any) -> None:
    """From the same state and gradient, the C kernel and the compiled kernel (torch's
    quantize_blocks) store the same codes and scales: the encoding is the same operations
    in float32; the parameters agree to float32 rounding."""
    _use_loop(loop, monkeypatch)
    torch.manual_seed(8)
    param = torch.nn.Parameter(torch.randn(1 << 14))
    opt = ours.AdamW([param], lr=1e-2, state_precision="int8", fast=True)
    grads = [torch.randn(1 << 14) * torch.exp(torch.randn(1 << 14) * 3) for _ in range(3)]
    param.grad = grads[0]
    opt.step()
    saved = copy.deepcopy(opt.state_dict())
    results = []
    for switch in ("1", "0"):
        monkeypatch.setenv(native.SWITCH, switch)
        twin = torch.nn.Parameter(param.detach().clone())
        other = ours.AdamW([twin], lr=1e-2, state_precision="int8", fast=True)
        other.load_state_dict(copy.deepcopy(saved))
        for grad in grads[1:]:
            twin.grad = grad.clone()
            other.step()
        kind = native.NativeAdamUpdate if switch == "1" else FusedUpdate
        assert isinstance(_update_of(other), kind)
        results.append((twin.detach().clone(), other.state[twin]))
    (p_native, s_native), (p_compiled, s_compiled) = results
    for key in ("exp_avg_int8", "exp_avg_sq_int8"):
        assert torch.equal(s_native[key], s_compiled[key]), key
    for key in ("exp_avg_absmax", "exp_avg_sq_absmax"):
        torch.testing.assert_close(s_native[key], s_compiled[key], rtol=2e-7, atol=0.0)
    # A few float32 roundings of a step of about lr = 1e-2 (FMA contracted elsewhere).
    torch.testing.assert_close(p_native, p_compiled, rtol=1e-6, atol=1e-6)
