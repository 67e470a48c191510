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


def _levels(signed: bool) -> torch.Tensor:
    """The map's levels in float64 from its definition: ``(c / C)^4`` for ``c = 0..C``,
    ``C = 127`` (signed magnitudes) or 255 (unsigned)."""
    top = 127 if signed else 255
    return (torch.arange(top + 1, dtype=torch.float64) / top) ** 4


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("numel", [256, 1000, 4097])
def test_block_quantization_against_a_float64_reference(signed: bool, numel: int) -> None:
    gen = torch.Generator().manual_seed(numel)
    # Magnitudes over many octaves, so every part of the map is used.
    x = torch.randn(numel, generator=gen) * torch.exp(torch.randn(numel, generator=gen) * 4)
    if not signed:
        x = x.abs()
    codes, absmax = sp.quantize_tensor(x, signed)
    assert codes.dtype == torch.int8
    assert codes.shape == x.shape
    blocks = -(-numel // 256)
    assert absmax.shape == (blocks,)
    assert absmax.dtype == torch.float32
    back = sp.dequantize_tensor(codes, absmax, signed).double()
    # Reference in float64: the block's absmax, the code round(C a^(1/4)), its level.
    top = 127 if signed else 255
    padded = torch.nn.functional.pad(x.double(), (0, blocks * 256 - numel)).view(blocks, 256)
    ref_absmax = padded.abs().amax(dim=1)
    assert torch.equal(absmax.double(), ref_absmax)
    scale = ref_absmax.repeat_interleave(256)[:numel]
    a = x.double().abs() / scale
    ref_code = torch.round(top * a**0.25)
    ours = codes.to(torch.int64).abs() if signed else codes.to(torch.int64) & 0xFF
    # float32 and float64 may round a value at a code boundary differently: one code at most,
    # and rarely.
    assert int((ours - ref_code).abs().max()) <= 1
    assert float((ours != ref_code).double().mean()) < 2e-3
    if signed:
        assert bool(((codes < 0) == (x < 0))[ours != 0].all())
    levels = _levels(signed)
    expected = levels[ours] * x.double().sign() * scale
    torch.testing.assert_close(back, expected, rtol=1e-6, atol=0.0)
    # The error bound of the map: half a code step in the a^(1/4) domain.
    s = a**0.25
    bound = ((s + 0.5 / top) ** 4 - s**4) * scale
    assert bool(((back - x.double()).abs() <= bound * (1 + 1e-5) + 1e-7 * scale).all())
    # The largest element of each block is stored exactly (up to float32 rounding).
    big = padded.abs().argmax(dim=1)
    flat_back = torch.nn.functional.pad(back, (0, blocks * 256 - numel)).view(blocks, 256)
    torch.testing.assert_close(
        flat_back.abs().gather(1, big[:, None]).squeeze(1), ref_absmax, rtol=1e-6, atol=0.0
    )


def test_zero_blocks_and_levels_of_the_maps() -> None:
    codes, absmax = sp.quantize_tensor(torch.zeros(300), signed=True)
    assert torch.equal(sp.dequantize_tensor(codes, absmax, True), torch.zeros(300))
    for signed in (True, False):
        levels = _levels(signed)
        # Every code decodes to its level (a block with absmax 1).
        count = len(levels)
        raw = torch.arange(count, dtype=torch.int32)
        stored = raw if signed else torch.where(raw >= 128, raw - 256, raw)
        c = torch.nn.functional.pad(stored.to(torch.int8), (0, 256 * 2 - count)).view(2, 256)
        got = sp.dequantize_blocks(c, torch.ones(2, 1), signed).reshape(-1)[:count].double()
        torch.testing.assert_close(got, levels, rtol=1e-6, atol=0.0)
        assert sp.lowest_level(signed) == pytest.approx(float(levels[1]))


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
    assert state["exp_avg_int8"].dtype == torch.int8
    assert float(state["step"]) == 3.0
    for key, signed in (("exp_avg", True), ("exp_avg_sq", False)):
        codes = state[key + "_int8"].to(torch.int64)
        absmax = state[key + "_absmax"].double()
        # Decoded by the definition of the map: the nearest level times the block's absmax.
        levels = _levels(signed)
        index = codes.abs() if signed else codes & 0xFF
        values = levels[index] * (codes.sign() if signed else 1)
        scale = absmax.repeat_interleave(256)[: codes.numel()]
        values = values * scale
        # Half a code step of the map in the a^(1/4) domain, from the float64 moments.
        s = (moments[key].abs() / scale) ** 0.25
        top = 127 if signed else 255
        bound = ((s + 0.5 / top) ** 4 - s**4) * scale
        err = (values - moments[key]).abs()
        assert bool((err <= bound * (1 + 1e-4) + 1e-6 * scale).all())

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
    with pytest.raises(ValueError, match=r"exp_avg_int8.*not an int8 tensor"):
        opt.load_state_dict(bad)
    bad = copy.deepcopy(saved)
    bad["state"][0]["exp_avg_absmax"] = bad["state"][0]["exp_avg_absmax"][:3]
    with pytest.raises(ValueError, match=r"exp_avg_absmax.*one scale per block"):
        opt.load_state_dict(bad)
    bad = copy.deepcopy(saved)
    bad["state"][0]["exp_avg_absmax"][0] = -1.0
    with pytest.raises(ValueError, match="negative scales"):
        opt.load_state_dict(bad)


def test_state_precision_survives_pickle_and_seed_follows_manual_seed() -> None:
    torch.manual_seed(3)
    a = ours.AdamW(_params((10,)), state_precision="bf16")
    torch.manual_seed(3)
    b = ours.AdamW(_params((10,)), state_precision="bf16")
    assert a.state_seed == b.state_seed
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
