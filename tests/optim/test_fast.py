"""The fused fast path: same numbers as torch, gradients in place, no recompilation, faults.

Parity of every optimizer on the fast path is in test_parity.py; these tests check what only
the fast path has: flat buffers, gradient bindings, parameters that lag behind, recompilation,
state_dict round trips and fallbacks. They reuse the kernels that test_parity compiles (Adam,
NAdam, SGD in float64) so that they cost little compilation.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import nn

import dltricks.optim as ours
from dltricks.optim import blocks as b
from dltricks.optim.base import Hyper
from tests.optim.harness import default_dtype, make_data, make_model, train

TOLERANCE = 1e-10


def _flat(opt: torch.optim.Optimizer) -> Any:
    flat = opt._flat  # type: ignore[attr-defined]
    assert flat is not None, "the fast path was not taken"
    return flat


def _continue(
    opt: torch.optim.Optimizer, model: nn.Sequential, *, steps: int, start: int = 0
) -> None:
    """``steps`` more training steps of ``model`` with its existing optimizer (lr 1e-2)."""
    train(lambda ps: opt, model, lr=1e-2, steps=steps, start=start, optimizer=opt)


@contextlib.contextmanager
def _compile_calls(fused: Any) -> Iterator[list[int]]:
    """Count the calls that go through torch.compile's entry point while inside."""
    calls: list[int] = []
    real = fused._fn

    def counted(*args: Any) -> None:
        calls.append(len(args))
        real(*args)

    fused._fn = counted
    try:
        yield calls
    finally:
        fused._fn = real


def _assert_close_models(a: nn.Module, ref: nn.Module, tol: float = TOLERANCE) -> None:
    for p, q in zip(a.parameters(), ref.parameters(), strict=True):
        scale = float(q.detach().abs().max().clamp_min(1e-12))
        torch.testing.assert_close(p.detach(), q.detach(), rtol=0, atol=tol * scale)


def test_gradients_land_in_the_flat_buffer_without_a_copy() -> None:
    with default_dtype(torch.float64):
        model = make_model()
        opt = ours.Adam(model.parameters(), lr=1e-2, fast=True)
        train(lambda ps: opt, model, lr=1e-2, steps=2, optimizer=opt)
        bucket = _flat(opt).plans[0].buckets[0]
        x, y = make_data()
        for _ in range(3):
            opt.zero_grad()
            assert all(p.grad is None for p in model.parameters()), "zero_grad kept a gradient"
            assert bucket.grad_buf is None, "zero_grad kept the gradient buffer"
            nn.functional.mse_loss(model(x[:8]), y[:8]).backward()
            buf = bucket.grad_buf
            assert buf is not None
            lo, hi = buf.data_ptr(), buf.data_ptr() + buf.nbytes
            for p in model.parameters():
                assert p.grad is not None
                assert lo <= p.grad.data_ptr() < hi
            opt.step()
    for p in model.parameters():
        assert (
            bucket.param_buf.data_ptr()
            <= p.data_ptr()
            < bucket.param_buf.data_ptr() + (bucket.param_buf.nbytes)
        )
        state, moments = opt.state[p], bucket.state_bufs["exp_avg"]
        lo, hi = moments.data_ptr(), moments.data_ptr() + moments.nbytes
        assert lo <= state["exp_avg"].data_ptr() < hi


def _partly_used_run(
    make_opt: Callable[[Any], torch.optim.Optimizer], reset: str, steps: int = 24
) -> tuple[nn.Module, torch.optim.Optimizer]:
    """Train a model whose middle layer is used only on some steps (its grads stay absent)."""
    gen = torch.Generator().manual_seed(3)
    model = nn.ModuleList([nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 3)]).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.5)
    x, y = make_data()
    opt = make_opt(model.parameters())
    for i in range(steps):
        if reset == "optimizer":
            opt.zero_grad()
        elif reset == "model":
            model.zero_grad()  # sets grads to None: the next backward makes new tensors
        h = torch.tanh(model[0](x[i % 4 * 8 : i % 4 * 8 + 8]))
        if i % 3 == 0:  # the middle layer joins one step in three
            h = torch.tanh(model[1](h))
        loss = nn.functional.mse_loss(model[2](h), y[i % 4 * 8 : i % 4 * 8 + 8])
        if reset == "assign":
            for p, g in zip(
                model.parameters(),
                torch.autograd.grad(loss, list(model.parameters()), allow_unused=True),
                strict=True,
            ):
                p.grad = g
        else:
            loss.backward()
        opt.step()
    return model, opt


