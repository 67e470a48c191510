"""partition and branch: different parameters, different chains; branches that see new state.

References are torch's optimizers (one per part of a partition, stepped side by side) or the
update written out in the test; float64, 1e-10 relative.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import dltricks.optim as ours
from dltricks.optim import blocks as b
from dltricks.optim.base import Hyper, State, Transform
from tests.optim.harness import default_dtype, make_data, make_model

TOLERANCE = 1e-10
ADAM = ours.chain(ours.adam_direction(), b.scale_by_learning_rate())
SGD_MOMENTUM = ours.chain(b.trace(), b.scale_by_learning_rate())
BY_DIMENSION: Callable[[Tensor], str] = lambda p: "adam" if p.ndim == 2 else "sgd"  # noqa: E731


def _loss(model: nn.Module, step: int) -> Tensor:
    x, y = make_data(dtype=torch.float64)
    rows = slice((step * 8) % 32, (step * 8) % 32 + 8)
    return nn.functional.mse_loss(model(x[rows]), y[rows])


def _train(model: nn.Module, optimizers: list[torch.optim.Optimizer], steps: int = 20) -> None:
    for step in range(steps):
        for opt in optimizers:
            opt.zero_grad()
        _loss(model, step).backward()
        for opt in optimizers:
            opt.step()


def _assert_close(model: nn.Module, reference: nn.Module) -> None:
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=TOLERANCE * float(q.detach().abs().max()))


def _torch_pair(model: nn.Module) -> list[torch.optim.Optimizer]:
    matrices = [p for p in model.parameters() if p.ndim == 2]
    vectors = [p for p in model.parameters() if p.ndim != 2]
    return [
        torch.optim.Adam(matrices, lr=1e-2),
        torch.optim.SGD(vectors, lr=1e-2, momentum=0.9),
    ]


@pytest.mark.parametrize("labels", ["callable", "mapping"])
@pytest.mark.parametrize("fast", [False, True])
def test_partition_matches_two_torch_optimizers(labels: str, fast: bool) -> None:
    with default_dtype(torch.float64):
        mine_model, their_model = make_model(), make_model()
        by: Any = BY_DIMENSION
        if labels == "mapping":
            by = {p: BY_DIMENSION(p) for p in mine_model.parameters()}
        transform = ours.partition(by, {"adam": ADAM, "sgd": SGD_MOMENTUM})
        assert transform.per_tensor
        assert not transform.elementwise
        mine = ours.ChainOptimizer(
            mine_model.parameters(),
            transform,
            fast=fast,
            lr=1e-2,
            betas=(0.9, 0.999),
            eps=1e-8,
            momentum=0.9,
            dampening=0.0,
        )
        with warnings.catch_warnings():
            # Each label's chain is fused (fast) or runs eagerly by request: never a fallback.
            warnings.filterwarnings("error", message="dltricks fast path unavailable")
            _train(mine_model, [mine])
        _train(their_model, _torch_pair(their_model))
    _assert_close(mine_model, their_model)
    for p in mine_model.parameters():
        expected = {"exp_avg", "exp_avg_sq"} if p.ndim == 2 else {"momentum_buffer"}
        assert set(mine.state[p]) == expected | {"step"}
    if fast:
        _assert_each_label_fused(mine, {"adam": ADAM, "sgd": SGD_MOMENTUM}, BY_DIMENSION)


def _assert_each_label_fused(
    opt: ours.ChainOptimizer, transforms: Mapping[str, Transform], label: Callable[[Tensor], str]
) -> None:
    """On the fast path every parameter is in a bucket of its own label's transformation."""
    plans = [plan for plan in opt._flat.plans if plan is not None]  # type: ignore[attr-defined]
    assert all(not plan.eager for plan in plans), "a parameter stayed on the eager path"
    fused = {
        id(p): bucket.transform for plan in plans for bucket in plan.buckets for p in bucket.params
    }
    for group in opt.param_groups:
        for p in group["params"]:
            assert fused[id(p)] is transforms[label(p)]


def _recipe(model: nn.Sequential, fast: bool = False) -> ours.ChainOptimizer:
    """The README's recipe: Muon for the hidden matrix, AdamW for the biases and the head."""
    hidden = [model[0].weight]
    rest = [p for p in model.parameters() if all(p is not h for h in hidden)]
    groups = [
        {"params": hidden, "label": "muon", "lr": 0.02, "weight_decay": 0.1},
        {"params": rest, "label": "adamw", "lr": 3e-3, "weight_decay": 0.01},
    ]
    adamw = ours.chain(ours.adam_direction(), b.add_decayed_weights(), b.scale_by_learning_rate())
    transform = ours.partition(
        ours.group_labels(groups), {"muon": ours.muon_update(), "adamw": adamw}
    )
    return ours.ChainOptimizer(
        groups, transform, fast=fast, momentum=0.95, betas=(0.9, 0.999), eps=1e-8
    )


