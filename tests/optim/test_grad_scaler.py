"""GradScaler's fused protocol (``grad_scale``/``found_inf``), against torch's fused optimizers.

torch's fused Adam, AdamW, SGD and Adagrad tell ``torch.amp.GradScaler`` that their step reads
the scale and the inf flag (``_step_supports_amp_scaling``); the scaler then sets them on the
optimizer instead of unscaling in a pass of its own. Ours say the same. A step with
``found_inf`` set changes nothing (parameters, state, step counts, gradients); otherwise it
unscales every gradient in place and steps. Compared here with torch's fused kernels, which
exist on CPU for these four. As in torch, only ``fused=True`` says so: Lightning, for one,
refuses gradient clipping with an optimizer that unscales by itself.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import nn

import dltricks.optim as ours
from tests.optim.harness import make_data, make_model

FUSED: list[tuple[str, dict[str, Any]]] = [
    ("Adam", {"lr": 1e-2, "weight_decay": 0.1}),
    ("AdamW", {"lr": 1e-2, "amsgrad": True}),
    ("SGD", {"lr": 0.05, "momentum": 0.9}),
    ("Adagrad", {"lr": 0.05}),
]
IDS = [name for name, _ in FUSED]
INF_AT = 3  # the step at which a gradient overflows


def _train_with_scaler(opt: torch.optim.Optimizer, model: nn.Module, steps: int = 7) -> list[float]:
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=2)
    x, y = make_data(dtype=torch.float32)
    scales = []
    for i in range(steps):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x[i % 4 * 8 : i % 4 * 8 + 8]), y[:8])
        if i == INF_AT:
            loss = loss * float("inf")
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        scales.append(scaler.get_scale())
    return scales


@pytest.mark.parametrize("fast", [False, True], ids=["eager", "fast"])
@pytest.mark.parametrize(("name", "config"), FUSED, ids=IDS)
def test_grad_scaler_steps_as_with_torchs_fused_optimizer(
    name: str, config: dict[str, Any], fast: bool
) -> None:
    mine_model, their_model = make_model(dtype=torch.float32), make_model(dtype=torch.float32)
    mine = getattr(ours, name)(mine_model.parameters(), **config, fused=True, fast=fast)
    theirs = getattr(torch.optim, name)(their_model.parameters(), **config, fused=True)
    assert mine._step_supports_amp_scaling is theirs._step_supports_amp_scaling is True  # type: ignore[attr-defined]
    scales_mine = _train_with_scaler(mine, mine_model)
    scales_theirs = _train_with_scaler(theirs, their_model)
    assert scales_mine == scales_theirs
    for a, b in zip(mine_model.parameters(), their_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        # Gradients are left unscaled in place, as the fused kernels leave them.
        assert a.grad is not None
        assert b.grad is not None
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6)
    for p_mine, p_theirs in zip(mine_model.parameters(), their_model.parameters(), strict=True):
        if "step" in theirs.state[p_theirs]:  # the overflowing step was not counted
            assert float(mine.state[p_mine]["step"]) == float(theirs.state[p_theirs]["step"])
            assert float(theirs.state[p_theirs]["step"]) == 6.0


@pytest.mark.parametrize("fast", [False, True], ids=["eager", "fast"])
@pytest.mark.parametrize(("name", "config"), FUSED, ids=IDS)
def test_step_keywords_follow_torchs_fused_attributes(
    name: str, config: dict[str, Any], fast: bool
) -> None:
    mine_model, their_model = make_model(dtype=torch.float32), make_model(dtype=torch.float32)
    mine = getattr(ours, name)(mine_model.parameters(), **config, fast=fast)
    theirs = getattr(torch.optim, name)(their_model.parameters(), **config, fused=True)
    x, y = make_data(dtype=torch.float32)
    scale = torch.tensor(8.0)
    for step, inf in enumerate([0.0, 0.0, 1.0, 0.0]):
        for model, opt in ((mine_model, mine), (their_model, theirs)):
            opt.zero_grad()
            (nn.functional.mse_loss(model(x[:8]), y[:8]) * scale).backward()
        before = copy.deepcopy((mine_model.state_dict(), mine.state_dict()))
        grads_before = [p.grad.clone() for p in mine_model.parameters()]  # type: ignore[union-attr]
        mine.step(grad_scale=scale, found_inf=torch.tensor(inf))
        theirs.grad_scale, theirs.found_inf = scale, torch.tensor(inf)  # type: ignore[attr-defined]
        theirs.step()
        for a, b in zip(mine_model.parameters(), their_model.parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6)
        if inf:  # nothing changed, the gradients stay scaled
            for a, b in zip(mine_model.state_dict().values(), before[0].values(), strict=True):
                assert torch.equal(a, b)
            for index, entry in mine.state_dict()["state"].items():
                for key, value in entry.items():
                    assert torch.equal(value, before[1]["state"][index][key]), key
            for p, g in zip(mine_model.parameters(), grads_before, strict=True):
                assert torch.equal(p.grad, g)  # type: ignore[arg-type]
            assert step == 2


def test_an_unscaled_optimizer_under_grad_scaler_steps_as_torchs_unfused_one() -> None:
    """After ``scaler.unscale_`` (to clip), the scaler passes no scale, only the inf flag."""
    mine_model, their_model = make_model(dtype=torch.float32), make_model(dtype=torch.float32)
    mine = ours.Adam(mine_model.parameters(), lr=1e-2)
    theirs = torch.optim.Adam(their_model.parameters(), lr=1e-2)
    x, y = make_data(dtype=torch.float32)
    for model, opt in ((mine_model, mine), (their_model, theirs)):
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
        for i in range(4):
            opt.zero_grad()
            scaler.scale(nn.functional.mse_loss(model(x[i : i + 8]), y[i : i + 8])).backward()
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(model.parameters(), 0.5)
            scaler.step(opt)
            scaler.update()
    for a, b in zip(mine_model.parameters(), their_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("name", "config"), FUSED, ids=IDS)
def test_only_fused_optimizers_take_over_the_unscale_as_in_torch(
    name: str, config: dict[str, Any]
) -> None:
    params = list(make_model(dtype=torch.float32).parameters())
    for fused in (None, False, True):
        mine = getattr(ours, name)(params, **config, fused=fused)
        theirs = getattr(torch.optim, name)(params, **config, fused=fused)
        assert getattr(mine, "_step_supports_amp_scaling", False) == getattr(
            theirs, "_step_supports_amp_scaling", False
        )
        assert mine.fast is (True if fused else None)
        assert copy.deepcopy(mine)._step_supports_amp_scaling is bool(fused)
    with pytest.raises(RuntimeError, match="`fused` and `foreach` cannot be `True` together"):
        getattr(ours, name)(params, **config, fused=True, foreach=True)