@pytest.mark.parametrize("reset", ["optimizer", "model", "assign"])
@pytest.mark.parametrize("name", ["Adam", "NAdam"])
def test_parameters_without_gradient_are_skipped_like_torch(name: str, reset: str) -> None:
    """Absent gradients: no update, no state advance; the lagging parameters run apart."""
    with default_dtype(torch.float64):  # torch keeps NAdam's mu_product in the default dtype
        fast, fast_opt = _partly_used_run(
            lambda ps: getattr(ours, name)(ps, lr=1e-2, fast=True), reset
        )
        ref, ref_opt = _partly_used_run(lambda ps: getattr(torch.optim, name)(ps, lr=1e-2), reset)
    _assert_close_models(fast, ref)
    for p, q in zip(fast.parameters(), ref.parameters(), strict=True):
        assert float(fast_opt.state[p]["step"]) == float(ref_opt.state[q]["step"])
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(
                fast_opt.state[p][key], ref_opt.state[q][key], rtol=1e-9, atol=1e-14
            )
    assert _flat(fast_opt).plans[0].buckets, "the fast path fell back to eager"


def test_zero_grad_without_set_to_none_updates_every_parameter_like_torch() -> None:
    fast = _partly_used_run_zero_false(lambda ps: ours.Adam(ps, lr=1e-2, fast=True))
    ref = _partly_used_run_zero_false(lambda ps: torch.optim.Adam(ps, lr=1e-2))
    _assert_close_models(fast, ref)


def _partly_used_run_zero_false(make_opt: Callable[[Any], torch.optim.Optimizer]) -> nn.Module:
    gen = torch.Generator().manual_seed(3)
    model = nn.ModuleList([nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 3)]).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.5)
    x, y = make_data()
    opt = make_opt(model.parameters())
    for i in range(12):
        opt.zero_grad(set_to_none=False)
        h = torch.tanh(model[0](x[:8]))
        if i < 2:  # the middle layer gets gradients twice, then zeros that still count
            h = torch.tanh(model[1](h))
        nn.functional.mse_loss(model[2](h), y[:8]).backward()
        opt.step()
    return model


@pytest.mark.parametrize("set_to_none", [False, True])
def test_parameters_that_never_got_a_gradient_are_never_moved_like_torch(
    set_to_none: bool,
) -> None:
    """AdamW with weight decay: a layer first reached at step 4 and a layer never reached
    are left exactly as torch leaves them (no decay, no moments, no step count)."""

    def run(make_opt: Callable[[Any], torch.optim.Optimizer]) -> tuple[nn.Module, Any]:
        gen = torch.Generator().manual_seed(5)
        model = nn.ModuleList([nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 3), nn.Linear(3, 3)])
        model = model.double()
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.5)
        x, y = make_data()
        opt = make_opt(model.parameters())
        for i in range(8):
            opt.zero_grad(set_to_none=set_to_none)
            h = torch.tanh(model[0](x[:8]))
            if i >= 4:
                h = torch.tanh(model[1](h))
            nn.functional.mse_loss(model[2](h), y[:8]).backward()
            opt.step()
        return model, opt

    with default_dtype(torch.float64):
        fast, fast_opt = run(lambda ps: ours.AdamW(ps, lr=1e-2, weight_decay=0.5, fast=True))
        ref, ref_opt = run(lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.5))
    assert _flat(fast_opt).plans[0].buckets, "the fast path fell back to eager"
    _assert_close_models(fast, ref)
    for p, q in zip(fast.parameters(), ref.parameters(), strict=True):
        mine, theirs = fast_opt.state[p], ref_opt.state[q]
        assert sorted(mine) == sorted(theirs)
        if theirs:
            assert float(mine["step"]) == float(theirs["step"])
        assert (p.grad is None) == (q.grad is None)
    never = list(fast[3].parameters())
    assert all(p.grad is None and not fast_opt.state[p] for p in never)


