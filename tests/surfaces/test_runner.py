"""Trajectory runner and its metrics, checked against closed forms."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from dltricks.surfaces import (
    Trajectory,
    get_surface,
    measure,
    quadratic,
    reached_minimum,
    run_trajectory,
    steps_to_leave,
    steps_to_tolerance,
)


def sgd(lr: float, momentum: float = 0.0):  # type: ignore[no-untyped-def]
    def make(params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=lr, momentum=momentum)

    return make


def _trajectory(points: list[tuple[float, float]]) -> Trajectory:
    pts = np.asarray(points, dtype=np.float64)
    n = len(pts)
    return Trajectory("t", pts, np.zeros(n), np.zeros(n), n - 1, False, None)


def test_gradient_descent_on_the_quadratic_matches_the_closed_form() -> None:
    kappa, lr, steps = 10.0, 0.05, 40
    surface = quadratic(kappa)
    traj = run_trajectory(surface, sgd(lr), (1.5, -0.7), steps)
    t = np.arange(steps + 1)
    x = 1.5 * (1 - lr) ** t
    y = -0.7 * (1 - lr * kappa) ** t
    np.testing.assert_allclose(traj.points, np.stack((x, y), -1), rtol=1e-12, atol=0)
    np.testing.assert_allclose(traj.losses, 0.5 * (x**2 + kappa * y**2), rtol=1e-12)
    np.testing.assert_allclose(traj.grad_norms, np.hypot(x, kappa * y), rtol=1e-12)
    assert traj.points.dtype == np.float64
    assert not traj.diverged


def test_analytic_and_autograd_gradients_give_the_same_run() -> None:
    surface = get_surface("rosenbrock")
    a = run_trajectory(surface, sgd(1e-4, 0.9), steps=50, gradient="analytic")
    b = run_trajectory(surface, sgd(1e-4, 0.9), steps=50, gradient="autograd")
    np.testing.assert_allclose(a.points, b.points, rtol=1e-12, atol=1e-14)


def test_closure_based_optimizers_run() -> None:
    def lbfgs(params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.LBFGS(params, lr=1.0, max_iter=5, line_search_fn="strong_wolfe")

    surface = quadratic(10.0)
    traj = run_trajectory(surface, lbfgs, steps=5)
    assert len(traj.points) == 6
    assert traj.final_loss < 1e-9  # LBFGS stops at its own tolerance_change


def test_divergence_is_recorded_not_raised() -> None:
    # lr = 0.3 on kappa = 10: y_t = y0 (1 - 3)^t, |y_t| = 2^t > 1e6 first at t = 20.
    surface = quadratic(10.0)
    traj = run_trajectory(surface, sgd(0.3), (0.0, 1.0), 100)
    assert traj.diverged
    assert traj.diverged_at == math.ceil(math.log2(1e6))
    assert len(traj.points) == traj.diverged_at
    assert np.all(np.isfinite(traj.points))
    metrics = measure(traj, surface)
    assert metrics.diverged
    assert metrics.reached == "none"
    assert metrics.steps_to_tolerance is None
    assert metrics.final_distance is None


def test_non_finite_values_are_recorded_as_divergence() -> None:
    traj = run_trajectory(quadratic(4.0), sgd(math.inf), (1.0, 1.0), 10)
    assert traj.diverged
    assert traj.diverged_at == 1


def test_steps_to_tolerance_ignores_a_fly_by() -> None:
    surface = quadratic(1.0)
    fly_by = _trajectory([(1, 0), (1e-4, 0), (0.5, 0), (1e-4, 0), (1e-5, 0)])
    assert steps_to_tolerance(fly_by, surface, 1e-3) == 3
    never = _trajectory([(1, 0), (1e-4, 0), (0.5, 0)])
    assert steps_to_tolerance(never, surface, 1e-3) is None
    # Against the closed form of gradient descent: |x_t| = 0.8^t < 1e-3 from t = 31.
    traj = run_trajectory(surface, sgd(0.2), (1.0, 0.0), 60)
    assert steps_to_tolerance(traj, surface, 1e-3) == math.ceil(math.log(1e-3) / math.log(0.8))


def test_steps_to_leave_counts_from_inside_the_ball() -> None:
    traj = _trajectory([(2, 0), (0.5, 0), (0.1, 0), (0.8, 0.8), (3, 3)])
    assert steps_to_leave(traj, (0, 0), 1.0) == 3
    assert steps_to_leave(_trajectory([(0.5, 0), (0.1, 0)]), (0, 0), 1.0) is None
    assert steps_to_leave(_trajectory([(5, 0), (6, 0)]), (0, 0), 1.0) is None


def test_reached_names_the_kind_of_the_nearest_minimum() -> None:
    surface = get_surface("double_well")
    lo, hi = surface.global_minima[0].point, surface.minima[1].point
    assert reached_minimum(_trajectory([(2, 1), lo]), surface) == "global"
    assert reached_minimum(_trajectory([(2, 1), hi]), surface) == "local"
    assert reached_minimum(_trajectory([(2, 1), (0.0, 0.0)]), surface) == "none"


def _gd_saddle_leave_step(lr: float, start: tuple[float, float], radius: float) -> int:
    """Gradient descent on x^2 - y^2: x_t = (1 - 2 lr)^t x0, y_t = (1 + 2 lr)^t y0."""
    for t in range(100_000):
        x = (1 - 2 * lr) ** t * start[0]
        y = (1 + 2 * lr) ** t * start[1]
        if math.hypot(x, y) > radius:
            return t
    raise AssertionError("never left")


def test_saddle_momentum_leaves_sooner_than_gradient_descent_off_the_ridge() -> None:
    surface = get_surface("saddle")
    lr, start = 0.01, (1.0, 1e-3)
    gd = measure(run_trajectory(surface, sgd(lr), start, 600), surface)
    hb = measure(run_trajectory(surface, sgd(lr, 0.9), start, 600), surface)
    expected = _gd_saddle_leave_step(lr, start, surface.saddle_radius)
    assert gd.steps_to_leave_saddle == expected  # 361 at lr 0.01, radius 1.25
    assert hb.steps_to_leave_saddle is not None
    assert hb.steps_to_leave_saddle < gd.steps_to_leave_saddle  # measured: 74 < 361


def test_saddle_gradient_descent_on_the_ridge_never_leaves() -> None:
    surface = get_surface("saddle")
    traj = run_trajectory(surface, sgd(0.01), (1.0, 0.0), 600)
    metrics = measure(traj, surface)
    assert metrics.steps_to_leave_saddle is None
    assert not metrics.diverged
    # It converges to the saddle point instead: x_t = 0.98^t.
    assert traj.final_point == pytest.approx((0.98**600, 0.0), rel=1e-9, abs=0)


def test_double_well_momentum_carries_over_the_barrier() -> None:
    # Measured (and asserted as measured): from (2, 1), lr 0.01, 400 steps, gradient descent
    # settles in the local minimum x = 1.1309 while heavy-ball momentum 0.9 overshoots the
    # barrier at x = 0.1699 and ends in the global minimum x = -1.3008.
    surface = get_surface("double_well")
    gd = measure(run_trajectory(surface, sgd(0.01), (2.0, 1.0), 400), surface)
    hb = measure(run_trajectory(surface, sgd(0.01, 0.9), (2.0, 1.0), 400), surface)
    assert gd.reached == "local"
    assert hb.reached == "global"


def test_the_run_records_exactly_what_the_optimizer_does() -> None:
    # The same optimizer stepped by a plain loop on the surface's gradient, bit for bit: the
    # runner adds nothing to the optimizer's arithmetic and records every point as it was.
    surface = get_surface("rosenbrock")

    def adam(params: list[torch.Tensor]) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=1e-2)

    traj = run_trajectory(surface, adam, (-1.2, 1.0), 200)
    p = torch.tensor([-1.2, 1.0], dtype=torch.float64, requires_grad=True)
    optimizer = adam([p])
    points, losses, norms = [], [], []
    for t in range(201):
        with torch.no_grad():
            points.append(p.tolist())
            losses.append(float(surface.fn(p)))
            grad = surface.grad(p)
            norms.append(math.hypot(*grad.tolist()))
        if t < 200:
            p.grad = grad
            optimizer.step()
    assert traj.points.tolist() == points
    assert traj.losses.tolist() == losses
    np.testing.assert_allclose(traj.grad_norms, norms, rtol=1e-15, atol=0)
    assert not traj.diverged


@pytest.mark.parametrize("name", ["rosenbrock", "rastrigin", "plateau", "double_well"])
def test_the_float_path_and_the_tensor_path_give_the_same_run(name: str) -> None:
    surface = get_surface(name)
    tensor_only = dataclasses.replace(surface, value_and_grad=None)

    def lbfgs(params: list[torch.Tensor]) -> torch.optim.Optimizer:
        return torch.optim.LBFGS(params, lr=0.5, max_iter=3)

    for make in (sgd(1e-3, 0.9), lbfgs):
        a = run_trajectory(surface, make, steps=60)
        b = run_trajectory(tensor_only, make, steps=60)
        assert a.points.tolist() == b.points.tolist()
        assert a.losses.tolist() == b.losses.tolist()
        assert (a.diverged, a.diverged_at) == (b.diverged, b.diverged_at)
