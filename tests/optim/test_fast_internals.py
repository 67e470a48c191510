"""Every private torch API the fast path uses has a public fallback that gives the same step.

Each test removes one private API (or makes its accessor in
``dltricks.optim.fast.torch_internals`` report it missing), checks that the accessor falls
back, and trains on the fast path against the eager path.
"""

from __future__ import annotations

import sys
import types
from collections import OrderedDict
from typing import Any

import pytest
import torch
import torch.autograd.profiler

import dltricks.optim as ours
from dltricks.optim.fast import kernel, torch_internals
from tests.optim.harness import default_dtype, make_model, max_relative_difference, train


def _fast_against_eager() -> Any:
    """Train the same model on both paths (float64 Adam); the fast path's first bucket."""
    with default_dtype(torch.float64):
        fast_model, eager_model = make_model(), make_model()
        fast_opt = train(lambda ps: ours.Adam(ps, lr=1e-2, fast=True), fast_model, lr=1e-2, steps=6)
        train(lambda ps: ours.Adam(ps, lr=1e-2, fast=False), eager_model, lr=1e-2, steps=6)
    assert max_relative_difference(fast_model, eager_model) < 1e-10
    flat = fast_opt._flat  # type: ignore[attr-defined]
    assert flat is not None
    assert flat.plans[0].buckets, "the fast path was not taken"
    assert flat.plans[0].buckets[0].fused.failure is None
    return flat.plans[0].buckets[0]


@pytest.fixture
def fresh_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh kernel cache, so the update is traced under the patched torch."""
    monkeypatch.setattr(kernel, "_CACHE", OrderedDict())


def _without_module_attribute(monkeypatch: pytest.MonkeyPatch, module: str, name: str) -> None:
    """Make ``from module import name`` fail, as on a torch without it, for the accessor's
    import only (torch itself still needs the real one, so it is restored afterwards)."""
    stand_in = types.ModuleType(module)
    monkeypatch.setitem(sys.modules, module, stand_in)


@pytest.mark.usefixtures("fresh_kernels")
def test_without_global_state_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        _without_module_attribute(patch, "torch._C._dynamo.guards", "GlobalStateGuard")
        assert torch_internals.dynamo_global_state() is None
    monkeypatch.setattr(torch_internals, "dynamo_global_state", lambda: None)
    bucket = _fast_against_eager()
    assert not bucket._bound.direct


@pytest.mark.usefixtures("fresh_kernels")
def test_without_compile_fx(monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        _without_module_attribute(patch, "torch._inductor.compile_fx", "compile_fx")
        assert torch_internals.inductor_compile_fx() is None
    monkeypatch.setattr(torch_internals, "inductor_compile_fx", lambda: None)
    bucket = _fast_against_eager()
    assert not bucket._bound.direct


@pytest.mark.usefixtures("fresh_kernels")
def test_without_placeholder_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch_internals, "placeholder_example", lambda node: None)
    bucket = _fast_against_eager()
    assert not bucket._bound.direct


@pytest.mark.usefixtures("fresh_kernels")
def test_when_the_compiled_graph_cannot_be_called_directly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert not torch_internals.calls_unboxed(None)
    monkeypatch.setattr(torch_internals, "calls_unboxed", lambda compiled: False)
    bucket = _fast_against_eager()
    assert not bucket._bound.direct


def test_without_global_optimizer_hook_dicts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(sys.modules["torch.optim.optimizer"], "_global_optimizer_pre_hooks")
    assert torch_internals.optimizer_hook_dicts() is None
    calls: list[int] = []
    monkeypatch.setattr(
        "dltricks.optim.adapter._step_in_torch_wrapper",
        _counting(calls, ours.ComposedOptimizer._plain_step),
    )
    _fast_against_eager()
    assert calls, "the step did not fall back to torch's wrapper"


def test_without_the_profiler_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:  # torch's compiler reads it too: removed briefly
        patch.delattr(torch.autograd.profiler, "_is_profiler_enabled")
        assert torch_internals.profiler_enabled()
    monkeypatch.setattr(torch_internals, "profiler_enabled", lambda: True)
    calls: list[int] = []
    monkeypatch.setattr(
        "dltricks.optim.adapter._step_in_torch_wrapper",
        _counting(calls, ours.ComposedOptimizer._plain_step),
    )
    _fast_against_eager()
    assert calls, "the step did not fall back to torch's wrapper"


def test_without_dtensor() -> None:
    assert not torch_internals.is_distributed_tensor(torch.zeros(2))


def _counting(calls: list[int], step: Any) -> Any:
    def counted(optimizer: Any, closure: Any = None) -> Any:
        calls.append(1)
        return step(optimizer, closure)

    return counted


def test_the_kernel_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernel, "_CACHE", OrderedDict())
    monkeypatch.setattr(kernel, "CACHE_SIZE", 3)
    undeclared = ours.stateless("undeclared", lambda u, param, hyper: u)
    for key in range(5):
        assert isinstance(kernel.fused_update_for(key, undeclared, {}), str)
    assert list(kernel._CACHE) == [2, 3, 4]