def _torch_recipe(model: nn.Sequential) -> list[torch.optim.Optimizer]:
    rest = [p for p in model.parameters() if p is not model[0].weight]
    return [
        torch.optim.Muon([model[0].weight], lr=0.02, weight_decay=0.1, momentum=0.95),
        torch.optim.AdamW(rest, lr=3e-3, weight_decay=0.01),
    ]


@pytest.mark.parametrize("fast", [False, True])
def test_muon_for_hidden_matrices_adamw_for_the_rest_matches_torchs_pair(fast: bool) -> None:
    with default_dtype(torch.float64):
        mine_model, their_model = make_model(), make_model()
        mine = _recipe(mine_model, fast=fast)
        _train(mine_model, [mine], steps=12)
        _train(their_model, _torch_recipe(their_model), steps=12)
    _assert_close(mine_model, their_model)
    assert set(mine.state[mine_model[0].weight]) == {"momentum_buffer", "step"}
    assert set(mine.state[mine_model[2].weight]) == {"exp_avg", "exp_avg_sq", "step"}
    if fast:  # Muon segmented around Newton-Schulz, AdamW one kernel
        hidden = mine_model[0].weight
        plans = [plan for plan in mine._flat.plans if plan is not None]  # type: ignore[attr-defined]
        assert all(not plan.eager for plan in plans), "a parameter stayed on the eager path"
        kinds = {
            id(p): type(bucket.fused).__name__
            for plan in plans
            for bucket in plan.buckets
            for p in bucket.params
        }
        assert kinds[id(hidden)] == "SegmentedUpdate"
        assert {kinds[id(p)] for p in mine_model.parameters() if p is not hidden} == {"FusedUpdate"}


@pytest.mark.parametrize("fast", [False, True])
def test_the_recipe_state_dict_round_trip_continues_as_an_uninterrupted_run(fast: bool) -> None:
    with default_dtype(torch.float64):
        resumed_model, straight_model = make_model(), make_model()
        first = _recipe(resumed_model, fast=fast)
        _train(resumed_model, [first], steps=4)
        saved = copy.deepcopy(first.state_dict())
        second = _recipe(resumed_model, fast=fast)
        second.load_state_dict(saved)
        for step in range(4, 8):
            second.zero_grad()
            _loss(resumed_model, step).backward()
            second.step()
        straight = _recipe(straight_model, fast=fast)
        _train(straight_model, [straight], steps=8)
    for p, q in zip(resumed_model.parameters(), straight_model.parameters(), strict=True):
        assert torch.equal(p, q)


def _reader(key: str) -> Transform:
    """A block that outputs the state entry ``key`` as it is when the block runs."""

    def init(param: Tensor, hyper: Hyper) -> State:
        return {}

    def update(
        u: Tensor, state: Mapping[str, Tensor], param: Tensor, hyper: Hyper
    ) -> tuple[Tensor, State]:
        return state[key].clone(), {}

    return Transform(name=f"read({key})", init=init, update=update, elementwise=True)


@pytest.mark.parametrize("merge", ["Merge", "function"])
def test_a_later_branch_sees_the_state_an_earlier_one_produced_this_step(merge: str) -> None:
    beta, lr = 0.9, 0.1
    rule: Any = ours.total() if merge == "Merge" else (lambda a, b: a + b)
    transform = ours.chain(
        ours.branch(b.ema(beta), _reader("exp_avg"), merge=rule), b.scale_by_learning_rate(lr)
    )
    param = nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = ours.ChainOptimizer([param], transform, fast=False)
    grads = [torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) * (k + 1) for k in range(3)]
    # By hand: m_t = beta m_{t-1} + (1 - beta) g_t; both branches give m_t, so u = -2 lr m_t.
    m, theta = torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    for g in grads:
        param.grad = g.clone()
        opt.step()
        m = beta * m + (1 - beta) * g
        theta = theta - 2 * lr * m
    torch.testing.assert_close(param.detach(), theta, rtol=1e-14, atol=0)
    assert transform.elementwise == (merge == "Merge")
    assert transform.per_tensor is False


