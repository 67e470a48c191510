"""What the table-driven tests cannot say about RAdam, Rprop, ASGD, AdaBelief and Schedule-Free
AdamW: Schedule-Free's train()/eval() switch against schedulefree's, the refusals of inputs
their references take silently, and the pytorch-optimizer and schedulefree signatures."""

from __future__ import annotations

import copy
import inspect
from typing import Any

import pytest
import pytorch_optimizer
import schedulefree
import torch
from torch import nn

import dltricks.optim as ours
from tests.optim.cases import TrainingAdamWScheduleFree, TrainingScheduleFreeAdamW
from tests.optim.harness import default_dtype, make_data, make_model, train


def _assert_same(model: nn.Module, reference: nn.Module) -> None:
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        scale = float(b.detach().abs().max())
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10 * scale)


@pytest.mark.parametrize("fast", [False, True], ids=["eager", "fast"])
def test_schedule_free_train_eval_switch_matches_schedulefree(fast: bool) -> None:
    """Train, eval (the parameters become x), evaluate, save, train again: as schedulefree."""
    kwargs = {"lr": 1e-2, "warmup_steps": 5, "weight_decay": 0.01}
    with default_dtype(torch.float64):
        mine_model, their_model = make_model(), make_model()
        mine = TrainingScheduleFreeAdamW(mine_model.parameters(), fast=fast, **kwargs)
        theirs = TrainingAdamWScheduleFree(their_model.parameters(), **kwargs)
        for model, opt in ((mine_model, mine), (their_model, theirs)):
            train(lambda ps, o=opt: o, model, lr=1e-2, steps=20, optimizer=opt)
        _assert_same(mine_model, their_model)
        trained_y = [p.detach().clone() for p in mine_model.parameters()]
        mine.eval()
        theirs.eval()
        _assert_same(mine_model, their_model)
        assert not all(
            torch.equal(p, y) for p, y in zip(mine_model.parameters(), trained_y, strict=True)
        ), "eval() did not move the parameters to x"
        mine.eval()  # a second eval() changes nothing, as in schedulefree
        _assert_same(mine_model, their_model)
        x, _ = make_data()
        assert torch.allclose(mine_model(x), their_model(x), rtol=1e-10, atol=1e-12)
        mine.train()
        theirs.train()
        for p, y_before in zip(mine_model.parameters(), trained_y, strict=True):
            torch.testing.assert_close(p, y_before, rtol=1e-12, atol=1e-14)
        for model, opt in ((mine_model, mine), (their_model, theirs)):
            train(lambda ps, o=opt: o, model, lr=1e-2, steps=10, start=20, optimizer=opt)
        _assert_same(mine_model, their_model)
        assert mine.param_groups[0]["train_mode"] is True


def test_schedule_free_refuses_a_step_in_eval_mode_and_round_trips_its_mode() -> None:
    model = make_model()
    opt = ours.ScheduleFreeAdamW(model.parameters())
    model(torch.randn(2, 6, dtype=torch.float64)).sum().backward()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(RuntimeError, match=r"eval mode: call optimizer.train\(\)"):
        opt.step()
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))
    opt.train()
    opt.step()
    opt.eval()
    saved = copy.deepcopy(opt.state_dict())
    fresh = ours.ScheduleFreeAdamW(model.parameters())
    fresh.load_state_dict(saved)
    assert fresh.param_groups[0]["train_mode"] is False
    assert {"z", "exp_avg_sq", "weight_sum", "lr_max", "step"} == set(fresh.state[model[0].weight])


def test_schedule_free_signature_and_group_keys_are_schedulefrees() -> None:
    theirs = inspect.signature(schedulefree.AdamWScheduleFree.__init__).parameters
    mine = inspect.signature(ours.ScheduleFreeAdamW.__init__).parameters
    for name, parameter in theirs.items():
        assert name in mine, name
        assert mine[name].default == parameter.default, name
    assert list(mine)[: len(theirs)] == list(theirs)
    group = ours.ScheduleFreeAdamW([nn.Parameter(torch.ones(2))]).param_groups[0]
    assert group["train_mode"] is False


def test_adabelief_signature_and_defaults_are_pytorch_optimizers() -> None:
    theirs = inspect.signature(pytorch_optimizer.AdaBelief.__init__).parameters
    mine = inspect.signature(ours.AdaBelief.__init__).parameters
    positional = [n for n, p in theirs.items() if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert [n for n in mine if n in positional] == positional
    assert list(mine)[: len(positional)] == positional
    for name in positional:
        assert mine[name].default == theirs[name].default, name


BAD_INPUTS: list[tuple[Any, dict[str, Any], str]] = [
    (ours.AdaBelief, {"rectify": True}, r"rectify=True .* not supported .* rectify=False"),
    (ours.AdaBelief, {"eps": -1.0}, r"Invalid epsilon value: -1.0"),
    (ours.AdaBelief, {"betas": (0.9, 1.0)}, r"beta parameter at index 1"),
    (ours.AdaBelief, {"weight_decouple": 1}, r"weight_decouple must be True or False"),
    (ours.ScheduleFreeAdamW, {"betas": (0.0, 0.999)}, r"needs beta1 > 0"),
    (ours.ScheduleFreeAdamW, {"warmup_steps": -1}, r"Invalid warmup_steps value: -1"),
    (ours.ScheduleFreeAdamW, {"weight_lr_power": float("nan")}, r"must be finite"),
    (ours.Rprop, {"step_sizes": (1.0, 0.1)}, r"step_size_min must be <= step_size_max"),
    (ours.Rprop, {"step_sizes": (-1.0, 0.1)}, r"Invalid step_sizes\[0\] value"),
    (ours.Rprop, {"etas": (0.5,)}, r"etas must be a pair"),
    (ours.ASGD, {"lambd": -0.1}, r"Invalid lambd value: -0.1"),
    (ours.ASGD, {"alpha": -1.0}, r"Invalid alpha value"),
    (ours.RAdam, {"decoupled_weight_decay": "yes"}, r"decoupled_weight_decay must be True"),
]


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"), BAD_INPUTS, ids=[f"{c.__name__}-{k}" for c, k, _ in BAD_INPUTS]
)
def test_bad_inputs_are_refused_naming_the_argument(
    cls: Any, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        cls([nn.Parameter(torch.ones(2))], **kwargs)


def test_asgd_average_and_rprop_step_sizes_read_as_torch() -> None:
    """State names and meaning: ASGD's ``ax`` is the average of the iterates after ``t0``."""
    param = nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = ours.ASGD([param], lr=0.1, t0=0)
    iterates = []
    for _ in range(4):
        param.grad = torch.ones(3, dtype=torch.float64)
        opt.step()
        iterates.append(param.detach().clone())
    # t0 = 0: mu_t = 1 / max(1, t), so ax copies theta_1 and theta_2, then averages from
    # theta_2 on: after 4 steps it is the mean of theta_2, theta_3, theta_4.
    expected = torch.stack(iterates[1:]).mean(0)
    assert set(opt.state[param]) == {"step", "eta", "mu", "ax"}
    torch.testing.assert_close(opt.state[param]["ax"], expected, rtol=1e-12, atol=0)
    rprop = ours.Rprop([param], lr=0.5)
    param.grad = torch.ones(3, dtype=torch.float64)
    rprop.step()
    assert set(rprop.state[param]) == {"step", "prev", "step_size"}
    torch.testing.assert_close(rprop.state[param]["step_size"], torch.full_like(param, 0.5))
