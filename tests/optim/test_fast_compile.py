"""``torch.compile(optimizer.step)`` and compiled training steps.

A traced dltricks step is one operator in the graph (dltricks.optim.fast.compiled_step): no
graph break in the optimizer, ``fullgraph=True`` works with the default non-finite policy,
nothing recompiles per parameter or per step, and the numbers are those of the plain step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn
from torch._dynamo.testing import CompileCounter

import dltricks.optim as ours
from tests.optim.harness import default_dtype, make_data, make_model

STEPS = 5


def _params() -> list[nn.Parameter]:
    gen = torch.Generator().manual_seed(0)
    return [nn.Parameter(torch.randn(n, generator=gen, dtype=torch.float64)) for n in (300, 40, 7)]


def _set_grads(params: list[nn.Parameter], step: int) -> None:
    gen = torch.Generator().manual_seed(step + 1)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("fast", [True, False])
def test_compiled_step_is_one_graph_without_breaks_and_matches_the_plain_step(fast: bool) -> None:
    plain_params, compiled_params = _params(), _params()
    plain = ours.Adam(plain_params, lr=1e-2, weight_decay=0.1, fast=fast)
    compiled = ours.Adam(compiled_params, lr=1e-2, weight_decay=0.1, fast=fast)
    counter = CompileCounter()
    torch._dynamo.reset()
    step = torch.compile(compiled.step, backend=counter, fullgraph=True)
    for i in range(STEPS):
        _set_grads(plain_params, i)
        _set_grads(compiled_params, i)
        plain.step()
        step()
    assert counter.frame_count == 1, "the compiled step recompiled"
    for p, q in zip(compiled_params, plain_params, strict=True):
        assert torch.equal(p, q)
        for key, value in plain.state[q].items():
            assert torch.equal(compiled.state[p][key], value)
    explained = torch._dynamo.explain(compiled.step)()
    assert explained.graph_break_count == 0


def test_compiled_step_with_inductor_raises_on_a_nonfinite_gradient_and_changes_nothing() -> None:
    params = _params()
    opt = ours.Adam(params, lr=1e-2, fast=True)
    step = torch.compile(opt.step, fullgraph=True)
    _set_grads(params, 0)
    step()
    before = [p.detach().clone() for p in params]
    _set_grads(params, 1)
    params[1].grad[3] = float("nan")  # type: ignore[index]
    with pytest.raises(ours.NonFiniteGradientError):
        step()
    assert all(torch.equal(p, q) for p, q in zip(params, before, strict=True))
    _set_grads(params, 2)
    step()
    assert float(opt.state[params[0]]["step"]) == 2.0


def _training_step(model: nn.Module, opt: torch.optim.Optimizer) -> Callable[..., Any]:
    def train_step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        return loss.detach()

    return train_step


def test_a_compiled_training_step_matches_eager_and_has_no_break_in_the_optimizer() -> None:
    with default_dtype(torch.float64):
        eager_model, compiled_model = make_model(), make_model()
    eager_opt = ours.Adam(eager_model.parameters(), lr=1e-2, fast=True)
    compiled_opt = ours.Adam(compiled_model.parameters(), lr=1e-2, fast=True)
    x, y = make_data()
    eager_step = _training_step(eager_model, eager_opt)
    counter = CompileCounter()
    torch._dynamo.reset()
    compiled_step = torch.compile(_training_step(compiled_model, compiled_opt), backend=counter)
    for i in range(STEPS):
        rows = slice(8 * (i % 4), 8 * (i % 4) + 8)
        torch.testing.assert_close(
            compiled_step(x[rows], y[rows]), eager_step(x[rows], y[rows]), rtol=1e-12, atol=0
        )
    frames_after_warmup = counter.frame_count
    compiled_step(x[:8], y[:8])
    eager_step(x[:8], y[:8])
    assert counter.frame_count == frames_after_warmup, "a later step recompiled"
    # The traced forward and backward may round a gradient's last bit differently.
    for p, q in zip(compiled_model.parameters(), eager_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-15)
    explained = torch._dynamo.explain(_training_step(compiled_model, compiled_opt))(x[:8], y[:8])
    for reason in explained.break_reasons:
        frames = [frame.filename for frame in reason.user_stack]
        assert not any("dltricks" in name for name in frames), reason
