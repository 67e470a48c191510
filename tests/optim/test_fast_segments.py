"""Chains with per-tensor blocks on the fast path: the elementwise stretches around them fused.

Each user chain below is checked against its formula computed here, tensor by tensor, in
float64, on the eager and the fast path, with a step where one parameter has no gradient
(the bucket then runs in two pieces) and a state_dict reload in the middle.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping

import pytest
import torch
from torch import Tensor, nn

import dltricks.optim as ours
from dltricks.optim import blocks as b
from dltricks.optim.base import Hyper, State, Transform, stateless
from dltricks.optim.fast.segments import SegmentedUpdate, segmented_update

SHAPES = ((3, 5), (4, 4), (2, 7))
STEPS = 6
LR, DECAY, BETA = 0.05, 0.01, 0.9
# At this step the second parameter has no gradient: it is skipped, as torch.optim skips it.
SKIPPED_STEP = 2


def unit_rms() -> Transform:
    """Per tensor: ``u / RMS(u)``."""
    return stateless("unit_rms", lambda u, p, h: u / u.pow(2).mean().sqrt(), per_tensor=True)


# Calls of unit_rms_into's ``into`` (the fast path's way to run it), by test.
INTO_CALLS: list[int] = [0]


def unit_rms_into() -> Transform:
    """:func:`unit_rms` that can also write into the fast path's buffer (``out`` is the
    input's own slice there: the scale is read before the write)."""

    def update(u: Tensor, p: Tensor, h: Hyper) -> Tensor:
        return u / u.pow(2).mean().sqrt()

    def into(u: Tensor, p: Tensor, h: Hyper, out: Tensor) -> None:
        INTO_CALLS[0] += 1
        torch.div(u, u.pow(2).mean().sqrt(), out=out)

    return stateless("unit_rms_into", update, per_tensor=True, into=into)


def row_normalised() -> Transform:
    """Per tensor, with state of its own: ``r_t = (r_{t-1} + mean_j u_ij^2) / 2``,
    ``u' = u / sqrt(r_t + 1e-3)`` row by row (``r`` has shape ``(rows, 1)``)."""

    def init(param: Tensor, hyper: Hyper) -> State:
        return {"rows": torch.zeros(param.shape[0], 1, dtype=param.dtype)}

    def update(
        u: Tensor, state: Mapping[str, Tensor], param: Tensor, hyper: Hyper
    ) -> tuple[Tensor, State]:
        rows = (state["rows"] + u.pow(2).mean(dim=1, keepdim=True)) / 2
        return u / (rows + 1e-3).sqrt(), {"rows": rows}

    return Transform("row_normalised", init, update, ("rows",), per_tensor=True)


def clip_to_unit_norm() -> Transform:
    """Per tensor: ``u * min(1, 1 / ||u||)``."""
    return stateless(
        "clip_to_unit_norm", lambda u, p, h: u * (1 / u.norm()).clamp(max=1.0), per_tensor=True
    )


def middle_chain() -> Transform:
    """Elementwise, per tensor, elementwise: Muon's shape."""
    return ours.chain(
        b.ema(BETA, key="m"),
        unit_rms(),
        b.add_decayed_weights(DECAY),
        b.scale_by_learning_rate(),
    )


def middle_into_chain() -> Transform:
    """:func:`middle_chain` with a per-tensor block that writes into the buffer."""
    return ours.chain(
        b.ema(BETA, key="m"),
        unit_rms_into(),
        b.add_decayed_weights(DECAY),
        b.scale_by_learning_rate(),
    )


def middle_formula(theta: Tensor, g: Tensor, state: dict[str, Tensor]) -> Tensor:
    m = state["m"] = BETA * state.get("m", torch.zeros_like(g)) + (1 - BETA) * g
    n = m / m.pow(2).mean().sqrt()
    return theta - LR * (n + DECAY * theta)


def ends_chain() -> Transform:
    """Per tensor (with state), elementwise, per tensor: no kernel writes the parameters."""
    return ours.chain(row_normalised(), b.scale(-LR), clip_to_unit_norm())


def ends_formula(theta: Tensor, g: Tensor, state: dict[str, Tensor]) -> Tensor:
    rows = state.get("rows", torch.zeros(g.shape[0], 1, dtype=g.dtype))
    rows = state["rows"] = (rows + g.pow(2).mean(dim=1, keepdim=True)) / 2
    u = -LR * g / (rows + 1e-3).sqrt()
    return theta + u * (1 / u.norm()).clamp(max=1.0)


Formula = Callable[[Tensor, Tensor, dict[str, Tensor]], Tensor]
CHAINS: dict[str, tuple[Callable[[], Transform], Formula]] = {
    "middle": (middle_chain, middle_formula),
    "middle_into": (middle_into_chain, middle_formula),
    "ends": (ends_chain, ends_formula),
}


def _grads(step: int) -> list[Tensor]:
    generator = torch.Generator().manual_seed(100 + step)
    return [torch.randn(shape, generator=generator, dtype=torch.float64) for shape in SHAPES]


def _params() -> list[nn.Parameter]:
    generator = torch.Generator().manual_seed(0)
    return [
        nn.Parameter(torch.randn(shape, generator=generator, dtype=torch.float64))
        for shape in SHAPES
    ]