def test_autograd_grad_leaves_gradients_none_and_parameters_unmoved_like_torch() -> None:
    """torch.autograd.grad runs the parameters' tensor hooks but accumulates nothing: the next
    step sees no gradient, as torch's does."""

    def run(make: Callable[[Any], torch.optim.Optimizer]) -> tuple[nn.Module, Any]:
        with default_dtype(torch.float64):
            model = make_model()
        x, y = make_data()
        opt = make(model.parameters())
        for i in range(4):
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(x[:8]), y[:8])
            if i == 2:  # a gradient norm, say, taken without accumulating
                torch.autograd.grad(loss, list(model.parameters()))
            else:
                loss.backward()
            opt.step()
            if i == 2:
                assert all(p.grad is None for p in model.parameters())
        return model, opt

    fast, fast_opt = run(lambda ps: ours.AdamW(ps, lr=1e-2, weight_decay=0.5, fast=True))
    ref, ref_opt = run(lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.5))
    assert _flat(fast_opt).plans[0].buckets
    _assert_close_models(fast, ref)
    for p, q in zip(fast.parameters(), ref.parameters(), strict=True):
        assert float(fast_opt.state[p]["step"]) == float(ref_opt.state[q]["step"]) == 3.0


def test_state_dict_round_trip_continues_bit_identically_on_the_fast_path() -> None:
    def factory(ps: Any) -> torch.optim.Optimizer:
        return ours.NAdam(ps, lr=1e-2, fast=True)

    with default_dtype(torch.float64):
        uninterrupted = make_model()
        train(factory, uninterrupted, lr=1e-2, steps=30)
        first = make_model()
        opt = train(factory, first, lr=1e-2, steps=15)
        buffer = io.BytesIO()
        torch.save({"model": first.state_dict(), "optim": opt.state_dict()}, buffer)
        buffer.seek(0)
        saved = torch.load(buffer)
        resumed = make_model(seed=5)
        resumed.load_state_dict(saved["model"])
        new_opt = factory(resumed.parameters())
        new_opt.load_state_dict(saved["optim"])
        train(factory, resumed, lr=1e-2, steps=15, start=15, optimizer=new_opt)
    for a, b_ in zip(resumed.parameters(), uninterrupted.parameters(), strict=True):
        assert torch.equal(a, b_)
    bucket = _flat(new_opt).plans[0].buckets[0]
    p = next(resumed.parameters())
    assert new_opt.state[p]["exp_avg"].untyped_storage().data_ptr() == (
        bucket.state_bufs["exp_avg"].untyped_storage().data_ptr()
    ), "load_state_dict did not re-flatten the state"


def test_torch_state_loads_into_the_fast_path_mid_run() -> None:
    """Load torch's Adam state after 10 steps, load it again mid-run; continue like torch."""
    with default_dtype(torch.float64):
        ref, fast = make_model(), make_model()
        ref_opt = train(lambda ps: torch.optim.Adam(ps, lr=1e-2), ref, lr=1e-2, steps=10)
        fast.load_state_dict(ref.state_dict())
        fast_opt = ours.Adam(fast.parameters(), lr=1e-2, fast=True)
        fast_opt.load_state_dict(ref_opt.state_dict())
        train(lambda ps: fast_opt, fast, lr=1e-2, steps=10, start=10, optimizer=fast_opt)
        train(lambda ps: ref_opt, ref, lr=1e-2, steps=10, start=10, optimizer=ref_opt)
        fast_opt.load_state_dict(ref_opt.state_dict())
        with torch.no_grad():
            for p, q in zip(fast.parameters(), ref.parameters(), strict=True):
                p.copy_(q)
        train(lambda ps: fast_opt, fast, lr=1e-2, steps=10, start=20, optimizer=fast_opt)
        train(lambda ps: ref_opt, ref, lr=1e-2, steps=10, start=20, optimizer=ref_opt)
    _assert_close_models(fast, ref)


