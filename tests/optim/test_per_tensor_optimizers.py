"""Muon against ``torch.optim.Muon``, and Muon and Adafactor on torch's own ``optim_db`` inputs.

Muon takes only 2-D parameters, so it has a table of its own here (the shared table's model
has biases), run through the same harness: float64, 1e-10 relative, both paths, two param
groups, a scheduler, a closure, a state_dict round trip in both directions. Newton-Schulz runs
in bfloat16 in both implementations with the same operations, so the orthogonalised update is
the same bits, and everything else is float64.
"""

from __future__ import annotations

import copy
import re
from functools import partial
from typing import Any

import pytest
import torch
from torch import nn

import dltricks.optim as ours
from tests.optim.harness import VARIANTS, default_dtype, param_groups, train
from tests.optim.test_optim_db import _as_older_torch, _raised
from tests.optim.test_torch_contract import _reload_sequence

TOLERANCE = 1e-10
LR = 0.02
MUON_CONFIGS: tuple[dict[str, Any], ...] = (
    {},
    {"nesterov": False},
    {"momentum": 0.8, "weight_decay": 0.3},
    {"adjust_lr_fn": "match_rms_adamw"},
    {"adjust_lr_fn": "original", "ns_steps": 3, "ns_coefficients": (3.4, -4.7, 2.0)},
)
# torch keeps a Tensor lr as the tensor (float32 here) and computes ``1 - lr * weight_decay``
# and the shape-scaled lr in its dtype; we compute in float64 (the lr's value is the same).
FLOAT32_LR_TOLERANCE = 1e-6


def matrix_model(seed: int = 0) -> nn.Sequential:
    """The harness's network without biases: every parameter is a matrix (one tall, one
    wide, so both of Newton-Schulz's orientations and the shape factor are exercised)."""
    generator = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 8, bias=False), nn.Tanh(), nn.Linear(8, 3, bias=False))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * 0.5)
    return model


def _assert_close(model: nn.Module, reference: nn.Module, tolerance: float = TOLERANCE) -> None:
    moved = False
    for p, q, start in zip(
        model.parameters(), reference.parameters(), matrix_model().parameters(), strict=True
    ):
        scale = float(q.detach().abs().max())
        torch.testing.assert_close(p, q, rtol=0, atol=tolerance * scale)
        moved |= not torch.equal(q, start)
    assert moved, "the reference never moved"


def _config_id(config: dict[str, Any]) -> str:
    return "-".join(f"{k}={v}" for k, v in sorted(config.items())) or "default"


# bfloat16 matmuls are slow on small CPU matrices (about a millisecond each, for both
# implementations): a short run, the fast path on the default configuration and two groups.
STEPS = 12


@pytest.mark.parametrize(
    ("config", "variant", "path"),
    [pytest.param(c, "plain", "eager", id=_config_id(c)) for c in MUON_CONFIGS]
    + [pytest.param({}, v, "eager", id=f"default-{v}") for v in VARIANTS if v != "plain"]
    + [pytest.param({}, v, "fast", id=f"default-{v}-fast") for v in ("plain", "two_groups")]
    # Every matrix scaled (s != 1 for the wide one too): the fast path's in-buffer scaling.
    + [pytest.param(MUON_CONFIGS[3], "plain", "fast", id="match_rms_adamw-plain-fast")],
)
def test_muon_matches_torch_in_float64(config: dict[str, Any], variant: str, path: str) -> None:
    config = {"lr": LR, **config}
    lr = float(config["lr"])
    with default_dtype(torch.float64):
        mine_model, their_model = matrix_model(), matrix_model()
        mine = train(
            partial(ours.Muon, fast=path == "fast", **config),
            mine_model,
            variant=variant,
            lr=lr,
            steps=STEPS,
        )
        theirs = train(
            partial(torch.optim.Muon, **config), their_model, variant=variant, lr=lr, steps=STEPS
        )
    _assert_close(mine_model, their_model)
    if path == "fast":
        assert mine._flat is not None  # type: ignore[attr-defined]
        # Segmented: the momentum and the step fused around Newton-Schulz (per matrix).
        assert mine._flat.plans[0].buckets, "the fast path fell back to eager"  # type: ignore[attr-defined]
    for p, q in zip(mine_model.parameters(), their_model.parameters(), strict=True):
        ours_buffer, their_buffer = (
            mine.state[p]["momentum_buffer"],
            theirs.state[q]["momentum_buffer"],
        )
        scale = float(their_buffer.abs().max())
        torch.testing.assert_close(ours_buffer, their_buffer, rtol=0, atol=TOLERANCE * scale)


def test_muon_state_dict_round_trips_with_torch() -> None:
    with default_dtype(torch.float64):
        mine_model, their_model = matrix_model(), matrix_model()
        groups = partial(param_groups, variant="two_groups", lr=LR)
        mine = ours.Muon(groups(mine_model), lr=LR)
        theirs = torch.optim.Muon(groups(their_model), lr=LR)
        train(lambda ps: mine, mine_model, lr=LR, steps=3, optimizer=mine)
        train(lambda ps: theirs, their_model, lr=LR, steps=3, optimizer=theirs)
        mine, theirs = _reload_sequence(mine), _reload_sequence(theirs)
        # Each continues from the other's checkpoint (torch's has no step count).
        from_theirs = ours.Muon(groups(mine_model), lr=LR)
        from_theirs.load_state_dict(copy.deepcopy(theirs.state_dict()))
        from_mine = torch.optim.Muon(groups(their_model), lr=LR)
        from_mine.load_state_dict(copy.deepcopy(mine.state_dict()))
        train(lambda ps: from_theirs, mine_model, lr=LR, steps=3, start=3, optimizer=from_theirs)
        train(lambda ps: from_mine, their_model, lr=LR, steps=3, start=3, optimizer=from_mine)
    _assert_close(mine_model, their_model)


