"""state_precision: bf16 (stochastic rounding) and int8 (block quantization) optimizer state.

References are computed here, in float64, from the definitions: the two bfloat16 neighbours
of a float32 and the probability of rounding up, the levels of the dynamic maps and the
nearest one, the bytes each state keeps.
"""

from __future__ import annotations

import copy
import math
import pickle
from collections.abc import Callable
from typing import Any

import pytest
import torch

import dltricks.optim as ours
from dltricks.optim import state_precision as sp
from tests.optim import int8_map

MOMENT_OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "Adam": ours.Adam,
    "AdamW": ours.AdamW,
    "Adagrad": ours.Adagrad,
    "RMSprop": lambda ps, **kw: ours.RMSprop(ps, momentum=0.9, centered=True, **kw),
    "Adamax": ours.Adamax,
    "NAdam": ours.NAdam,
    "Adadelta": ours.Adadelta,
    "Lion": ours.Lion,
    "AdaBelief": ours.AdaBelief,
}


# -- the codecs against float64 references ----------------------------------------------------


def _bf16_neighbours(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The bfloat16 values below and above |x| (float64, signed like x), from the bits."""
    bits = x.view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    low_bits = bits & ~0xFFFF
    high_bits = low_bits + 0x10000
    lo = (low_bits & 0xFFFFFFFF).to(torch.int32).view(torch.float32).double()
    hi = (high_bits & 0xFFFFFFFF).to(torch.int32).view(torch.float32).double()
    return lo, hi


def _sr(x: torch.Tensor, step: float, seed: float, half: int) -> torch.Tensor:
    index = torch.arange(x.numel(), dtype=torch.int32)
    bits = sp.random_bits(index, sp.noise_key(torch.tensor(step), torch.tensor(seed)))
    return sp.stochastic_round_bf16(x, sp.uniform(bits, half))


@pytest.mark.parametrize("half", [0, 1])
def test_stochastic_rounding_is_unbiased(half: int) -> None:
    gen = torch.Generator().manual_seed(0)
    values = torch.cat([torch.randn(24, generator=gen), torch.tensor([1.0, -3.0, 1e-20])])
    n = 20_000
    x = values.repeat_interleave(n)
    rounded = _sr(x, 7.0, 3.0, half)
    assert rounded.dtype == torch.bfloat16
    lo, hi = _bf16_neighbours(values)
    got = rounded.double().view(len(values), n)
    # Only the two neighbours occur.
    assert bool(((got == lo[:, None]) | (got == hi[:, None])).all())
    exact = values.double()
    p_up = torch.where(hi != lo, (exact - lo) / (hi - lo), torch.zeros_like(exact))
    assert bool(((p_up >= 0) & (p_up <= 1)).all())
    sigma = (p_up * (1 - p_up)).sqrt() * (hi - lo).abs() / math.sqrt(n)
    error = (got.mean(dim=1) - exact).abs()
    # 16 random bits meet the probability to within 2^-17 of the spacing.
    slack = 2.0**-17 * (hi - lo).abs() + 1e-12 * exact.abs()
    assert bool((error <= 5 * sigma + slack).all()), (error / sigma).max()
    # Values that bfloat16 holds exactly are kept.
    exact_bf16 = values.to(torch.bfloat16).float()
    again = _sr(exact_bf16, 1.0, 0.0, half)
    assert torch.equal(again.float(), exact_bf16)


def test_stochastic_rounding_keeps_small_updates_of_an_average() -> None:
    # v <- 0.999 v + 0.001 g^2 with g^2 = v: round-to-nearest never moves v in bfloat16 when the
    # increment is below half an ulp; stochastic rounding keeps the expected value.
    target = 1.0 + 2**-9  # between bfloat16 neighbours 1 and 1 + 2^-7
    x = torch.full((50_000,), target)
    rounded = _sr(x, 2.0, 11.0, 0)
    assert x.to(torch.bfloat16).double().mean().item() == 1.0
    assert abs(rounded.double().mean().item() - target) < 5 * 2**-7 * 0.5 / math.sqrt(x.numel())


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("numel", [256, 1000, 4097])
def test_block_quantization_against_a_float64_reference(signed: bool, numel: int) -> None:
    gen = torch.Generator().manual_seed(numel)
    # Magnitudes over many octaves, so every part of the map is used.
    x = torch.randn(numel, generator=gen) * torch.exp(torch.randn(numel, generator=gen) * 4)
    if not signed:
        x = x.abs()
    codes, absmax = sp.quantize_tensor(x, signed)
    assert codes.dtype == torch.uint8
    assert codes.shape == x.shape
    blocks = -(-numel // 256)
    assert absmax.shape == (blocks,)
    assert absmax.dtype == torch.float32
    back = sp.dequantize_tensor(codes, absmax, signed).double()
    # Reference in float64: the block's absmax, the nearest level of the map, its value.
    padded = torch.nn.functional.pad(x.double(), (0, blocks * 256 - numel)).view(blocks, 256)
    ref_absmax = padded.abs().amax(dim=1)
    assert torch.equal(absmax.double(), ref_absmax)
    scale = ref_absmax.repeat_interleave(256)[:numel]
    a = x.double().abs() / scale
    ref_code = int8_map.nearest(a, signed)
    ours, sign = int8_map.magnitude_and_sign(codes, signed)
    # float32 and float64 may round a value at the middle between two levels differently:
    # one code at most, rarely, and then the two levels are equally near within float32.
    assert int((ours - ref_code).abs().max()) <= 1
    assert float((ours != ref_code).double().mean()) < 2e-3
    levels = int8_map.levels(signed)
    ours_error = (levels[ours] - a).abs()
    best_error = (levels[ref_code] - a).abs()
    assert bool((ours_error <= best_error + 1e-6 * a + 1e-12).all())
    if signed:
        assert bool(((sign < 0) == (x < 0))[ours != 0].all())
    expected = int8_map.read_levels(signed)[ours] * sign * scale
    torch.testing.assert_close(back, expected, rtol=1e-6, atol=0.0)
    # The map's error: half a level step of a + L0 at most, which is (a + L0) / 16.
    low = sp.lowest_offset(signed)
    bound = (a + low) / 16 * scale
    assert bool(((back - x.double()).abs() <= bound * (1 + 1e-5)).all())
    # The largest element of each block is stored as the top level, 1 - L0.
    big = padded.abs().argmax(dim=1)
    flat_back = torch.nn.functional.pad(back, (0, blocks * 256 - numel)).view(blocks, 256)
    torch.testing.assert_close(
        flat_back.abs().gather(1, big[:, None]).squeeze(1), ref_absmax, rtol=2e-5, atol=0.0
    )


def test_zero_blocks_and_levels_of_the_maps() -> None:
    codes, absmax = sp.quantize_tensor(torch.zeros(300), signed=True)
    assert torch.equal(sp.dequantize_tensor(codes, absmax, True), torch.zeros(300))
    for signed in (True, False):
        levels = int8_map.levels(signed)
        # Every code decodes to its level (a block with absmax 1); signed codes with the top
        # bit set to the negative level.
        count = len(levels)
        raw = torch.arange(256, dtype=torch.int64)
        got = sp.dequantize_blocks(raw.to(torch.uint8).view(1, 256), torch.ones(1, 1), signed)
        read = int8_map.read_levels(signed)
        want = read[raw % 128] * torch.where(raw >= 128, -1.0, 1.0) if signed else read
        torch.testing.assert_close(got.reshape(-1).double(), want, rtol=1e-6, atol=0.0)
        if not signed:  # code 0 reads as a quarter of the lowest level, the rest as levels
            assert float(got.reshape(-1)[0]) == 2.0**-37 == sp.UNSIGNED_ZERO_LEVEL
        assert count == (128 if signed else 256)
        assert sp.lowest_level(signed) == pytest.approx(float(levels[1]), rel=1e-6)
        # Each level encodes to its own code.
        block = levels.float()
        block = torch.nn.functional.pad(block, (0, 256 - count)).view(1, 256)
        codes, _ = sp.quantize_blocks(block, signed)
        assert torch.equal(codes.reshape(-1)[:count].long(), torch.arange(count))


def test_quarter_root_checkpoints_are_read_and_converted() -> None:
    """int8 codes are checkpoints of the map before the float levels, ``round(C a^(1/4))``:
    they decode by that map's formula and convert to the float-level codes on loading."""
    p = torch.nn.Parameter(torch.zeros(5000))
    opt = ours.Adam([p], lr=1e-2, fast=False, state_precision="int8")
    gen = torch.Generator().manual_seed(4)
    m = torch.randn(5000, generator=gen, dtype=torch.float64) * 1e-3
    v = m**2 + torch.rand(5000, generator=gen, dtype=torch.float64) * 1e-6
    saved: dict[str, Any] = {"state": {0: {"step": torch.tensor(3.0)}}}
    legacy = {}
    for key, value, signed in (("exp_avg", m, True), ("exp_avg_sq", v, False)):
        top = 127 if signed else 255
        padded = torch.nn.functional.pad(value, (0, 20 * 256 - 5000)).view(20, 256)
        absmax = padded.abs().amax(dim=1)
        a = (padded.abs() / absmax[:, None]).reshape(-1)[:5000]
        code = torch.round(top * a**0.25) * (value.sign() if signed else 1)
        code = torch.where(code >= 128, code - 256, code)  # unsigned bytes, wrapped
        saved["state"][0][key + "_int8"] = code.to(torch.int8)
        saved["state"][0][key + "_absmax"] = absmax.float()
        magnitude = code.abs() if signed else code % 256
        legacy[key] = (magnitude / top) ** 4 * (code.sign() if signed else 1)
        legacy[key] = legacy[key] * absmax.repeat_interleave(256)[:5000]
    saved["param_groups"] = [{**opt.state_dict()["param_groups"][0]}]
    fp32 = ours.Adam([torch.nn.Parameter(torch.zeros(5000))], lr=1e-2, fast=False)
    fp32.load_state_dict(copy.deepcopy(saved))
    (entry,) = fp32.state.values()
    for key in ("exp_avg", "exp_avg_sq"):
        torch.testing.assert_close(entry[key].double(), legacy[key], rtol=1e-6, atol=1e-12)
    opt.load_state_dict(copy.deepcopy(saved))
    state = opt.state[p]
    for key, signed in (("exp_avg", True), ("exp_avg_sq", False)):
        assert state[key + "_int8"].dtype == torch.uint8
        values = int8_map.decode(state[key + "_int8"], state[key + "_absmax"], signed)
        scale = state[key + "_absmax"].double().repeat_interleave(256)[:5000]
        # Within half a level step (1/16 of the value) or L0 of the block's absmax.
        error = (values - legacy[key]).abs()
        assert bool((error <= legacy[key].abs() / 16 * (1 + 1e-3) + 2e-5 * scale).all())


# -- optimizers --------------------------------------------------------------------------------


def test_state_precision_is_validated() -> None:
    p = torch.nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match="state_precision must be one of 'fp32', 'bf16', 'int8'"):
        ours.AdamW([p], state_precision="fp16")