def test_no_recompilation_for_lr_changes_steps_or_new_groups() -> None:
    with default_dtype(torch.float64):
        model, other = make_model(), make_model(seed=4)
        opt = ours.Adam(
            [{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 3e-3}],
            lr=1e-2,
            fast=True,
        )
        scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
        x, y = make_data()
        step_losses = []

        def one_step(net: nn.Module) -> None:
            opt.zero_grad()
            loss = nn.functional.mse_loss(net(x[:8]), y[:8])
            loss.backward()
            opt.step()
            scheduler.step()
            step_losses.append(loss.item())

        one_step(model)  # compiles (or finds the kernel another test compiled)
        fused = _flat(opt).plans[0].buckets[0].fused
        compiled = fused.compilations
        with torch._dynamo.config.patch(error_on_recompile=True):
            for _ in range(6):
                one_step(model)
            opt.add_param_group({"params": other.parameters(), "lr": 1e-3})
            for _ in range(3):
                one_step(model)
                nn.functional.mse_loss(other(x[:8]), y[:8]).backward()
    assert opt.param_groups[0]["lr"] < 1e-2
    assert len(_flat(opt).plans) == 3
    assert fused.compilations == compiled, "a step compiled a new graph"


@pytest.mark.parametrize("name", ["Adam", "NAdam"])
def test_the_usual_step_calls_the_compiled_kernel_without_dynamo(name: str) -> None:
    # Once a bucket's whole-buffer call has gone through torch.compile, later steps call the
    # compiled code directly; a scheduler's lr changes still reach it (the hyperparameter
    # tensors are refilled in place). Checked against the eager path, with the calls to
    # dynamo's entry point counted after the first step. NAdam has scalar state.
    with default_dtype(torch.float64):
        fast_model, eager_model = make_model(), make_model()
        fast_opt = getattr(ours, name)(fast_model.parameters(), lr=1e-2, fast=True)
        eager_opt = getattr(ours, name)(eager_model.parameters(), lr=1e-2, fast=False)
        for opt, model in ((fast_opt, fast_model), (eager_opt, eager_model)):
            _continue(opt, model, steps=1)
        fused = _flat(fast_opt).plans[0].buckets[0].fused
        with _compile_calls(fused) as calls:
            for opt, model in ((fast_opt, fast_model), (eager_opt, eager_model)):
                scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
                for start in range(1, 10):
                    _continue(opt, model, steps=1, start=start)
                    scheduler.step()
    assert calls == [], "a step went through torch.compile"
    _assert_close_models(fast_model, eager_model)
    for p, q in zip(fast_model.parameters(), eager_model.parameters(), strict=True):
        assert float(fast_opt.state[p]["step"]) == float(eager_opt.state[q]["step"]) == 10.0


def test_a_change_of_torch_global_state_goes_back_through_torch_compile() -> None:
    # Dynamo guards torch's global state (default dtype, threads, autocast...): the direct
    # call checks it too, and lets torch.compile decide when it changed.
    with default_dtype(torch.float64):
        fast_model, eager_model = make_model(), make_model()
        fast_opt = ours.Adam(fast_model.parameters(), lr=1e-2, fast=True)
        eager_opt = ours.Adam(eager_model.parameters(), lr=1e-2, fast=False)
        for opt, model in ((fast_opt, fast_model), (eager_opt, eager_model)):
            _continue(opt, model, steps=2)
        fused = _flat(fast_opt).plans[0].buckets[0].fused
        with _compile_calls(fused) as calls:
            for opt, model in ((fast_opt, fast_model), (eager_opt, eager_model)):
                _continue(opt, model, steps=1, start=2)
            assert calls == []
            with default_dtype(torch.float32):
                for opt, model in ((fast_opt, fast_model), (eager_opt, eager_model)):
                    _continue(opt, model, steps=1, start=3)
            assert len(calls) == 1
    _assert_close_models(fast_model, eager_model)


