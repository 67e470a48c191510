"""Optimizers built from equal chains share one compiled kernel; different chains never do."""

from __future__ import annotations

import torch

import dltricks.optim as ours
from dltricks.optim import blocks as b
from dltricks.optim.base import Hyper
from dltricks.optim.fast.structure import structural_key
from tests.optim.harness import default_dtype, make_model, train


def _momentum_chain(beta: float) -> ours.Transform:
    """The same code run again makes a new chain object with the same structure."""
    return ours.chain(b.trace(beta, 0.0), b.scale_by_learning_rate())


def _fused(opt: torch.optim.Optimizer) -> object:
    flat = opt._flat  # type: ignore[attr-defined]
    assert flat is not None, "the fast path was not taken"
    return flat.plans[0].buckets[0].fused


def _train(chain: ours.Transform, *, fast: bool) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    with default_dtype(torch.float64):
        model = make_model()
        opt = ours.ChainOptimizer(model.parameters(), chain, lr=0.05, fast=fast)
        train(lambda ps: opt, model, lr=0.05, steps=4, optimizer=opt)
    return model, opt


def _torch_momentum(momentum: float) -> torch.nn.Module:
    with default_dtype(torch.float64):
        model = make_model()
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=momentum)
        train(lambda ps: opt, model, lr=0.05, steps=4, optimizer=opt)
    return model


def _assert_same(model: torch.nn.Module, ref: torch.nn.Module) -> None:
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-12, atol=1e-12)


def test_chains_built_by_the_same_code_share_one_kernel_and_follow_torch() -> None:
    first_model, first = _train(_momentum_chain(0.9), fast=True)
    second_model, second = _train(_momentum_chain(0.9), fast=True)
    assert _fused(first) is _fused(second)
    ref = _torch_momentum(0.9)
    _assert_same(first_model, ref)
    _assert_same(second_model, ref)


def test_chains_with_other_constants_get_their_own_kernel_and_their_own_numbers() -> None:
    slow_model, slow = _train(_momentum_chain(0.9), fast=True)
    other_model, other = _train(_momentum_chain(0.5), fast=True)
    assert _fused(slow) is not _fused(other)
    _assert_same(slow_model, _torch_momentum(0.9))
    _assert_same(other_model, _torch_momentum(0.5))


def test_the_key_tells_apart_values_that_compare_equal() -> None:
    def scaled(factor: object) -> ours.Transform:
        def update(u: torch.Tensor, param: torch.Tensor, hyper: Hyper) -> torch.Tensor:
            return u * factor  # type: ignore[operator]

        return ours.stateless("scaled", update, elementwise=True)

    assert structural_key(scaled(0.5)) == structural_key(scaled(0.5))
    for a, c in [(0.0, -0.0), (1, True), (1, 1.0), (float("nan"), 1.0)]:
        assert a == c or a != a  # equal as Python numbers (or NaN), different as constants
        assert structural_key(scaled(a)) != structural_key(scaled(c)), (a, c)


def test_a_chain_that_captures_a_tensor_is_keyed_by_itself_and_stays_exact() -> None:
    weights = torch.tensor(0.5, dtype=torch.float64)

    def shrink() -> ours.Transform:
        def update(u: torch.Tensor, param: torch.Tensor, hyper: Hyper) -> torch.Tensor:
            return u * weights

        return ours.stateless("shrink", update, elementwise=True)

    assert structural_key(shrink()) is None
    chain = ours.chain(shrink(), b.scale_by_learning_rate())
    with default_dtype(torch.float64):
        ref = make_model()
        opt = torch.optim.SGD(ref.parameters(), lr=0.05 * 0.5)
        train(lambda ps: opt, ref, lr=0.025, steps=4, optimizer=opt)
    for fast in (True, False):
        model, _ = _train(chain, fast=fast)
        _assert_same(model, ref)
