"""Blocks declare what they are; only declared-elementwise chains are fused.

* Every library block, run on the fast path (fused over a flat buffer holding a 1-D and a 2-D
  parameter), gives the eager path's numbers.
* User blocks that are not elementwise (a per-row norm, a per-matrix orthogonalisation, a
  shape-dependent scale) and declare nothing run per tensor even with ``fast=True``, and give
  the update computed in the test by hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import pytest
import torch
from torch import Tensor, nn

import dltricks.optim as ours
from dltricks.optim import blocks as b
from dltricks.optim.base import Hyper, State, Transform

HYPER = {
    "lr": 1e-2,
    "beta1": 0.9,
    "beta2": 0.99,
    "eps": 1e-8,
    "weight_decay": 0.1,
    "momentum": 0.9,
    "dampening": 0.1,
    "lr_decay": 0.01,
    "momentum_decay": 4e-3,
    "initial_accumulator_value": 0.1,
    "alpha": 0.99,
    "rho": 0.9,
}
SHAPES = [(40,), (9, 7)]  # 9 rows > 7 columns: the shape-dependent scale is not 1
STEPS = 5


def _sum_of(*branches: Transform) -> Transform:
    """``u' = sum_k B_k(u)``: every branch sees the same input (a test-only combinator)."""

    def init(param: Tensor, hyper: Hyper) -> State:
        state: State = {}
        for branch in branches:
            state.update(branch.init(param, hyper))
        return state

    def update(
        u: Tensor, state: Mapping[str, Tensor], param: Tensor, hyper: Hyper
    ) -> tuple[Tensor, State]:
        total, changed = None, {}
        for branch in branches:
            out, branch_changed = branch.update(u, state, param, hyper)
            total = out if total is None else total + out
            changed.update(branch_changed)
        assert total is not None
        return total, changed

    return Transform(
        name="sum_of",
        init=init,
        update=update,
        state_keys=tuple(k for branch in branches for k in branch.state_keys),
        elementwise=all(branch.elementwise for branch in branches),
    )


LIBRARY_PER_TENSOR = {
    "orthogonalize",
    "scale_by_shape",
    "shape_scaled_descent",
    "shape_scaled_orthogonalize",
    "factored_second_moment",
    "clip_by_block_rms",
    "scale_by_relative_step",
}
"""The library's blocks that read whole tensors (Muon's and Adafactor's): declared per tensor."""


def test_library_per_tensor_blocks_declare_it() -> None:
    for name in sorted(LIBRARY_PER_TENSOR):
        block = getattr(b, name)()
        assert block.per_tensor, name
        assert not block.elementwise, name


def _every_library_block() -> tuple[Transform, set[str]]:
    """One chain that uses every block of dltricks.optim.blocks, and the names it used."""
    used: set[str] = set()

    def use(factory: Callable[..., Transform], *args: object, **kwargs: object) -> Transform:
        used.add(factory.__name__)
        return factory(*args, **kwargs)

    branches = [
        ours.chain(use(b.add_l2_penalty), use(b.trace, key="k1"), use(b.scale_by_learning_rate)),
        ours.chain(
            use(b.add_decayed_weights),
            use(b.trace, nesterov=True, key="k2"),
            use(b.inverse_time_decay),
            use(b.negate),
            use(b.scale, 1e-2),
        ),
        ours.ratio(
            ours.chain(use(b.ema, key="m3"), use(b.bias_correction, "beta1")),
            ours.chain(use(b.ema_of_squares, key="v3"), b.bias_correction("beta2"), use(b.root)),
        ),
        ours.ratio(
            ours.identity(),
            ours.chain(
                use(b.centered_ema_of_squares, key="sq4", mean_key="mean4"),
                b.root(eps_inside=True),
            ),
        ),
        ours.ratio(
            use(b.nesterov_first_moment, key="m5", product_key="mu5"),
            ours.chain(use(b.sum_of_squares, key="s5"), b.root()),
        ),
        ours.chain(b.ema_of_squares(key="v6"), use(b.running_max, key="max6"), b.root()),
        ours.ratio(b.ema(key="m7"), use(b.infinity_norm, key="inf7")),
        use(b.scale_by_adadelta, key="a8", delta_key="d8"),
        ours.chain(use(b.sign_of_interpolation, key="m9"), b.scale(0.5)),
        ours.chain(use(b.sign), b.scale(0.01)),
        ours.chain(b.sign(), use(b.decay_weights)),
        # RAdam, Rprop, ASGD, AdaBelief, Schedule-Free: numbers for the hyperparameters the
        # others do not read. (rho_t stays below 5 for the first 5 steps: RAdam's rectified
        # branch is fused in the parity tests' 60 steps.)
        ours.ratio(
            b.ema(key="m11"),
            ours.chain(
                b.ema_of_squares(0.9, key="v11"), b.root(), use(b.rectified_denominator, 0.9)
            ),
        ),
        ours.chain(
            use(b.scale_by_resilient_step, 0.5, 1.2, 1e-6, 1.0, key="s12", previous_key="p12"),
            b.scale(0.1),
        ),
        use(b.averaged_sgd, "lr", 0.1, 0.75, 2.0, eta_key="e13", mu_key="mu13", average_key="a13"),
        ours.ratio(
            b.ema(key="m14"),
            ours.chain(
                use(b.ema_of_squared_surprise, key="s14", mean_key="m14"),
                b.running_max(key="max14"),
                b.root(),
            ),
        ),
        ours.chain(b.scale(0.01), use(b.shrink_weights)),
        use(
            b.schedule_free_interpolation,
            "lr",
            "beta1",
            2.0,
            1.0,
            2.0,
            key="z15",
            weight_sum_key="w15",
            lr_max_key="lm15",
        ),
    ]
    return ours.chain(_sum_of(*branches), b.scale(-1e-2)), used