def test_a_users_chain_keeps_the_guard_checks_of_torch_compile() -> None:
    # A user's block may read a Python value that changes between steps; only dynamo's
    # guards notice, so such chains are never called past them.
    scale = {"value": 1.0}

    def update(g: torch.Tensor, param: torch.Tensor, hyper: Hyper) -> torch.Tensor:
        return g * scale["value"]

    block = ours.stateless("scale_by_global", update, elementwise=True)
    chain = ours.chain(block, b.scale_by_learning_rate())
    with default_dtype(torch.float64):
        p = nn.Parameter(torch.zeros(40))
        opt = ours.ChainOptimizer([p], chain, lr=1.0, fast=True)
        for value in (1.0, 3.0):
            scale["value"] = value
            p.grad = torch.ones(40)
            opt.step()
    bucket = _flat(opt).plans[0].buckets[0]
    assert bucket._bound is not None
    assert not bucket._bound.direct, "a user's chain was called past dynamo's guards"
    assert torch.equal(p.detach(), torch.full((40,), -4.0))


@pytest.mark.parametrize("fast", [True, False])
def test_a_step_between_forward_and_backward_is_caught_by_autograd(fast: bool) -> None:
    # torch's optimizers change parameters in place, so autograd refuses a backward through
    # a graph that saved them; the fast path writes through its buffers and must say so too.
    p = nn.Parameter(torch.randn(40_000, dtype=torch.float64))
    opt = ours.SGD([p], lr=0.1, fast=fast)
    p.grad = torch.ones_like(p)
    opt.step()
    loss = (p * p).sum()
    opt.step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


@pytest.mark.parametrize("policy", ["raise", "skip"])
def test_nonfinite_gradient_leaves_fast_state_untouched(policy: str) -> None:
    with default_dtype(torch.float64):
        model = make_model()
        opt = ours.Adam(model.parameters(), lr=1e-2, nonfinite=policy, fast=True)  # type: ignore[arg-type]
        train(lambda ps: opt, model, lr=1e-2, steps=3, optimizer=opt)
        params = list(model.parameters())
        for p in params:
            assert p.grad is not None
            p.grad.fill_(1.0)
        params[1].grad[0] = float("inf")  # type: ignore[index]
        before = [p.detach().clone() for p in params]
        state = [{k: v.clone() for k, v in opt.state[p].items()} for p in params]
        if policy == "raise":
            with pytest.raises(ours.NonFiniteGradientError, match="parameter 1"):
                opt.step()
        else:
            opt.step()
            assert opt.skipped_steps == 1
    for p, p0, s0 in zip(params, before, state, strict=True):
        assert torch.equal(p, p0)
        for key, value in s0.items():
            assert torch.equal(opt.state[p][key], value), key


def test_nonfinite_ignore_on_the_fast_path_behaves_like_torch() -> None:
    with default_dtype(torch.float64):
        model = make_model()
        opt = ours.Adam(model.parameters(), lr=1e-2, nonfinite="ignore", fast=True)
        train(lambda ps: opt, model, lr=1e-2, steps=2, optimizer=opt)
        first = next(model.parameters())
        assert first.grad is not None
        first.grad[0, 0] = float("nan")
        opt.step()
    assert torch.isnan(first).any()


def test_switches_choose_the_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def stepped(**kwargs: Any) -> torch.optim.Optimizer:
        with default_dtype(torch.float64):
            model = make_model()
            opt = ours.Adam(model.parameters(), lr=1e-2, **kwargs)
            train(lambda ps: opt, model, lr=1e-2, steps=2, optimizer=opt)
        return opt

    assert stepped(fast=False)._flat is None  # type: ignore[attr-defined]
    # A tiny model stays eager in automatic mode: compiling would not pay off.
    assert not _flat(stepped()).plans[0].buckets
    monkeypatch.setenv("DLTRICKS_FAST", "1")
    assert _flat(stepped()).plans[0].buckets
    monkeypatch.setenv("DLTRICKS_FAST", "0")
    assert stepped(fast=True)._flat is None  # type: ignore[attr-defined]
    monkeypatch.setenv("DLTRICKS_FAST", "maybe")
    with pytest.raises(ValueError, match="DLTRICKS_FAST"):
        stepped()
    with pytest.raises(ValueError, match="fast must be"):
        ours.Adam([nn.Parameter(torch.ones(2))], fast="yes")  # type: ignore[arg-type]