def _run(make: Callable[[], Transform], fast: bool) -> tuple[list[nn.Parameter], Mapping]:
    params = _params()
    opt = ours.ChainOptimizer(params, make(), fast=fast, lr=LR)
    for step in range(STEPS):
        if step == STEPS // 2:  # a reload in the middle continues the run
            saved = copy.deepcopy(opt.state_dict())
            opt = ours.ChainOptimizer(params, make(), fast=fast, lr=LR)
            opt.load_state_dict(saved)
        for i, (p, g) in enumerate(zip(params, _grads(step), strict=True)):
            p.grad = None if (step == SKIPPED_STEP and i == 1) else g.clone()
        opt.step()
    if fast:
        plan = opt._flat.plans[0]  # type: ignore[attr-defined]
        assert plan.buckets, "the fast path did not take the chain"
        assert not plan.eager
        assert isinstance(plan.buckets[0].fused, SegmentedUpdate)
    return params, opt.state


@pytest.mark.parametrize("fast", [False, True], ids=["eager", "fast"])
@pytest.mark.parametrize("name", sorted(CHAINS))
def test_a_chain_with_per_tensor_blocks_follows_its_formula(name: str, fast: bool) -> None:
    make, formula = CHAINS[name]
    params, state = _run(make, fast)
    expected = [p.detach().clone() for p in _params()]
    states: list[dict[str, Tensor]] = [{} for _ in SHAPES]
    for step in range(STEPS):
        for i, g in enumerate(_grads(step)):
            if not (step == SKIPPED_STEP and i == 1):
                expected[i] = formula(expected[i], g, states[i])
    for i, (p, want) in enumerate(zip(params, expected, strict=True)):
        torch.testing.assert_close(p.detach(), want, rtol=1e-10, atol=1e-12)
        for key, value in states[i].items():
            torch.testing.assert_close(state[p][key], value, rtol=1e-10, atol=1e-12)
        assert float(state[p]["step"]) == STEPS - (i == 1)


@pytest.mark.parametrize("fast", [False, True], ids=["eager", "fast"])
def test_update_into_is_the_fast_paths_way_and_only_its(fast: bool) -> None:
    """The segmented fast path writes a per-tensor block's update straight into its buffer
    (``update_into``, once per parameter and step); the eager path calls ``update``."""
    INTO_CALLS[0] = 0
    _run(middle_into_chain, fast)
    per_step = len(SHAPES)
    assert INTO_CALLS[0] == (per_step * STEPS - 1 if fast else 0)


def test_stretches_and_per_tensor_stages_are_what_the_chain_declares() -> None:
    chain = ours.chain(ours.chain(b.ema(BETA, key="m"), unit_rms()), b.scale(-LR))
    assert len(chain.parts) == 3  # the inner chain spliced in
    assert [part.elementwise for part in chain.parts] == [True, False, True]
    assert chain.parts[1].name == "unit_rms"
    segmented = segmented_update(chain, {"lr": LR})
    assert isinstance(segmented, SegmentedUpdate)
    assert [stage.fused is None for stage in segmented.stages] == [False, True, False]
    assert segmented.writes_param
    assert segmented.layout.tensor_keys == ("m",)
    # Nothing to fuse around: one per-tensor block alone, or a partition.
    assert isinstance(segmented_update(ours.chain(unit_rms()), {}), str)
    labelled = ours.partition(lambda p: "a", {"a": middle_chain()})
    assert isinstance(segmented_update(labelled, {}), str)


def test_an_undeclared_block_keeps_the_whole_chain_per_tensor() -> None:
    undeclared = stateless("undeclared", lambda u, p, h: u / u.norm())
    chain = ours.chain(b.ema(BETA, key="m"), undeclared, b.scale_by_learning_rate())
    assert not chain.per_tensor
    assert isinstance(segmented_update(chain, {"lr": LR}), str)


def test_muon_fast_path_is_segmented_and_keeps_torchs_numbers() -> None:
    """At a size the automatic mode fuses (over MIN_FAST_NUMEL elements): two stretch kernels
    around Newton-Schulz, the same numbers as torch.optim.Muon (float32, bf16 Newton-Schulz)."""
    generator = torch.Generator().manual_seed(0)
    start = [torch.randn(64, 300, generator=generator), torch.randn(300, 64, generator=generator)]
    mine = [nn.Parameter(t.clone()) for t in start]
    theirs = [nn.Parameter(t.clone()) for t in start]
    opt = ours.Muon(mine, lr=0.02)
    reference = torch.optim.Muon(theirs, lr=0.02)
    for _ in range(3):
        grads = [torch.randn(t.shape, generator=generator) for t in start]
        for p, q, g in zip(mine, theirs, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        reference.step()
    bucket = opt._flat.plans[0].buckets[0]  # type: ignore[attr-defined]
    assert isinstance(bucket.fused, SegmentedUpdate)
    assert [s.fused is None for s in bucket.fused.stages] == [False, True, False]
    for p, q in zip(mine, theirs, strict=True):
        torch.testing.assert_close(
            opt.state[p]["momentum_buffer"], reference.state[q]["momentum_buffer"]
        )
        # Newton-Schulz runs in bfloat16: a last-bit difference in its float32 input (the
        # kernel's momentum against torch's lerp_, one float32 ulp) moves its output by about
        # a bfloat16 ulp (2^-8 relative), i.e. a step by lr * s * 2^-8: allowed for each of
        # the 3 steps. (In float64 the fast path matches torch to 1e-10: the parity tests.)
        bound = 3 * 0.02 * (300 / 64) ** 0.5 * 2**-8
        torch.testing.assert_close(p.detach(), q.detach(), rtol=0, atol=bound)
