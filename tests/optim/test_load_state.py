"""load_state_dict: a state that does not fit is refused clearly; one that fits loads as in torch.

A refused load raises ValueError naming the group, parameter or entry at fault, and leaves the
optimizer exactly as it was: the same state tensors with the same values, the same groups, and
(on the fast path) the same flat buffers, so that training continues bit-identically to a run
that never tried the load. A state that fits is cast to the parameters' dtype as torch casts it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
import torch
from torch import nn

import dltricks.optim as ours
from tests.optim.cases import CASES, OptimizerCase
from tests.optim.harness import default_dtype, make_model, param_groups, train

StateDict = dict[str, Any]


def _adam(ps: Any, **kw: Any) -> torch.optim.Optimizer:
    return ours.Adam(ps, **{"lr": 1e-2, **kw})


def _trained_state(
    factory: Callable[[Any], torch.optim.Optimizer],
    model: nn.Module | None = None,
    variant: str = "plain",
) -> StateDict:
    model = model if model is not None else make_model(seed=7)
    opt = factory(param_groups(model, variant, 1e-2))  # type: ignore[arg-type]
    train(lambda ps: opt, model, lr=1e-2, steps=3, optimizer=opt)  # type: ignore[arg-type]
    return copy.deepcopy(opt.state_dict())


def _without(key: str, group: int = 0, param: int = 1) -> Callable[[], StateDict]:
    def make() -> StateDict:
        state = _trained_state(_adam)
        index = state["param_groups"][group]["params"][param]
        del state["state"][index][key]
        return state

    return make


def _edited(edit: Callable[[StateDict], None]) -> Callable[[], StateDict]:
    def make() -> StateDict:
        state = _trained_state(_adam)
        edit(state)
        return state

    return make


def _other_shapes() -> StateDict:
    model = make_model(seed=7)
    model[0].weight = nn.Parameter(model[0].weight.detach().t().contiguous())
    opt = _adam(model.parameters())
    for _ in range(2):
        opt.zero_grad()
        sum((p**2).sum() for p in model.parameters()).backward()  # type: ignore[union-attr]
        opt.step()
    return copy.deepcopy(opt.state_dict())


@dataclass(frozen=True)
class BadLoad:
    name: str
    make: Callable[[], Any]
    match: str


BAD_LOADS: tuple[BadLoad, ...] = (
    BadLoad("not-a-dict", lambda: [1, 2], r"expects a dict with 'state' and 'param_groups'.*list"),
    BadLoad("none", lambda: None, r"expects a dict.*NoneType"),
    BadLoad("no-param-groups", lambda: {"state": {}}, r"has 'state' \(a dict\) and 'param_groups'"),
    BadLoad(
        "other-class-adagrad",
        lambda: _trained_state(lambda ps: ours.Adagrad(ps, lr=1e-2)),
        r"param group 0 of the loaded state_dict lacks betas: .*another optimizer than Adam",
    ),
    BadLoad(
        "other-class-torch-adagrad",
        lambda: _trained_state(lambda ps: torch.optim.Adagrad(ps, lr=1e-2)),
        r"param group 0 .* lacks betas",
    ),
    BadLoad(
        "other-class-lion",
        lambda: _trained_state(lambda ps: ours.Lion(ps, lr=1e-2)),
        r"param group 0 of the loaded state_dict lacks eps: it was saved by another optimizer",
    ),
    BadLoad(
        "other-class-adamax-state",
        _edited(
            lambda s: [
                v.update(exp_inf=v.pop("exp_avg_sq")) for v in s["state"].values()
            ]  # Adamax's state under Adam's groups
        ),
        r"param group 0, parameter 0 \(shape \(8, 6\)\) lacks exp_avg_sq and has unexpected "
        r"exp_inf: Adam with these options keeps exp_avg, exp_avg_sq, step",
    ),
    BadLoad(
        "missing-exp_avg_sq",
        _without("exp_avg_sq"),
        r"parameter 1 \(shape \(8,\)\) lacks exp_avg_sq",
    ),
    BadLoad("missing-step", _without("step", param=3), r"parameter 3 \(shape \(3,\)\) lacks step"),
    BadLoad(
        "amsgrad-without-max",
        _edited(lambda s: s["param_groups"][0].update(amsgrad=True)),
        r"lacks max_exp_avg_sq",
    ),
    BadLoad(
        "other-shapes",
        _other_shapes,
        r"'exp_avg' of param group 0, parameter 0 .* has shape "
        r"\(6, 8\), expected shape \(8, 6\)",
    ),
    BadLoad(
        "scalar-where-tensor",
        _edited(lambda s: s["state"][2].update(exp_avg=torch.tensor(0.5, dtype=torch.float64))),
        r"'exp_avg' of param group 0, parameter 2 .* has shape \(\), expected shape \(3, 8\)",
    ),
    BadLoad(
        "vector-step",
        _edited(lambda s: s["state"][0].update(step=torch.ones(3))),
        r"'step' of param group 0, parameter 0 .* expected a scalar",
    ),
    BadLoad(
        "list-not-tensor",
        _edited(lambda s: s["state"][1].update(exp_avg=[0.0] * 8)),
        r"'exp_avg' of param group 0, parameter 1 .* is a list, not a tensor",
    ),
    BadLoad(
        "integer-state",
        _edited(lambda s: s["state"][1].update(exp_avg=torch.zeros(8, dtype=torch.int64))),
        r"'exp_avg' .* dtype torch.int64; floating state expected",
    ),
    BadLoad(
        "state-not-a-dict",
        _edited(lambda s: s["state"].update({1: torch.zeros(8)})),
        r"state of param group 0, parameter 1 .* is a Tensor, not a dict",
    ),
    BadLoad(
        "state-of-unknown-param",
        _edited(lambda s: s["state"].update({99: {}})),
        r"state for parameter id 99, which no param group lists",
    ),
    BadLoad(
        "two-groups-into-one",
        lambda: _trained_state(_adam, variant="two_groups"),
        r"the loaded state_dict has 2 param groups, this Adam has 1",
    ),
    BadLoad(
        "params-per-group",
        _edited(lambda s: s["param_groups"][0]["params"].pop()),
        r"param group 0 of the loaded state_dict has 3 parameters, this Adam's has 4",
    ),
    BadLoad(
        "invalid-hyperparameter",
        _edited(lambda s: s["param_groups"][0].update(lr=-1.0)),
        r"param group 0 of the loaded state_dict: Invalid learning rate: -1\.0: lr must be >= 0",
    ),
    BadLoad(
        "step-nan",
        _edited(lambda s: s["state"][0].update(step=torch.tensor(float("nan")))),
        r"state 'step' of param group 0, parameter 0 .* is nan: a step count is a whole number",
    ),
    BadLoad(
        "step-negative",
        _edited(lambda s: s["state"][1].update(step=torch.tensor(-2.0))),
        r"state 'step' of param group 0, parameter 1 .* is -2\.0: a step count",
    ),
    BadLoad(
        "step-fractional",
        _edited(lambda s: s["state"][2].update(step=torch.tensor(2.5))),
        r"state 'step' of param group 0, parameter 2 .* is 2\.5: a step count",
    ),
    BadLoad(
        "step-number-negative",
        _edited(lambda s: s["state"][2].update(step=-1)),
        r"state 'step' of param group 0, parameter 2 .* is -1\.0",
    ),
    BadLoad(
        "exp_avg_sq-negative",
        _edited(lambda s: s["state"][1]["exp_avg_sq"].__setitem__(3, -1e-3)),
        r"state 'exp_avg_sq' of param group 0, parameter 1 .* holds negative values \(-0\.001\)",
    ),
    BadLoad(
        "exp_avg-nan",
        _edited(lambda s: s["state"][0]["exp_avg"].__setitem__((1, 2), float("nan"))),
        r"state 'exp_avg' of param group 0, parameter 0 .* holds NaN or infinity",
    ),
    BadLoad(
        "exp_avg_sq-inf",
        _edited(lambda s: s["state"][3]["exp_avg_sq"].__setitem__(0, float("inf"))),
        r"state 'exp_avg_sq' of param group 0, parameter 3 .* holds NaN or infinity",
    ),
    BadLoad(
        "duplicate-param-id",
        _edited(lambda s: s["param_groups"][0].update(params=[0, 1, 1, 3])),
        r"parameter id 1 appears twice",
    ),
)


def _snapshot(opt: torch.optim.Optimizer) -> tuple[Any, ...]:
    groups = [
        ({k: copy.deepcopy(v) for k, v in g.items() if k != "params"}, [id(p) for p in g["params"]])
        for g in opt.param_groups
    ]
    state = {
        id(p): {k: (v, v.clone() if isinstance(v, torch.Tensor) else v) for k, v in s.items()}
        for p, s in opt.state.items()
    }
    return opt.state, groups, state


def _assert_unchanged(opt: torch.optim.Optimizer, snapshot: tuple[Any, ...]) -> None:
    state_obj, groups, state = snapshot
    assert opt.state is state_obj
    now = [
        ({k: v for k, v in g.items() if k != "params"}, [id(p) for p in g["params"]])
        for g in opt.param_groups
    ]
    assert now == groups
    assert {id(p): set(s) for p, s in opt.state.items()} == {i: set(s) for i, s in state.items()}
    for p, entries in opt.state.items():
        for key, value in entries.items():
            same_object, saved = state[id(p)][key]
            assert value is same_object, key
            assert torch.equal(value, saved), key


@pytest.mark.parametrize("fast", [False, True], ids=["eager", "fast"])
@pytest.mark.parametrize("bad", BAD_LOADS, ids=lambda b: b.name)
def test_a_state_that_does_not_fit_is_refused_and_changes_nothing(bad: BadLoad, fast: bool) -> None:
    with default_dtype(torch.float64):
        tried, untouched = make_model(), make_model()
        opts = [_adam(m.parameters(), fast=fast) for m in (tried, untouched)]
        for model, opt in zip((tried, untouched), opts, strict=True):
            train(lambda ps, o=opt: o, model, lr=1e-2, steps=4, optimizer=opt)
        snapshot = _snapshot(opts[0])
        bad_state = bad.make()
        with pytest.raises(ValueError, match=bad.match):
            opts[0].load_state_dict(bad_state)
        _assert_unchanged(opts[0], snapshot)
        if fast:
            flat = opts[0]._flat  # type: ignore[attr-defined]
            assert flat is not None
            assert flat.plans[0].buckets
            assert all(b.is_bound(opts[0].state) for b in flat.plans[0].buckets)
        # Nothing was lost: training goes on exactly as if the load had not been tried.
        for model, opt in zip((tried, untouched), opts, strict=True):
            train(lambda ps, o=opt: o, model, lr=1e-2, steps=3, start=4, optimizer=opt)
    for p, q in zip(tried.parameters(), untouched.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize(
    ("source", "target", "match"),
    [
        # The hyperparameters of Lion and Adamax are a subset of Adam's: the state tells them
        # apart (torch's own load_state_dict would take Adam's state silently).
        (ours.Adam, ours.Lion, r"has unexpected exp_avg_sq: Lion with these options keeps"),
        (ours.Adam, ours.Adamax, r"lacks exp_inf and has unexpected exp_avg_sq"),
        (torch.optim.Adam, ours.Lion, r"has unexpected exp_avg_sq"),
        (ours.Adam, ours.Adagrad, r"lacks lr_decay, initial_accumulator_value"),
        (ours.RMSprop, ours.Adadelta, r"lacks rho"),
    ],
    ids=lambda x: getattr(x, "__module__", "").split(".")[0] + "." + getattr(x, "__name__", ""),
)
def test_a_state_of_another_optimizer_class_is_refused(
    source: Any, target: Any, match: str
) -> None:
    saved = _trained_state(lambda ps: source(ps, lr=1e-2))
    opt = target(make_model().parameters(), lr=1e-2)
    snapshot = _snapshot(opt)
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(saved)
    _assert_unchanged(opt, snapshot)


def test_a_state_from_before_the_first_step_loads() -> None:
    """Parameters that never stepped have an empty state; one that did keeps its own."""
    used, unused = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(2))
    opt = ours.Adam([used, unused], lr=0.1)
    (used**2).sum().backward()
    opt.step()
    fresh = ours.Adam([nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(2))], lr=0.1)
    fresh.load_state_dict(copy.deepcopy(opt.state_dict()))
    first, second = fresh.param_groups[0]["params"]
    assert float(fresh.state[first]["step"]) == 1.0
    assert len(fresh.state[second]) == 0
    ours.Adam([nn.Parameter(torch.ones(3))]).load_state_dict(
        ours.Adam([nn.Parameter(torch.ones(3))]).state_dict()
    )


def test_structural_flags_come_from_the_loaded_groups_like_torch() -> None:
    model = make_model()
    saved = _trained_state(lambda ps: ours.Adam(ps, lr=1e-2, amsgrad=True), model)
    opt = ours.Adam(make_model().parameters(), lr=1e-2)
    opt.load_state_dict(saved)
    assert opt.param_groups[0]["amsgrad"] is True
    assert "max_exp_avg_sq" in opt.state[opt.param_groups[0]["params"][0]]


@pytest.mark.parametrize("fast", [False, True], ids=["eager", "fast"])
def test_torch_sgd_state_without_step_loads_and_continues_like_torch(fast: bool) -> None:
    """torch's SGD keeps only the momentum buffer; SGD reads t only to tell the first step."""
    with default_dtype(torch.float64):
        ref, mine = make_model(), make_model()
        ref_opt = train(
            lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9), ref, lr=0.05, steps=5
        )
        mine.load_state_dict(ref.state_dict())
        opt = ours.SGD(mine.parameters(), lr=0.05, momentum=0.9, fast=fast)
        # torch aliases the loaded tensors; a copy keeps torch's in-place updates out of ours.
        opt.load_state_dict(copy.deepcopy(ref_opt.state_dict()))
        train(lambda ps: ref_opt, ref, lr=0.05, steps=5, start=5, optimizer=ref_opt)
        train(lambda ps: opt, mine, lr=0.05, steps=5, start=5, optimizer=opt)
    for p, q in zip(mine.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


def test_a_pre_hook_runs_once_and_its_result_is_what_is_checked() -> None:
    calls = []

    def upgrade(opt: torch.optim.Optimizer, state: StateDict) -> StateDict:
        calls.append(1)
        return state["wrapped"]  # type: ignore[no-any-return]

    model = make_model()
    saved = _trained_state(_adam, model)
    opt = _adam(make_model().parameters())
    opt.register_load_state_dict_pre_hook(upgrade)
    opt.load_state_dict({"wrapped": saved})
    assert calls == [1]
    assert float(opt.state[opt.param_groups[0]["params"][0]]["step"]) == 3.0


# -- another dtype, as torch does it ------------------------------------------------------


def _run(
    factory: Callable[[Any], torch.optim.Optimizer], dtype: torch.dtype, steps: int
) -> tuple[nn.Module, torch.optim.Optimizer]:
    model = make_model(dtype=dtype)
    return model, train(factory, model, lr=1e-2, steps=steps)


@pytest.mark.parametrize("fast", [False, True], ids=["eager", "fast"])
@pytest.mark.parametrize(
    ("saved_dtype", "loaded_dtype"),
    [(torch.float64, torch.float32), (torch.float32, torch.float64)],
    ids=["f64-into-f32", "f32-into-f64"],
)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_state_of_another_dtype_is_cast_like_torch(
    case: OptimizerCase, saved_dtype: torch.dtype, loaded_dtype: torch.dtype, fast: bool
) -> None:
    """Floating state takes the parameter's dtype, ``step`` stays as saved, as in torch."""
    if not case.reference_loads_our_state:
        pytest.skip(f"{case.name}'s reference counts steps per group, not in the saved state")
    kwargs = {"lr": case.lr, **case.configs[0]}
    saved_model, saved_opt = _run(partial(case.ours, **kwargs), saved_dtype, steps=3)
    saved = copy.deepcopy(saved_opt.state_dict())
    mine, ref = make_model(dtype=loaded_dtype), make_model(dtype=loaded_dtype)
    mine.load_state_dict(saved_model.state_dict())
    ref.load_state_dict(saved_model.state_dict())
    opt = case.ours(mine.parameters(), fast=fast, **kwargs)
    ref_opt = case.reference(ref.parameters(), **case.reference_extra, **kwargs)
    opt.load_state_dict(copy.deepcopy(saved))
    ref_opt.load_state_dict(copy.deepcopy(saved))

    def dtypes(o: torch.optim.Optimizer, model: nn.Module) -> list[dict[str, Any]]:
        return [
            {k: v.dtype for k, v in o.state[p].items() if k in ref_opt.state[q]}
            for p, q in zip(model.parameters(), ref.parameters(), strict=True)
        ]

    loaded = dtypes(opt, mine)
    assert loaded == dtypes(ref_opt, ref)
    assert all(v == loaded_dtype for d in loaded for k, v in d.items() if k != "step")
    # Steps after the load keep the dtypes (on the fast path: in the flat buffers) and move the
    # parameters as torch's do from the same loaded state.
    train(lambda ps: opt, mine, lr=case.lr, steps=3, start=3, optimizer=opt)
    train(lambda ps: ref_opt, ref, lr=case.lr, steps=3, start=3, optimizer=ref_opt)
    assert dtypes(opt, mine) == loaded
    tol = 1e-5 if loaded_dtype == torch.float32 else 1e-10
    for p, q in zip(mine.parameters(), ref.parameters(), strict=True):
        assert p.dtype == loaded_dtype
        torch.testing.assert_close(p, q, rtol=0, atol=tol * float(q.detach().abs().max()))


def test_a_user_chain_round_trips() -> None:
    chain = ours.chain(
        ours.ratio(
            ours.identity(), ours.chain(ours.blocks.ema_of_squares(0.99), ours.blocks.root(1e-8))
        ),
        ours.blocks.trace(0.9, 0.0, nesterov=True),
        ours.blocks.scale_by_learning_rate(),
    )
    model = make_model()
    saved = _trained_state(lambda ps: ours.ChainOptimizer(ps, chain, lr=1e-2), model)
    opt = ours.ChainOptimizer(make_model().parameters(), chain, lr=1e-2)
    opt.load_state_dict(saved)
    assert set(opt.state[opt.param_groups[0]["params"][0]]) == {
        "exp_avg_sq",
        "momentum_buffer",
        "step",
    }
    del saved["state"][0]["exp_avg_sq"]
    with pytest.raises(ValueError, match="lacks exp_avg_sq"):
        ours.ChainOptimizer(make_model().parameters(), chain, lr=1e-2).load_state_dict(saved)


NEGATIVE_SECOND_MOMENTS: list[tuple[Any, str, dict[str, Any]]] = [
    (ours.Adagrad, "sum", {}),
    (ours.RMSprop, "square_avg", {}),
    (ours.RMSprop, "square_avg", {"centered": True}),
    (ours.Adadelta, "acc_delta", {}),
    (ours.Adamax, "exp_inf", {}),
    (ours.Adam, "max_exp_avg_sq", {"amsgrad": True}),
    (ours.NAdam, "exp_avg_sq", {}),
]


@pytest.mark.parametrize("fast", [False, True], ids=["eager", "fast"])
@pytest.mark.parametrize(
    ("cls", "key", "config"),
    NEGATIVE_SECOND_MOMENTS,
    ids=[f"{c.__name__}-{k}" for c, k, _ in NEGATIVE_SECOND_MOMENTS],
)
def test_a_negative_second_moment_is_refused_and_changes_nothing(
    cls: Any, key: str, config: dict[str, Any], fast: bool
) -> None:
    def factory(ps: Any) -> torch.optim.Optimizer:
        return cls(ps, lr=1e-2, fast=fast, **config)  # type: ignore[no-any-return]

    with default_dtype(torch.float64):
        saved = _trained_state(factory)
        saved["state"][1][key][0] = -0.5
        model = make_model(seed=7)
        opt = factory(model.parameters())
        train(lambda ps: opt, model, lr=1e-2, steps=2, optimizer=opt)
        snapshot = _snapshot(opt)
        with pytest.raises(ValueError, match=rf"state '{key}' of .* holds negative values"):
            opt.load_state_dict(saved)
        _assert_unchanged(opt, snapshot)


@pytest.mark.parametrize("fast", [False, True], ids=["eager", "fast"])
def test_sgd_after_load_fix_up_leaves_non_param_state_alone(fast: bool) -> None:
    """A load post-hook may keep other things in ``optimizer.state``; torch's SGD leaves
    them alone, and so does SGD's filling in of the step count torch's SGD does not save."""
    with default_dtype(torch.float64):
        model = make_model()
        opt = ours.SGD(model.parameters(), lr=0.05, momentum=0.9, fast=fast)
        train(lambda ps: opt, model, lr=0.05, steps=2, optimizer=opt)
        saved = copy.deepcopy(opt.state_dict())

        def keep_extra(optimizer: torch.optim.Optimizer) -> None:
            optimizer.state["ema_decay"] = torch.tensor(0.99)  # type: ignore[index]

        for optimizer in (opt, torch.optim.SGD(make_model().parameters(), lr=0.05)):
            optimizer.register_load_state_dict_post_hook(keep_extra)
            optimizer.load_state_dict(saved)
            assert torch.equal(optimizer.state["ema_decay"], torch.tensor(0.99))  # type: ignore[index]