def test_turning_the_fast_path_off_mid_run_keeps_torch_semantics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast_switch = _partly_used_run_switching(monkeypatch, lambda ps: ours.Adam(ps, lr=1e-2))
    ref = _partly_used_run_switching(None, lambda ps: torch.optim.Adam(ps, lr=1e-2))
    _assert_close_models(fast_switch, ref)


def _partly_used_run_switching(
    monkeypatch: pytest.MonkeyPatch | None, make_opt: Callable[[Any], torch.optim.Optimizer]
) -> nn.Module:
    if monkeypatch is not None:
        monkeypatch.setenv("DLTRICKS_FAST", "1")
    model, opt = _partly_used_run(make_opt, reset="optimizer", steps=7)
    if monkeypatch is not None:
        monkeypatch.setenv("DLTRICKS_FAST", "0")
    x, y = make_data()
    for _ in range(3):
        opt.zero_grad()
        nn.functional.mse_loss(model[2](torch.tanh(model[0](x[:8]))), y[:8]).backward()
        opt.step()
    return model


def test_float32_fast_and_eager_paths_agree() -> None:
    """float32: the compiled kernel rounds like the eager ops; the gap stays at a few ulp."""
    worst = {}
    for name in ("Adam",):
        models = []
        for fast in (True, False):
            model = make_model(dtype=torch.float32)
            cls = getattr(ours, name)
            train(lambda ps, f=fast, c=cls: c(ps, lr=1e-2, fast=f), model, lr=1e-2)
            models.append(model)
        worst[name] = max(
            float(((p - q).abs().max() / q.abs().max()).detach())
            for p, q in zip(models[0].parameters(), models[1].parameters(), strict=True)
        )
    assert max(worst.values()) < 1e-5, worst


def _normalised(hyper_name: str = "lr") -> ours.Transform:
    """A block that reads a norm: not elementwise, so it cannot run over a flat buffer."""

    def update(u: torch.Tensor, param: torch.Tensor, hyper: Hyper) -> torch.Tensor:
        return u / (u.norm() + 1e-12)

    return ours.stateless("normalised", update)


def test_a_chain_that_is_not_elementwise_falls_back_to_eager() -> None:
    chain = ours.chain(_normalised(), b.scale_by_learning_rate())
    with default_dtype(torch.float64):
        fast_model, eager_model = make_model(), make_model()
        with pytest.warns(RuntimeWarning, match="not elementwise"):
            train(lambda ps: ours.ChainOptimizer(ps, chain, lr=0.1, fast=True), fast_model, lr=0.1)
        train(lambda ps: ours.ChainOptimizer(ps, chain, lr=0.1, fast=False), eager_model, lr=0.1)
    for p, q in zip(fast_model.parameters(), eager_model.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "dtype"), [("AdamW", torch.bfloat16), ("Adam", torch.float16)])
def test_half_precision_parameters_are_fused_with_float32_math_like_torch_fused(
    name: str, dtype: torch.dtype
) -> None:
    """bf16/fp16 parameters on the fast path compute in float32 and round once, as torch's
    fused kernels do: the same numbers up to the narrow dtype's last bit."""

    def run(make: Callable[[list[nn.Parameter]], torch.optim.Optimizer]) -> Any:
        gen = torch.Generator().manual_seed(0)
        params = [nn.Parameter(torch.randn(n, generator=gen).to(dtype)) for n in (3000, 1000, 37)]
        wide = nn.Parameter(torch.randn(500, generator=gen, dtype=torch.float64))
        opt = make([*params, wide])
        for step in range(8):
            gen = torch.Generator().manual_seed(step + 1)
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen).to(dtype)
            wide.grad = torch.randn(wide.shape, generator=gen, dtype=torch.float64)
            opt.step()
        return params, wide, opt

    kwargs = {"lr": 1e-2, "weight_decay": 0.1}
    mine, mine_wide, opt = run(lambda ps: getattr(ours, name)(ps, fast=True, **kwargs))
    ref, ref_wide, ref_opt = run(lambda ps: getattr(torch.optim, name)(ps, fused=True, **kwargs))
    buckets = _flat(opt).plans[0].buckets
    assert sorted(str(bucket.param_buf.dtype) for bucket in buckets) == sorted(
        [str(dtype), "torch.float64"]
    )
    assert not _flat(opt).plans[0].eager
    for p, q in zip(mine, ref, strict=True):
        assert p.dtype == dtype
        ulp = torch.finfo(dtype).eps * q.detach().float().abs().clamp_min(1.0)
        gap = (p.detach().float() - q.detach().float()).abs()
        assert bool((gap <= ulp).all()), f"more than one {dtype} ulp apart: {gap.max()}"
        assert float((gap > 0).float().mean()) < 0.01, "rounding differs on many elements"
        for key in ("exp_avg", "exp_avg_sq"):
            assert opt.state[p][key].dtype == dtype
            torch.testing.assert_close(opt.state[p][key], ref_opt.state[q][key])
    torch.testing.assert_close(mine_wide.detach(), ref_wide.detach(), rtol=1e-12, atol=1e-14)


