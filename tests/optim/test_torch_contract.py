"""Against torch itself: reloading, older state_dicts, the constructor signature, validation.

Every test runs the same thing through the ``torch.optim`` namesake and compares: the same
reload sequence (load twice, deepcopy, pickle) gives the same trajectory, the same older
state_dict loads into both with the same flags filled in, and the same bad argument raises the
same error type with torch's message.
"""

from __future__ import annotations

import copy
import inspect
import io
import pickle
import re
from typing import Any

import pytest
import torch
from torch import nn

import dltricks.optim as ours
from tests.optim.cases import CASES, OptimizerCase
from tests.optim.harness import default_dtype, make_model, train

NAMESAKES: tuple[OptimizerCase, ...] = tuple(
    case for case in CASES if case.reference is getattr(torch.optim, case.name, None)
)
IMPLEMENTATION_FLAGS = ("foreach", "fused", "capturable", "differentiable")
DTYPES = [torch.float32, torch.float64]
TOLERANCE = {torch.float32: {"rtol": 1e-5, "atol": 1e-6}, torch.float64: {"rtol": 1e-12, "atol": 0}}
PATHS = [False, True]


def _config(case: OptimizerCase) -> dict[str, Any]:
    # The last configuration is the richest (momentum, amsgrad, weight decay...).
    return {"lr": case.lr, **case.configs[-1]}


def _pair(
    case: OptimizerCase, dtype: torch.dtype, fast: bool
) -> tuple[nn.Sequential, torch.optim.Optimizer, nn.Sequential, torch.optim.Optimizer]:
    model, reference_model = make_model(dtype=dtype), make_model(dtype=dtype)
    config = _config(case)
    mine = case.ours(model.parameters(), **config, fast=fast)
    theirs = case.reference(reference_model.parameters(), **config, **case.reference_extra)
    return model, mine, reference_model, theirs


def _assert_close(model: nn.Module, reference: nn.Module, dtype: torch.dtype) -> None:
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b, **TOLERANCE[dtype])