@pytest.mark.slow
def test_an_elementwise_branch_fuses_and_matches_eager() -> None:
    # Muon's Nesterov momentum without the orthogonalisation: g + mu (m_t - g).
    transform = ours.chain(
        ours.branch(
            ours.identity(),
            b.ema("momentum", key="momentum_buffer"),
            merge=ours.lerp_merge("momentum"),
        ),
        b.scale_by_learning_rate(),
    )
    assert transform.elementwise
    results = []
    for fast in (True, False):
        with default_dtype(torch.float64):
            model = make_model()
            opt = ours.ChainOptimizer(
                model.parameters(), transform, fast=fast, lr=0.05, momentum=0.9
            )
            _train(model, [opt], steps=6)
        if fast:
            assert opt._flat is not None
            assert opt._flat.plans[0].buckets, "an elementwise branch was not fused"
        results.append([p.detach().clone() for p in model.parameters()])
    for p, q in zip(*results, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


# -- errors ---------------------------------------------------------------------------------


def _param(*shape: int) -> nn.Parameter:
    return nn.Parameter(torch.ones(shape))


def test_a_label_without_a_transform_is_named() -> None:
    transform = ours.partition(lambda p: "embedding", {"adam": ADAM})
    opt = ours.ChainOptimizer([_param(2, 2)], transform, lr=0.1)
    opt.param_groups[0]["params"][0].grad = torch.ones(2, 2)
    with pytest.raises(ValueError, match=r"label 'embedding', which has no transform.*adam"):
        opt.step()


def test_a_parameter_the_mapping_does_not_label_is_named() -> None:
    labelled, stray = _param(2, 2), _param(5)
    transform = ours.partition({labelled: "sgd"}, {"sgd": SGD_MOMENTUM})
    opt = ours.ChainOptimizer([labelled, stray], transform, lr=0.1, momentum=0.9, dampening=0)
    labelled.grad, stray.grad = torch.ones(2, 2), torch.ones(5)
    with pytest.raises(ValueError, match=r"parameter of shape \(5,\) has no label"):
        opt.step()


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: ours.partition(BY_DIMENSION, {}), "non-empty mapping"),
        (lambda: ours.partition(BY_DIMENSION, {"adam": "adam"}), "not a dltricks.optim.Transform"),
        (lambda: ours.partition({_param(2): "lion"}, {"adam": ADAM}), "label 'lion'"),
        (lambda: ours.partition({"w": "adam"}, {"adam": ADAM}), "keyed by parameters"),
        (lambda: ours.partition(3, {"adam": ADAM}), "a function of the parameter or a mapping"),
        (lambda: ours.branch(merge=ours.total()), "at least one"),
        (lambda: ours.branch(ADAM, merge=3), "merge must be a Merge or a function"),
        (lambda: ours.branch(ADAM, ADAM, merge=ours.total()), "owned by two blocks"),
        (lambda: ours.group_labels([{"params": [_param(2)]}]), "has no 'label' entry"),
        (
            lambda: ours.group_labels([{"params": iter([_param(2)]), "label": "a"}]),
            "give 'params' as a list",
        ),
        (lambda: ours.group_labels([{"params": [_param(2)], "label": 1}]), "must be a string"),
    ],
)
def test_bad_combinations_are_refused_with_the_reason(build: Callable[[], Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build()


def test_a_merge_of_the_wrong_arity_is_named() -> None:
    transform = ours.branch(ours.identity(), merge=ours.lerp_merge(0.5))
    with pytest.raises(ValueError, match="lerp_merge merges two branches, got 1"):
        transform.update(torch.ones(2), {}, torch.ones(2), {"step": 1.0})


def test_block_author_helpers_are_exported() -> None:
    state = ours.zeros_like_state(torch.ones(2, 3, dtype=torch.float64), "a", "b")
    assert set(state) == {"a", "b"}
    assert state["a"].shape == (2, 3)
    assert state["a"].dtype == torch.float64
    with pytest.raises(ValueError, match="both elementwise and per_tensor"):
        ours.stateless("x", lambda u, p, h: u, elementwise=True, per_tensor=True)


def _readme_recipe() -> str:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    heading = readme.index("**Muon for the hidden matrices, AdamW for the rest**")
    start = readme.index("```python\n", heading) + len("```python\n")
    return readme[start : readme.index("```", start)]


def test_the_readme_recipe_runs_and_gives_each_parameter_its_chain() -> None:
    namespace: dict[str, Any] = {}
    exec(_readme_recipe(), namespace)
    model, optimizer = namespace["model"], namespace["optimizer"]
    tokens = torch.randint(0, 100, (4, 5), generator=torch.Generator().manual_seed(0))
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(2):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(tokens).flatten(0, 1), tokens.flatten()).backward()
        optimizer.step()
    assert all(not torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))
    assert set(optimizer.state[model[1].weight]) == {"momentum_buffer", "step"}
    for p in (model[0].weight, model[1].bias, model[3].weight, model[3].bias):
        assert set(optimizer.state[p]) == {"exp_avg", "exp_avg_sq", "step"}