def test_a_model_moved_after_steps_is_laid_out_again() -> None:
    with default_dtype(torch.float64):
        fast, ref = make_model(), make_model()
        fast_opt = ours.Adam(fast.parameters(), lr=1e-2, fast=True)
        ref_opt = torch.optim.Adam(ref.parameters(), lr=1e-2)
        train(lambda ps: fast_opt, fast, lr=1e-2, steps=4, optimizer=fast_opt)
        train(lambda ps: ref_opt, ref, lr=1e-2, steps=4, optimizer=ref_opt)
        # Module._apply replaces p.data: the bucket notices and copies everything again.
        for p in fast.parameters():
            p.data = p.data.clone()
        train(lambda ps: fast_opt, fast, lr=1e-2, steps=4, start=4, optimizer=fast_opt)
        train(lambda ps: ref_opt, ref, lr=1e-2, steps=4, start=4, optimizer=ref_opt)
    _assert_close_models(fast, ref)


def test_a_copied_optimizer_keeps_its_policies_and_lays_out_its_own_buffers() -> None:
    with default_dtype(torch.float64):
        model = make_model()
        opt = ours.Adam(model.parameters(), lr=1e-2, nonfinite="skip", fast=True)
        train(lambda ps: opt, model, lr=1e-2, steps=2, optimizer=opt)
        twin = copy.deepcopy(opt)
        assert twin.nonfinite == "skip"
        assert twin.fast is True
        assert twin._flat is None  # type: ignore[attr-defined]
        twin_params = [p for g in twin.param_groups for p in g["params"]]
        before = [p.detach().clone() for p in model.parameters()]
        for p in twin_params:
            p.grad = torch.ones_like(p)
        twin.step()
    assert all(not torch.equal(p, q) for p, q in zip(twin_params, before, strict=True))
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))


def _warmup_by_branch() -> ours.Transform:
    """Python control flow on the step count: fine eagerly, not traceable into one graph."""

    def update(u: torch.Tensor, param: torch.Tensor, hyper: Hyper) -> torch.Tensor:
        return u * 0.1 if hyper["step"] <= 3 else u

    return ours.stateless("warmup_by_branch", update, elementwise=True)


def test_a_chain_that_does_not_compile_falls_back_to_eager() -> None:
    chain = ours.chain(_warmup_by_branch(), b.scale_by_learning_rate())
    with default_dtype(torch.float64):
        fast_model, eager_model = make_model(), make_model()
        with pytest.warns(RuntimeWarning, match="fast path unavailable"):
            train(lambda ps: ours.ChainOptimizer(ps, chain, lr=0.1, fast=True), fast_model, lr=0.1)
        train(lambda ps: ours.ChainOptimizer(ps, chain, lr=0.1, fast=False), eager_model, lr=0.1)
    for p, q in zip(fast_model.parameters(), eager_model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_frozen_parameters_get_no_state_buffers() -> None:
    with default_dtype(torch.float64):
        model = make_model()
        model[0].weight.requires_grad_(False)
        opt = ours.Adam(model.parameters(), lr=1e-2, fast=True)
        train(lambda ps: opt, model, lr=1e-2, steps=2, optimizer=opt)
    plan = _flat(opt).plans[0]
    assert [p is model[0].weight for p in plan.eager] == [True]
    assert len(opt.state[model[0].weight]) == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["Adam", "NAdam", "SGD"])