def _params(sizes: tuple[int, ...], seed: int = 0) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(n, generator=gen)) for n in sizes]


def _run(
    opt_factory: Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer],
    sizes: tuple[int, ...],
    steps: int,
) -> tuple[list[torch.nn.Parameter], torch.optim.Optimizer]:
    params = _params(sizes)
    opt = opt_factory(params)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen) * (1 + p.detach())
        opt.step()
    return params, opt


def _state_bytes(opt: torch.optim.Optimizer, p: torch.Tensor) -> float:
    entries = opt.state[p]
    total = sum(
        v.numel() * v.element_size()
        for k, v in entries.items()
        if k not in ("step", sp.SEED_KEY) and isinstance(v, torch.Tensor)
    )
    return total / p.numel()


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_adamw_state_form_and_bytes(precision: str) -> None:
    params, opt = _run(
        lambda ps: ours.AdamW(ps, lr=1e-2, fast=False, state_precision=precision),
        (5000, 300),
        3,
    )
    big, small = params
    state = opt.state[big]
    if precision == "bf16":
        assert state["exp_avg"].dtype == torch.bfloat16
        assert state["exp_avg_sq"].dtype == torch.bfloat16
        assert _state_bytes(opt, big) <= 4.1
        assert opt.state[small]["exp_avg"].dtype == torch.bfloat16
    else:
        assert set(state) == {
            "exp_avg_int8",
            "exp_avg_absmax",
            "exp_avg_sq_int8",
            "exp_avg_sq_absmax",
            "step",
        }
        assert state["exp_avg_int8"].shape == big.shape
        assert state["exp_avg_absmax"].shape == (-(-5000 // 256),)
        assert _state_bytes(opt, big) <= 2.2
        # Below INT8_MIN_NUMEL elements the state stays float32.
        assert opt.state[small]["exp_avg"].dtype == torch.float32
    assert float(state["step"]) == 3.0


@pytest.mark.parametrize("name", sorted(MOMENT_OPTIMIZERS))
@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_low_precision_state_follows_float32(name: str, precision: str) -> None:
    """A few eager steps: the parameters stay close to the float32-state run (the step is a
    function of the moments, which differ by their rounding)."""
    factory = MOMENT_OPTIMIZERS[name]
    lr = 1.0 if name == "Adadelta" else 1e-3
    runs = {}
    for prec in ("fp32", precision):
        params, _opt = _run(
            lambda ps, prec=prec: factory(ps, lr=lr, fast=False, state_precision=prec),
            (4096,),
            5,
        )
        runs[prec] = params[0].detach().clone()
        start = _params((4096,))[0].detach()
        moved = (runs[prec] - start).abs().max().item()
        assert moved > 0
    diff = (runs[precision] - runs["fp32"]).abs()
    moved = (runs["fp32"] - _params((4096,))[0].detach()).abs()
    # Within a tenth of the distance travelled (Lion's sign steps may flip near zero).
    tolerance = 0.1 * moved.max().item() if name != "Lion" else 2.5 * moved.max().item()
    assert diff.max().item() <= tolerance
    if name != "Lion":
        assert diff.mean().item() <= 0.02 * moved.mean().item() + 1e-7


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_training_reaches_the_float32_loss(precision: str) -> None:
    """Linear regression with AdamW: the final loss within 10% of the float32-state run's."""
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randn(256, 64, generator=gen)
    target = inputs @ torch.randn(64, 64, generator=gen)
    losses = {}
    for prec in ("fp32", precision):
        torch.manual_seed(0)
        weight = torch.nn.Parameter(torch.zeros(64, 64))
        opt = ours.AdamW([weight], lr=3e-2, weight_decay=0.0, fast=False, state_precision=prec)
        for _ in range(150):
            opt.zero_grad()
            loss = ((inputs @ weight - target) ** 2).mean()
            loss.backward()
            opt.step()
        losses[prec] = float(((inputs @ weight.detach() - target) ** 2).mean())
    assert losses["fp32"] < 1.0
    assert losses[precision] <= 1.1 * losses["fp32"] + 1e-3


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_state_dict_loads_back_exactly(precision: str) -> None:
    def make(ps: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        return ours.Adam(ps, lr=1e-2, fast=False, state_precision=precision)

    params, opt = _run(make, (5000, 100), 3)
    saved = copy.deepcopy(opt.state_dict())
    twin = [torch.nn.Parameter(p.detach().clone()) for p in params]
    other = make(twin)
    other.load_state_dict(saved)
    for p, q in zip(params, twin, strict=True):
        a, b = opt.state[p], other.state[q]
        assert set(a) == set(b)
        for key in a:
            assert a[key].dtype == b[key].dtype, key
            assert torch.equal(a[key], b[key]), key
    # The continued runs are the same.
    gen = torch.Generator().manual_seed(5)
    for _ in range(2):
        for p, q in zip(params, twin, strict=True):
            p.grad = torch.randn(p.shape, generator=gen)
            q.grad = p.grad.clone()
        opt.step()
        other.step()
    for p, q in zip(params, twin, strict=True):
        assert torch.equal(p, q)


def test_float32_checkpoint_converts_to_int8_and_back() -> None:
    params, fp32 = _run(lambda ps: ours.Adam(ps, lr=1e-2, fast=False), (5000,), 3)
    p = params[0]
    saved = copy.deepcopy(fp32.state_dict())
    moments = {k: fp32.state[p][k].double() for k in ("exp_avg", "exp_avg_sq")}

    q = torch.nn.Parameter(p.detach().clone())
    int8 = ours.Adam([q], lr=1e-2, fast=False, state_precision="int8")
    int8.load_state_dict(saved)
    state = int8.state[q]
    assert state["exp_avg_int8"].dtype == torch.uint8
    assert float(state["step"]) == 3.0
    for key, signed in (("exp_avg", True), ("exp_avg_sq", False)):
        absmax = state[key + "_absmax"].double()
        # Decoded by the definition of the map: each code the nearest level to the float64
        # moment over the block's absmax (up to float32 rounding at a midpoint).
        values = int8_map.decode(state[key + "_int8"], absmax, signed)
        scale = absmax.repeat_interleave(256)[: values.numel()]
        a = moments[key].abs() / scale
        best = int8_map.levels(signed)[int8_map.nearest(a, signed)] * scale
        err = (values.abs() - moments[key].abs()).abs()
        assert bool((err <= (best - moments[key].abs()).abs() + 1e-6 * moments[key].abs()).all())
        if signed:
            assert bool(((values < 0) == (moments[key] < 0))[values != 0].all())

    # And back: an int8 checkpoint into a float32-state optimizer is dequantized.
    back_param = torch.nn.Parameter(p.detach().clone())
    back = ours.Adam([back_param], lr=1e-2, fast=False)
    back.load_state_dict(copy.deepcopy(int8.state_dict()))
    entry = back.state[back_param]
    assert set(entry) == {"exp_avg", "exp_avg_sq", "step"}
    assert entry["exp_avg"].dtype == torch.float32
    expected = sp.dequantize_tensor(state["exp_avg_int8"], state["exp_avg_absmax"], True)
    assert torch.equal(entry["exp_avg"], expected)
    # bf16 from float32 rounds to nearest.
    bf = ours.Adam([torch.nn.Parameter(p.detach().clone())], lr=1e-2, state_precision="bf16")
    bf.load_state_dict(saved)
    (bf_entry,) = bf.state.values()
    assert torch.equal(bf_entry["exp_avg"], moments["exp_avg"].float().to(torch.bfloat16))
    assert sp.SEED_KEY in bf_entry


def test_corrupt_int8_state_is_refused() -> None:
    _, opt = _run(lambda ps: ours.Adam(ps, lr=1e-2, fast=False, state_precision="int8"), (5000,), 1)
    saved = opt.state_dict()
    bad = copy.deepcopy(saved)
    bad["state"][0]["exp_avg_int8"] = bad["state"][0]["exp_avg_int8"].float()
    with pytest.raises(ValueError, match=r"exp_avg_int8.*not a tensor of 8-bit codes"):
        opt.load_state_dict(bad)
    bad = copy.deepcopy(saved)
    bad["state"][0]["exp_avg_absmax"] = bad["state"][0]["exp_avg_absmax"][:3]
    with pytest.raises(ValueError, match=r"exp_avg_absmax.*one scale per block"):
        opt.load_state_dict(bad)
    bad = copy.deepcopy(saved)
    bad["state"][0]["exp_avg_absmax"][0] = -1.0
    with pytest.raises(ValueError, match="negative scales"):
        opt.load_state_dict(bad)


def test_state_precision_survives_pickle_and_seed_is_the_same_in_every_process() -> None:
    """The rounding seed does not depend on torch's random state: processes of a
    data-parallel run start from different ones, and their replicas must round alike."""
    torch.manual_seed(3)
    a = ours.AdamW(_params((10,)), state_precision="bf16")
    torch.manual_seed(4)
    b = ours.AdamW(_params((10,)), state_precision="bf16")
    assert a.state_seed == b.state_seed == 0.0
    c = pickle.loads(pickle.dumps(a))
    assert c.state_precision == "bf16"
    assert c.state_seed == a.state_seed


def _fast_and_eager(precision: str, steps: int = 4) -> tuple[list[Any], list[Any], Any]:
    sizes = (5000, 4100)
    out = []
    opt: Any = None
    for fast in (True, False):
        torch.manual_seed(0)
        params, opt = _run(
            lambda ps, fast=fast: ours.AdamW(ps, lr=1e-2, fast=fast, state_precision=precision),
            sizes,
            steps,
        )
        out.append((params, opt))
    return out[0], out[1], opt


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_fast_path_agrees_with_eager(precision: str) -> None:
    (fast_params, fast_opt), (eager_params, eager_opt), _ = _fast_and_eager(precision)
    assert fast_opt._flat is not None
    assert any(plan is not None and plan.buckets for plan in fast_opt._flat.plans)
    start = _params((5000, 4100))
    for p, q, s in zip(fast_params, eager_params, start, strict=True):
        moved = (q.detach() - s.detach()).abs().max().item()
        assert (p.detach() - q.detach()).abs().max().item() <= 0.05 * moved + 1e-6
        a, b = fast_opt.state[p], eager_opt.state[q]
        assert set(a) == set(b)
        for key in a:
            assert a[key].dtype == b[key].dtype, key
            assert a[key].shape == b[key].shape, key
    # The fast path's state round-trips through state_dict into an eager optimizer.
    saved = copy.deepcopy(fast_opt.state_dict())
    twin = [torch.nn.Parameter(p.detach().clone()) for p in fast_params]
    other = ours.AdamW(twin, lr=1e-2, fast=False, state_precision=precision)
    other.load_state_dict(saved)
    for p, q in zip(fast_params, twin, strict=True):
        for key, value in fast_opt.state[p].items():
            assert torch.equal(value, other.state[q][key]), key


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16], ids=["float64", "bfloat16"])
@pytest.mark.parametrize("precision", ["bf16", "int8"])
@pytest.mark.parametrize("fast", [False, True], ids=["eager", "fast"])
def test_parameters_of_other_dtypes(dtype: torch.dtype, precision: str, fast: bool) -> None:
    """float64 and bfloat16 parameters with low-precision state: each step is AdamW's formula
    computed here in float64 on the state as stored (decoded), the arithmetic in float32 or
    the parameter's dtype if wider, the result rounded to the parameter's dtype."""
    gen = torch.Generator().manual_seed(5)
    param = torch.nn.Parameter(torch.randn(5000, generator=gen).to(dtype))
    opt = ours.AdamW([param], lr=1e-2, weight_decay=0.1, state_precision=precision, fast=fast)
    beta1, beta2, eps, lr, wd = 0.9, 0.999, 1e-8, 1e-2, 0.1
    for t in range(1, 4):
        state = sp.decoded(opt.state[param]) if opt.state[param] else {}
        m0 = state["exp_avg"].double() if state else torch.zeros(5000, dtype=torch.float64)
        v0 = state["exp_avg_sq"].double() if state else torch.zeros(5000, dtype=torch.float64)
        p0 = param.detach().double()
        param.grad = (torch.randn(5000, generator=gen) * (1 + p0.float())).to(dtype)
        g = param.grad.double()
        m = beta1 * m0 + (1 - beta1) * g
        v = beta2 * v0 + (1 - beta2) * g * g
        denom = (v / (1 - beta2**t)).sqrt() + eps
        want = p0 * (1 - lr * wd) - lr / (1 - beta1**t) * m / denom
        opt.step()
        got = param.detach().double()
        if dtype == torch.float64:
            # float64 arithmetic on the decoded state: the formula's own rounding.
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
        else:
            # float32 arithmetic, then one rounding to bfloat16: within one bfloat16 spacing.
            spacing = torch.exp2(torch.floor(torch.log2(want.abs())) - 7)
            assert bool(((got - want).abs() <= spacing * (1 + 1e-3)).all())


@pytest.mark.parametrize("fast", [False, True], ids=["eager", "fast"])
def test_tiny_second_moments_do_not_leave_the_first_divided_by_eps(fast: bool) -> None:
    """An element whose gradient is 2^-19 of its block's largest: its second moment (2^-38 of
    the block's) is below the unsigned map's lowest level and reads as a quarter of it, not
    as zero, so its Adam step stays near float32's (it was 25x float32's while code 0 read
    as zero). Steady state: the last 100 of 2100 steps, the same gradient at every step."""
    grad = torch.zeros(4096)
    grad[0], grad[1], grad[2] = 1.0, 2.0**-19, 2.0**-17
    moved = {}
    for precision in ("fp32", "int8"):
        param = torch.nn.Parameter(torch.zeros(4096))
        opt = ours.Adam([param], lr=1e-3, state_precision=precision, fast=fast)
        for _ in range(2000):
            param.grad = grad.clone()
            opt.step()
        before = param.detach()[:3].clone()
        for _ in range(100):
            param.grad = grad.clone()
            opt.step()
        moved[precision] = (before - param.detach()[:3]) / 100
    ratio = moved["int8"] / moved["fp32"]
    assert bool(((ratio > 0.5) & (ratio < 1.5)).all()), ratio
