"""The torch.optim contract: state_dict round trips, None grads, dtypes, non-finite policy."""

from __future__ import annotations

import io
import warnings
from functools import partial
from typing import Any

import pytest
import torch

import dltricks.optim as ours
from tests.optim.cases import CASES, OptimizerCase
from tests.optim.harness import clone, default_dtype, make_model, train


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_state_dict_round_trip_continues_bit_identically(case: OptimizerCase) -> None:
    config = case.configs[-1]
    factory = partial(case.ours, **{"lr": case.lr, **config})
    uninterrupted = make_model()
    train(factory, uninterrupted, lr=case.lr, steps=40)

    first_half = make_model()
    opt = train(factory, first_half, lr=case.lr, steps=20)
    buffer = io.BytesIO()
    torch.save({"model": first_half.state_dict(), "optim": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer)

    resumed = make_model(seed=123)  # different weights: everything must come from the file
    resumed.load_state_dict(saved["model"])
    new_opt = factory(resumed.parameters())
    new_opt.load_state_dict(saved["optim"])
    train(factory, resumed, lr=case.lr, steps=20, start=20, optimizer=new_opt)

    for a, b in zip(resumed.parameters(), uninterrupted.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_parameters_without_grad_are_skipped(case: OptimizerCase) -> None:
    used, unused = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    opt = case.ours([used, unused], lr=case.lr)
    (used**2).sum().backward()
    opt.step()
    assert torch.equal(unused, torch.ones(3))
    assert len(opt.state[unused]) == 0
    assert not torch.equal(used, torch.ones(3))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bfloat16_parameters_train(case: OptimizerCase) -> None:
    target = torch.tensor([0.5, -0.25, 1.0], dtype=torch.bfloat16)
    # Adafactor's step is relative to the parameter's RMS (floored at eps2 = 1e-3): from zero
    # it moves 1e-5 per step, below bfloat16's resolution at this loss.
    start_value = 0.1 if case.name == "Adafactor" else 0.0
    param = torch.nn.Parameter(torch.full((3,), start_value, dtype=torch.bfloat16))
    opt = case.ours([param], lr=case.lr)
    start = float(((param.detach() - target) ** 2).sum())
    for _ in range(20):
        opt.zero_grad()
        ((param - target) ** 2).sum().backward()
        opt.step()
    assert param.dtype == torch.bfloat16
    assert torch.isfinite(param).all()
    assert float(((param.detach() - target) ** 2).sum()) < start


def _poisoned_step(policy: str) -> tuple[torch.optim.Optimizer, list[torch.Tensor]]:
    model = make_model()
    opt = ours.Adam(model.parameters(), lr=1e-2, nonfinite=policy)  # type: ignore[arg-type]
    train(lambda params: opt, model, lr=1e-2, steps=3, optimizer=opt)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    first = next(model.parameters())
    assert first.grad is not None
    first.grad[0, 0] = float("nan")
    return opt, list(model.parameters())


@pytest.mark.parametrize("policy", ["raise", "skip"])
def test_nonfinite_gradient_leaves_parameters_and_state_untouched(policy: str) -> None:
    opt, params = _poisoned_step(policy)
    before_params = [p.detach().clone() for p in params]
    before_state = [{k: v.clone() for k, v in opt.state[p].items()} for p in params]
    if policy == "raise":
        with pytest.raises(ours.NonFiniteGradientError, match="param group 0, parameter 0"):
            opt.step()
    else:
        opt.step()
        assert opt.skipped_steps == 1  # type: ignore[attr-defined]
    for p, p0, s0 in zip(params, before_params, before_state, strict=True):
        assert torch.equal(p, p0)
        for key, value in s0.items():
            assert torch.equal(opt.state[p][key], value), key


def test_nonfinite_ignore_behaves_like_torch() -> None:
    opt, params = _poisoned_step("ignore")
    opt.step()
    assert torch.isnan(params[0]).any()


def test_scheduler_change_takes_effect_at_next_step() -> None:
    param = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = ours.SGD([param], lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 0.1 if epoch >= 1 else 1.0)
    moves = []
    for _ in range(2):
        before = param.detach().clone()
        param.grad = torch.ones(1, dtype=torch.float64)
        opt.step()
        scheduler.step()
        moves.append(float(before - param.detach()))
    assert moves == pytest.approx([1.0, 0.1], rel=1e-12)


def test_zero_grad_and_add_param_group_follow_torch() -> None:
    model = make_model()
    opt = ours.Adam(list(model[0].parameters()), lr=1e-3)
    extra = clone(model)[2]
    opt.add_param_group({"params": extra.parameters(), "lr": 5e-3})
    assert opt.param_groups[1]["lr"] == 5e-3
    assert opt.param_groups[1]["betas"] == (0.9, 0.999)
    model(torch.randn(2, 6, dtype=torch.float64)).sum().backward()
    opt.zero_grad()
    assert all(p.grad is None for p in model[0].parameters())


def test_state_names_read_as_torch() -> None:
    param = torch.nn.Parameter(torch.ones(2))
    opt = ours.Adam([param], amsgrad=True)
    param.grad = torch.ones(2)
    opt.step()
    assert {"exp_avg", "exp_avg_sq", "max_exp_avg_sq", "step"} <= set(opt.state[param])
    assert float(opt.state[param]["step"]) == 1.0


@pytest.mark.parametrize("fast", [False, True], ids=["eager", "fast"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_a_skipped_step_is_a_no_op_for_every_optimizer(case: OptimizerCase, fast: bool) -> None:
    """nonfinite="skip": parameters and state bit-identical, step counts unchanged, and the run
    goes on exactly as a run that never saw the poisoned step (float64, default config, whose
    fast kernels the parity tests compile)."""
    factory = partial(case.ours, lr=case.lr, nonfinite="skip", fast=fast)
    with default_dtype(torch.float64):
        poisoned, clean = make_model(), make_model()
        opt = train(factory, poisoned, lr=case.lr, steps=3)
        clean_opt = train(factory, clean, lr=case.lr, steps=3)
        if fast:
            assert opt._flat is not None  # type: ignore[attr-defined]
            # Every library chain is fused: whole, or around its per-tensor blocks (Adafactor).
            buckets = opt._flat.plans[0].buckets  # type: ignore[attr-defined]
            assert buckets, "the fast path fell back to eager"
        params = list(poisoned.parameters())
        for p in params:
            p.grad = torch.ones_like(p)
        params[2].grad[1, 4] = float("nan")  # type: ignore[index]
        params[3].grad[0] = float("-inf")  # type: ignore[index]
        before = [p.detach().clone() for p in params]
        state = [{k: v.clone() for k, v in opt.state[p].items()} for p in params]
        opt.step()
        assert opt.skipped_steps == 1  # type: ignore[attr-defined]
        for p, p0, s0 in zip(params, before, state, strict=True):
            assert torch.equal(p, p0)
            assert set(opt.state[p]) == set(s0)
            for key, value in s0.items():
                assert torch.equal(opt.state[p][key], value), key
            assert float(opt.state[p]["step"]) == 3.0
        train(factory, poisoned, lr=case.lr, steps=2, start=3, optimizer=opt)
        train(factory, clean, lr=case.lr, steps=2, start=3, optimizer=clean_opt)
    for p, q in zip(poisoned.parameters(), clean.parameters(), strict=True):
        assert torch.equal(p, q)
    for p, q in zip(poisoned.parameters(), clean.parameters(), strict=True):
        for key, value in clean_opt.state[q].items():
            assert torch.equal(opt.state[p][key], value), key


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_one_hyperparameter_reads_as_in_the_whole_mapping(case: OptimizerCase) -> None:
    # The fast path reads the few hyperparameters its kernel needs one by one; every config
    # of every optimizer, with lr as a tensor too, must give what group_hyper gives.
    for config in case.configs:
        for lr in (case.lr, torch.tensor(case.lr)):
            opt = case.ours([torch.nn.Parameter(torch.zeros(3))], **{"lr": lr, **config})
            group = opt.param_groups[0]
            whole = opt.group_hyper(group)
            assert whole, "no hyperparameters read"
            for name, value in whole.items():
                assert opt.group_value(group, name) == value, name
            with pytest.raises(KeyError):
                opt.group_value(group, "no_such_hyperparameter")


@pytest.mark.parametrize("fast", [True, False])
def test_step_hooks_profiler_and_schedulers_see_the_step_as_with_torch(fast: bool) -> None:
    # The step skips torch's hook/profiler wrapper only while nothing uses it: hooks (own and
    # global), a pre-hook's new arguments, the profiler's range and a scheduler's check that
    # the optimizer stepped first must all behave as with torch's own optimizers.
    from torch.optim.optimizer import (
        register_optimizer_step_post_hook,
        register_optimizer_step_pre_hook,
    )

    def calls_for(make: Any) -> list[str]:
        calls: list[str] = []
        p = torch.nn.Parameter(torch.ones(4, dtype=torch.float64))
        opt = make([p])

        def closure() -> torch.Tensor:
            calls.append("closure")
            return torch.tensor(0.0)

        def swap(o: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            calls.append("pre")
            return (args[0], closure), kwargs

        handles = [
            opt.register_step_pre_hook(swap),
            opt.register_step_post_hook(lambda o, a, k: calls.append("post")),
            register_optimizer_step_pre_hook(lambda o, a, k: calls.append("global pre")),
            register_optimizer_step_post_hook(lambda o, a, k: calls.append("global post")),
        ]
        p.grad = torch.ones_like(p)
        opt.step()
        for handle in handles:
            handle.remove()
        p.grad = torch.ones_like(p)
        opt.step()  # no hooks left: nothing recorded
        return calls

    from dltricks.optim.adapter import _needs_torch_wrapper

    plain = ours.Adam([torch.nn.Parameter(torch.ones(4))], lr=0.1, fast=fast)
    assert not _needs_torch_wrapper(plain), "a step with nothing to call would take the wrapper"
    handle = plain.register_step_post_hook(lambda o, a, k: None)
    assert _needs_torch_wrapper(plain)
    handle.remove()

    ours_calls = calls_for(lambda ps: ours.Adam(ps, lr=0.1, fast=fast))
    assert ours_calls == calls_for(lambda ps: torch.optim.Adam(ps, lr=0.1))
    assert ours_calls == ["global pre", "pre", "closure", "post", "global post"]

    p = torch.nn.Parameter(torch.ones(4))
    opt = ours.Adam([p], lr=0.1, fast=fast)
    p.grad = torch.ones_like(p)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        opt.step()
    assert "Optimizer.step#Adam.step" in {event.name for event in prof.events()}

    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when the scheduler steps first
        opt.step()
        scheduler.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