def test_the_fast_path_on_cuda_matches_the_eager_path(name: str) -> None:
    # On CUDA the kernel counts steps in a device scratch vector and the CPU step buffer is
    # counted apart; parameters missing a gradient at a step make partial runs.
    with default_dtype(torch.float64):
        fast_model, eager_model = make_model().cuda(), make_model().cuda()
        fast_opt = getattr(ours, name)(fast_model.parameters(), lr=1e-2, fast=True)
        eager_opt = getattr(ours, name)(eager_model.parameters(), lr=1e-2, fast=False)
        x, y = (t.cuda() for t in make_data())
        for step in range(6):
            for opt, model in ((fast_opt, fast_model), (eager_opt, eager_model)):
                opt.zero_grad()
                nn.functional.mse_loss(model(x[:8]), y[:8]).backward()
                if step == 3:
                    model[0].bias.grad = None
                opt.step()
    assert _flat(fast_opt).plans[0].buckets
    _assert_close_models(fast_model, eager_model)
    for p, q in zip(fast_model.parameters(), eager_model.parameters(), strict=True):
        assert float(fast_opt.state[p]["step"]) == float(eager_opt.state[q]["step"])


def _saved_bytes(obj: Any) -> int:
    out = io.BytesIO()
    torch.save(obj, out)
    return len(out.getvalue())


def test_saving_part_of_a_model_writes_only_that_part_like_torch() -> None:
    with default_dtype(torch.float64):
        fast, ref = make_model(), make_model()
        fast_opt = ours.Adam(fast.parameters(), lr=1e-2, fast=True)
        ref_opt = torch.optim.Adam(ref.parameters(), lr=1e-2)
        train(lambda ps: fast_opt, fast, lr=1e-2, steps=3, optimizer=fast_opt)
        train(lambda ps: ref_opt, ref, lr=1e-2, steps=3, optimizer=ref_opt)
    _flat(fast_opt)
    # The same file size as the same layer of a model that torch's optimizer trained.
    for i in range(len(fast)):
        if list(fast[i].parameters()):
            assert _saved_bytes(fast[i].state_dict()) == _saved_bytes(ref[i].state_dict())
    weight = fast[0].weight
    assert _saved_bytes(fast_opt.state[weight]) == _saved_bytes(ref_opt.state[ref[0].weight])
    # What was saved loads back to the parameter's values, apart from the optimizer's buffers.
    buffer = io.BytesIO()
    torch.save(fast[0].state_dict(), buffer)
    buffer.seek(0)
    loaded = torch.load(buffer)
    assert torch.equal(loaded["weight"], weight.detach())
    assert loaded["weight"].untyped_storage().nbytes() == weight.numel() * weight.element_size()


def test_weights_loaded_into_the_model_mid_run_are_what_the_next_step_reads() -> None:
    with default_dtype(torch.float64):
        fast, ref = make_model(), make_model()
        fast_opt = ours.Adam(fast.parameters(), lr=1e-2, fast=True)
        ref_opt = torch.optim.Adam(ref.parameters(), lr=1e-2)
        train(lambda ps: fast_opt, fast, lr=1e-2, steps=3, optimizer=fast_opt)
        train(lambda ps: ref_opt, ref, lr=1e-2, steps=3, optimizer=ref_opt)
        other = make_model()
        torch.manual_seed(7)
        for p in other.parameters():
            p.data.normal_()
        fast.load_state_dict(other.state_dict())
        ref.load_state_dict(other.state_dict())
        train(lambda ps: fast_opt, fast, lr=1e-2, steps=3, start=3, optimizer=fast_opt)
        train(lambda ps: ref_opt, ref, lr=1e-2, steps=3, start=3, optimizer=ref_opt)
    _assert_close_models(fast, ref)