def _params() -> list[nn.Parameter]:
    gen = torch.Generator().manual_seed(11)
    return [
        nn.Parameter(torch.randn(shape, generator=gen, dtype=torch.float64)) for shape in SHAPES
    ]


def _grads(step: int) -> list[Tensor]:
    gen = torch.Generator().manual_seed(100 + step)
    return [torch.randn(shape, generator=gen, dtype=torch.float64) for shape in SHAPES]


def _run(transform: Transform, fast: bool) -> tuple[list[nn.Parameter], ours.ChainOptimizer]:
    params = _params()
    opt = ours.ChainOptimizer(params, transform, fast=fast, **HYPER)
    for step in range(STEPS):
        for p, g in zip(params, _grads(step), strict=True):
            p.grad = g
        opt.step()
    return params, opt


@pytest.mark.slow
def test_every_library_block_declares_itself_elementwise_and_fuses_like_eager() -> None:
    transform, used = _every_library_block()
    elementwise = set(b.__all__) - LIBRARY_PER_TENSOR
    assert used == elementwise, f"blocks not covered: {elementwise - used}"
    assert transform.elementwise
    fast, fast_opt = _run(transform, fast=True)
    eager, eager_opt = _run(transform, fast=False)
    flat = fast_opt._flat
    assert flat is not None
    assert flat.plans[0] is not None
    assert flat.plans[0].buckets, "the library blocks were not fused"
    assert not flat.plans[0].eager
    for p, q in zip(fast, eager, strict=True):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-12, atol=1e-14)
        for key, value in eager_opt.state[q].items():
            torch.testing.assert_close(fast_opt.state[p][key], value, rtol=1e-12, atol=1e-14)


def _per_row_norm(u: Tensor) -> Tensor:
    """Each row divided by its norm (a 1-D tensor is one row)."""
    rows = u.reshape(u.shape[0], -1) if u.dim() > 1 else u.reshape(1, -1)
    return (rows / rows.norm(dim=1, keepdim=True)).reshape(u.shape)


def _orthogonalised(u: Tensor) -> Tensor:
    """The nearest semi-orthogonal matrix ``U V^T`` (Muon's target); a 1-D tensor is
    normalised."""
    if u.dim() < 2:
        return u / u.norm()
    left, _, right = torch.linalg.svd(u, full_matrices=False)
    return left @ right


def _shape_scaled(u: Tensor) -> Tensor:
    """Scaled by ``sqrt(max(1, rows / cols))``, as Muon scales its update."""
    rows, cols = (u.shape[0], u[0].numel()) if u.dim() > 1 else (1, u.numel())
    return u * math.sqrt(max(1.0, rows / cols))


PER_TENSOR = {
    "per_row_norm": _per_row_norm,
    "orthogonalised": _orthogonalised,
    "shape_scaled": _shape_scaled,
}


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("name", sorted(PER_TENSOR))
def test_undeclared_user_blocks_run_per_tensor_and_match_the_formula(name: str, fast: bool) -> None:
    rule = PER_TENSOR[name]

    def update(u: Tensor, param: Tensor, hyper: Hyper) -> Tensor:
        return rule(u)

    transform = ours.chain(ours.stateless(name, update), b.scale_by_learning_rate())
    assert not transform.elementwise
    if fast:
        with pytest.warns(RuntimeWarning, match="not elementwise"):
            params, opt = _run(transform, fast=True)
    else:
        params, opt = _run(transform, fast=False)
    # The reference, by hand: theta_t = theta_{t-1} - lr * rule(g_t).
    expected = [p.detach().clone() for p in _params()]
    for step in range(STEPS):
        for theta, g in zip(expected, _grads(step), strict=True):
            theta -= HYPER["lr"] * rule(g)
    for p, want in zip(params, expected, strict=True):
        torch.testing.assert_close(p.detach(), want, rtol=1e-12, atol=1e-14)
    flat = opt._flat
    if fast and flat is not None:
        plan = flat.plans[0]
        assert plan is not None
        assert not plan.buckets, "an undeclared block was fused"