def _pickled(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    # Pickling an optimizer pickles its params too: rebind the copy to the live ones, as
    # accelerate's wrappers do by loading a state_dict into the live optimizer.
    restored: torch.optim.Optimizer = pickle.loads(pickle.dumps(optimizer))
    for copied, live in zip(restored.param_groups, optimizer.param_groups, strict=True):
        copied["params"] = live["params"]
    return restored


def _reload_sequence(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Load twice, then through a deepcopy and a pickled copy, as accelerate and HF do."""
    saved = copy.deepcopy(optimizer.state_dict())
    optimizer.load_state_dict(saved)
    optimizer.load_state_dict(saved)
    duplicate = copy.deepcopy(optimizer)
    duplicate.load_state_dict(saved)
    unpickled = _pickled(optimizer)
    unpickled.load_state_dict(saved)
    optimizer.load_state_dict(unpickled.state_dict())
    return optimizer


#: Reloading does not depend on the dtype: for these, the fast path's reload runs in float64
#: only (their richest configuration is a chain of its own, whose float32 kernel would be
#: compiled for this test alone; their float32 kernels are loaded and stepped by
#: test_load_state and the implementation-flags test).
RELOAD_FAST_FLOAT64_ONLY = {"RAdam", "Rprop", "ASGD"}
RELOAD_PARAMS = [
    pytest.param(case, dtype, fast, id=f"{case.name}-{dtype}-{'fast' if fast else 'eager'}")
    for case in NAMESAKES
    for dtype in DTYPES
    for fast in PATHS
    if not (fast and dtype == torch.float32 and case.name in RELOAD_FAST_FLOAT64_ONLY)
]


@pytest.mark.parametrize(("case", "dtype", "fast"), RELOAD_PARAMS)
def test_reload_load_twice_deepcopy_pickle_continue_as_torch(
    case: OptimizerCase, dtype: torch.dtype, fast: bool
) -> None:
    with default_dtype(dtype):
        model, mine, reference_model, theirs = _pair(case, dtype, fast)
        train(lambda ps: mine, model, lr=case.lr, steps=3, optimizer=mine)
        train(lambda ps: theirs, reference_model, lr=case.lr, steps=3, optimizer=theirs)
        mine = _reload_sequence(mine)
        theirs = _reload_sequence(theirs)
        train(lambda ps: mine, model, lr=case.lr, steps=4, start=3, optimizer=mine)
        train(lambda ps: theirs, reference_model, lr=case.lr, steps=4, start=3, optimizer=theirs)
    _assert_close(model, reference_model, dtype)
    assert mine.defaults["differentiable"] is False


@pytest.mark.parametrize("case", NAMESAKES, ids=lambda c: c.name)
def test_state_dicts_carry_torchs_keys_and_load_both_ways(case: OptimizerCase) -> None:
    model, mine, reference_model, theirs = _pair(case, torch.float64, False)
    with default_dtype(torch.float64):
        train(lambda ps: mine, model, lr=case.lr, steps=2, optimizer=mine)
        train(lambda ps: theirs, reference_model, lr=case.lr, steps=2, optimizer=theirs)
    mine_groups = mine.state_dict()["param_groups"]
    their_groups = theirs.state_dict()["param_groups"]
    assert [set(g) for g in mine_groups] == [set(g) for g in their_groups]
    for saved_mine, saved_theirs in zip(mine_groups, their_groups, strict=True):
        for key in IMPLEMENTATION_FLAGS:
            if key in saved_theirs:
                assert saved_mine[key] == saved_theirs[key], key
    # Each loads the other's checkpoint.
    case.ours(model.parameters(), **_config(case)).load_state_dict(theirs.state_dict())
    copy.deepcopy(theirs).load_state_dict(mine.state_dict())


def _as_older_torch(state_dict: dict[str, Any], flags: list[str]) -> dict[str, Any]:
    """``state_dict`` as an older torch saved it: without ``flags``, step counts as floats."""
    older = copy.deepcopy(state_dict)
    for group in older["param_groups"]:
        for key in flags:
            group.pop(key, None)
    for entry in older["state"].values():
        if "step" in entry:
            entry["step"] = float(entry["step"])
    return older


@pytest.mark.parametrize("fast", PATHS, ids=["eager", "fast"])
@pytest.mark.parametrize("case", NAMESAKES, ids=lambda c: c.name)
def test_an_older_state_dict_without_flags_loads_as_torch_loads_it(
    case: OptimizerCase, fast: bool
) -> None:
    dtype = torch.float64
    with default_dtype(dtype):
        model, mine, reference_model, theirs = _pair(case, dtype, fast)
        train(lambda ps: theirs, reference_model, lr=case.lr, steps=3, optimizer=theirs)
        model.load_state_dict(reference_model.state_dict())
        # Every flag torch's own __setstate__ fills in (found by asking torch which entries it
        # restores), as an older torch would not have saved them.
        saved = theirs.state_dict()
        fillable = [
            key
            for key in saved["param_groups"][0]
            if key != "params"
            and _restores(case, reference_model, saved, key)
            and not (case.name == "RMSprop" and key == "momentum")
        ]
        # torch's Adafactor restores only foreach.
        restored = {"foreach"} if case.name == "Adafactor" else {"maximize", "differentiable"}
        assert {"foreach", *restored} <= set(fillable)
        older = _as_older_torch(saved, fillable)
        theirs.load_state_dict(older)
        mine.load_state_dict(older)
        assert {k: v for k, v in mine.param_groups[0].items() if k != "params"} == {
            k: v for k, v in theirs.param_groups[0].items() if k != "params"
        }
        for p_mine, p_theirs in zip(model.parameters(), reference_model.parameters(), strict=True):
            if "step" in theirs.state[p_theirs]:
                assert isinstance(mine.state[p_mine]["step"], torch.Tensor)
        train(lambda ps: mine, model, lr=case.lr, steps=3, start=3, optimizer=mine)
        train(lambda ps: theirs, reference_model, lr=case.lr, steps=3, start=3, optimizer=theirs)
    _assert_close(model, reference_model, dtype)


def _restores(case: OptimizerCase, model: nn.Module, saved: dict[str, Any], key: str) -> bool:
    probe = case.reference(model.parameters(), **_config(case), **case.reference_extra)
    try:
        probe.load_state_dict(_as_older_torch(saved, [key]))
    except Exception:
        return False
    return key in probe.param_groups[0]


def test_adamw_stays_decoupled_whatever_a_loaded_group_says() -> None:
    p = nn.Parameter(torch.ones(3))
    for cls in (torch.optim.AdamW, ours.AdamW):
        opt = cls([p])
        state = copy.deepcopy(opt.state_dict())
        state["param_groups"][0]["decoupled_weight_decay"] = False
        opt.load_state_dict(state)
        assert opt.param_groups[0]["decoupled_weight_decay"] is True


@pytest.mark.parametrize("case", NAMESAKES, ids=lambda c: c.name)
def test_constructor_signature_is_torchs(case: OptimizerCase) -> None:
    if case.name == "Momentum":
        pytest.skip("Momentum is SGD with other defaults; SGD's row checks the signature")
    theirs = inspect.signature(case.reference.__init__).parameters
    mine = inspect.signature(case.ours.__init__).parameters
    for name, parameter in theirs.items():
        assert name in mine, name
        assert mine[name].kind == parameter.kind, name
        assert mine[name].default == parameter.default, name
    # Positional parameters in torch's order, so positional calls mean the same.
    positional = [inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert [n for n, p in mine.items() if p.kind in positional] == [
        n for n, p in theirs.items() if p.kind in positional
    ]
    # Ours only: the non-finite policy, the path, and (optimizers whose state is moments) the
    # precision of the state.
    assert set(mine) - set(theirs) - {"state_precision"} == {"nonfinite", "fast"}


@pytest.mark.parametrize("fast", PATHS, ids=["eager", "fast"])
@pytest.mark.parametrize("case", NAMESAKES, ids=lambda c: c.name)
def test_torchs_implementation_flags_at_accepted_values_train_as_torch(
    case: OptimizerCase, fast: bool
) -> None:
    accepted = {"foreach": [None, True, False], "fused": [None, False, True]}
    accepted |= {"capturable": [False], "differentiable": [False]}
    signature = inspect.signature(case.reference.__init__).parameters
    for flag in IMPLEMENTATION_FLAGS:
        if flag not in signature:
            continue
        for value in accepted[flag]:
            model, reference_model = make_model(), make_model()
            mine = case.ours(model.parameters(), **_config(case), **{flag: value}, fast=fast)
            theirs = case.reference(
                reference_model.parameters(), **_config(case), **case.reference_extra
            )
            with default_dtype(torch.float64):
                train(lambda ps, o=mine: o, model, lr=case.lr, steps=3, optimizer=mine)
                train(
                    lambda ps, o=theirs: o, reference_model, lr=case.lr, steps=3, optimizer=theirs
                )
            _assert_close(model, reference_model, torch.float64)
            assert mine.param_groups[0][flag] == value


UNSUPPORTED: list[tuple[str, Any, str]] = [
    ("capturable", True, r"capturable=True is not supported .* pass capturable=False"),
    ("differentiable", True, r"differentiable=True is not supported .* differentiable=False"),
]


@pytest.mark.parametrize(("flag", "value", "match"), UNSUPPORTED, ids=[u[0] for u in UNSUPPORTED])
@pytest.mark.parametrize("case", NAMESAKES, ids=lambda c: c.name)
def test_a_flag_value_we_cannot_honour_is_a_clear_value_error(
    case: OptimizerCase, flag: str, value: Any, match: str
) -> None:
    if flag not in inspect.signature(case.reference.__init__).parameters:
        with pytest.raises(TypeError):
            case.ours([nn.Parameter(torch.ones(2))], **{flag: value})
        return
    with pytest.raises(ValueError, match=match):
        case.ours([nn.Parameter(torch.ones(2))], **{flag: value})
    # The same refusal when a loaded group asks for it, and the optimizer is unchanged.
    opt = case.ours([nn.Parameter(torch.ones(2))])
    state = copy.deepcopy(opt.state_dict())
    state["param_groups"][0][flag] = value
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(state)
    assert opt.param_groups[0][flag] != value


BAD_HYPERPARAMETERS: dict[str, list[dict[str, Any]]] = {
    "SGD": [{"lr": -1.0}, {"momentum": -0.5}, {"weight_decay": -1}, {"nesterov": True}],
    "Adagrad": [{"lr": -1.0}, {"lr_decay": -0.5}, {"initial_accumulator_value": -1}, {"eps": -1}],
    "RMSprop": [{"lr": -1.0}, {"eps": -1.0}, {"momentum": -1.0}, {"alpha": -0.1}],
    "Adam": [{"lr": -1}, {"betas": (1.0, 0.0)}, {"betas": (0.9, 1.0)}, {"eps": -1}],
    "AdamW": [{"weight_decay": -1}, {"betas": (0.9, torch.tensor(0.99))}],
    "Adamax": [{"lr": -1.0}, {"betas": (0.9, 1.0)}, {"eps": -1.0}],
    "NAdam": [{"betas": (1.0, 0.9)}, {"momentum_decay": -0.2}, {"weight_decay": -1}],
    "Adadelta": [{"lr": -1.0}, {"rho": 1.1}, {"eps": -1}],
    "Momentum": [],
    "Adafactor": [
        {"lr": -1.0},
        {"beta2_decay": 0.5},
        {"eps": (-1.0, 1e-3)},
        {"eps": (None, -1.0)},
        {"d": 0.5},
        {"weight_decay": -1.0},
    ],
    "RAdam": [{"lr": -1}, {"betas": (1.0, 0.0)}, {"eps": -1}, {"weight_decay": -1}],
    "Rprop": [{"lr": -1.0}, {"etas": (1.0, 0.5)}, {"etas": (0.5, 1.0)}],
    "ASGD": [{"lr": -1.0}, {"weight_decay": -0.5}],
}


def _error_of(factory: Any) -> BaseException:
    try:
        factory()
    except Exception as error:
        return error
    raise AssertionError("no error raised")


@pytest.mark.parametrize("case", NAMESAKES, ids=lambda c: c.name)
def test_bad_hyperparameters_raise_torchs_error_before_params_are_read(
    case: OptimizerCase,
) -> None:
    for kwargs in BAD_HYPERPARAMETERS[case.name]:
        # params=None: torch checks hyperparameters first, so the error is about them.
        expected = _error_of(lambda kw=kwargs: case.reference(None, **kw))
        got = _error_of(lambda kw=kwargs: case.ours(None, **kw))
        assert type(got) is type(expected), (kwargs, got)
        assert re.search(re.escape(str(expected)), str(got)), (str(expected), str(got))


def test_our_checkpoint_loads_after_torch_save_with_weights_only() -> None:
    model = make_model()
    opt = ours.AdamW(model.parameters(), lr=1e-2)
    with default_dtype(torch.float64):
        train(lambda ps: opt, model, lr=1e-2, steps=2, optimizer=opt)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    fresh = ours.AdamW(model.parameters(), lr=1e-2)
    fresh.load_state_dict(loaded)
    fresh.load_state_dict(loaded)
    assert fresh.param_groups[0]["differentiable"] is False