@pytest.mark.parametrize(
    ("kwargs", "params", "message"),
    [
        ({"lr": -1.0}, None, "Learning rate should be >= 0 but is: -1.0"),
        ({"momentum": -0.1}, None, "momentum should be >= 0 but is: -0.1"),
        ({"weight_decay": -1.0}, None, "weight decay should be >= 0 but is: -1.0"),
        ({"adjust_lr_fn": "other"}, None, "Adjust learning rate function other is not supported"),
        ({}, [nn.Parameter(torch.zeros(3))], "Muon only supports 2D parameters"),
    ],
)
def test_muon_refuses_what_torch_refuses_with_its_message(
    kwargs: dict[str, Any], params: Any, message: str
) -> None:
    for cls in (torch.optim.Muon, ours.Muon):
        with pytest.raises(ValueError, match=re.escape(message)):
            cls(params if params is not None else [nn.Parameter(torch.zeros(2, 2))], **kwargs)


def test_muon_refuses_what_a_step_could_not_do() -> None:
    p = nn.Parameter(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="Number of steps must be less than 100"):
        ours.Muon([p], ns_steps=100)
    with pytest.raises(ValueError, match="Coefficients must be a tuple of exactly 3 values"):
        ours.Muon([p], ns_coefficients=(1.0, 2.0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="nesterov must be True or False"):
        ours.Muon([p], nesterov=1)  # type: ignore[arg-type]


# -- torch's optim_db inputs ------------------------------------------------------------------

common = pytest.importorskip("torch.testing._internal.common_optimizers")
INFOS = {info.optim_cls.__name__: info for info in common.optim_db}
NAMES = ("Muon", "Adafactor")
MODELS = {"Muon": matrix_model}


def _optim_db_configs() -> list[Any]:
    return [
        pytest.param(name, config, id=f"{name}-{config.desc}")
        for name in NAMES
        for config in INFOS[name].optim_inputs_func(device="cpu", dtype=torch.float64)
    ]


@pytest.mark.parametrize(("name", "config"), _optim_db_configs())
def test_optim_db_configs_match_torch_through_reload_and_older_state(
    name: str, config: Any
) -> None:
    info = INFOS[name]
    kwargs = dict(config.kwargs)
    tolerance = FLOAT32_LR_TOLERANCE if isinstance(kwargs.get("lr"), torch.Tensor) else 1e-9
    lr = float(kwargs.get("lr", 1e-3))
    make = MODELS.get(name, matrix_model_with_biases)
    with default_dtype(torch.float64):
        mine_model, their_model = make(), make()
        mine = getattr(ours, name)(param_groups(mine_model, "two_groups", lr), **kwargs)
        theirs = info.optim_cls(param_groups(their_model, "two_groups", lr), **kwargs)
        for model, opt in ((mine_model, mine), (their_model, theirs)):
            train(lambda ps, o=opt: o, model, lr=lr, steps=4, optimizer=opt)
        _assert_same(mine_model, their_model, tolerance)
        mine, theirs = _reload_sequence(mine), _reload_sequence(theirs)
        for model, opt in ((mine_model, mine), (their_model, theirs)):
            train(lambda ps, o=opt: o, model, lr=lr, steps=3, start=4, optimizer=opt)
        _assert_same(mine_model, their_model, tolerance)
        older = _as_older_torch(theirs.state_dict(), info.not_og_supported_flags)
        fresh_mine = getattr(ours, name)(param_groups(mine_model, "two_groups", lr), **kwargs)
        fresh_theirs = info.optim_cls(param_groups(their_model, "two_groups", lr), **kwargs)
        fresh_theirs.load_state_dict(older)
        fresh_mine.load_state_dict(copy.deepcopy(older))
        for model, opt in ((mine_model, fresh_mine), (their_model, fresh_theirs)):
            train(lambda ps, o=opt: o, model, lr=lr, steps=3, start=7, optimizer=opt)
        _assert_same(mine_model, their_model, tolerance)


def matrix_model_with_biases() -> nn.Sequential:
    """The harness's model (Adafactor takes vectors as well as matrices)."""
    from tests.optim.harness import make_model

    return make_model()


def _assert_same(model: nn.Module, reference: nn.Module, tolerance: float) -> None:
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=tolerance, atol=1e-12)


def _optim_db_errors() -> list[Any]:
    return [
        pytest.param(name, error, id=f"{name}-{error.optimizer_error_input.desc}")
        for name in NAMES
        for error in INFOS[name].optim_error_inputs_func(device="cpu", dtype=torch.float32)
    ]


@pytest.mark.parametrize(("name", "error"), _optim_db_errors())
def test_optim_db_error_inputs_raise_torchs_error(name: str, error: Any) -> None:
    given = error.optimizer_error_input
    at_step = error.error_on == common.OptimizerErrorEnum.STEP_ERROR

    def attempt(cls: Any) -> None:
        opt = cls(given.params, **given.kwargs)
        if at_step:
            opt.step()

    for cls in (INFOS[name].optim_cls, getattr(ours, name)):
        raised = _raised(lambda c=cls: attempt(c), error.error_type)
        assert raised is not None, f"{cls.__module__}.{cls.__name__} raised nothing"
        assert type(raised) is error.error_type, (cls, raised)
        assert re.search(error.error_regex, str(raised)), (cls, str(raised))
