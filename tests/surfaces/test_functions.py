"""Surfaces: analytic gradients, stated minima and saddles, registry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dltricks.surfaces import Surface, get_surface, quadratic, surface_names

ALL_SURFACES = [get_surface(name) for name in surface_names()] + [quadratic(1000.0)]
IDS = [f"{s.name}{s.params.get('kappa', '')}" for s in ALL_SURFACES]


def _random_points(surface: Surface, n: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    (x0, x1), (y0, y1) = surface.window
    u = torch.rand(n, 2, generator=generator, dtype=torch.float64)
    return torch.stack((x0 + (x1 - x0) * u[:, 0], y0 + (y1 - y0) * u[:, 1]), dim=-1)


def _hessian(surface: Surface, point: tuple[float, float]) -> np.ndarray:
    p = torch.tensor(point, dtype=torch.float64)
    return torch.autograd.functional.hessian(surface.fn, p).numpy()


def test_registry_lists_the_ten_surfaces() -> None:
    assert set(surface_names()) == {
        "quadratic", "rosenbrock", "beale", "himmelblau", "rastrigin", "plateau",
        "saddle", "monkey_saddle", "double_well", "goh_banana",
    }  # fmt: skip
    with pytest.raises(KeyError, match="unknown surface"):
        get_surface("nope")
    assert get_surface("quadratic", kappa=50.0).params["kappa"] == 50.0


@pytest.mark.parametrize("surface", ALL_SURFACES, ids=IDS)
def test_analytic_gradient_equals_autograd(surface: Surface) -> None:
    points = _random_points(surface, 64).requires_grad_(True)
    (autograd,) = torch.autograd.grad(surface.fn(points).sum(), points)
    analytic = surface.grad(points.detach())
    torch.testing.assert_close(analytic, autograd, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("surface", ALL_SURFACES, ids=IDS)
def test_batched_evaluation_matches_pointwise(surface: Surface) -> None:
    grid = _random_points(surface, 12, seed=1).reshape(3, 4, 2)
    values = surface.fn(grid)
    assert values.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            torch.testing.assert_close(values[i, j], surface.fn(grid[i, j]), rtol=0, atol=0)


@pytest.mark.parametrize("surface", ALL_SURFACES, ids=IDS)
def test_value_and_grad_on_floats_is_fn_and_grad_bit_for_bit(surface: Surface) -> None:
    # The runner's float path must not change a single number: compare with fn and grad on
    # float64 2-vectors (the runner's parameter), inside the window, far out, and at
    # infinities, NaN and overflowing coordinates.
    assert surface.value_and_grad is not None
    points = _random_points(surface, 400, seed=1).tolist()
    points += (1e3 * _random_points(surface, 100, seed=2)).tolist()
    points += [[math.inf, 1.0], [-math.inf, 2.0], [math.nan, 0.5], [1e200, -1e200], [1e80, 3.0]]
    points += [list(m.point) for m in surface.minima] + [list(surface.start)]
    for x, y in points:
        p = torch.tensor((x, y), dtype=torch.float64)
        expected = [surface.fn(p).item(), *surface.grad(p).tolist()]
        got = list(surface.value_and_grad(x, y))
        assert np.array_equal(got, expected, equal_nan=True), ((x, y), got, expected)


@pytest.mark.parametrize("surface", ALL_SURFACES, ids=IDS)
def test_stated_minima_are_stationary_minima_with_the_stated_value(surface: Surface) -> None:
    for minimum in surface.minima:
        p = torch.tensor(minimum.point, dtype=torch.float64)
        assert float(torch.linalg.vector_norm(surface.grad(p))) < 1e-9, minimum
        assert float(surface.fn(p)) == pytest.approx(minimum.value, abs=1e-12), minimum
        # A minimum, not just a stationary point: the Hessian is positive definite there.
        assert np.linalg.eigvalsh(_hessian(surface, minimum.point)).min() > 0, minimum
    if surface.minima:
        assert len(surface.global_minima) >= 1
        glob = min(m.value for m in surface.minima)
        assert all(m.value == pytest.approx(glob, abs=1e-12) for m in surface.global_minima)
        assert all(m.value > glob + 1e-9 for m in surface.minima if m.kind == "local")


@pytest.mark.parametrize("surface", ALL_SURFACES, ids=IDS)
def test_saddles_are_stationary_and_not_minima(surface: Surface) -> None:
    for point in surface.saddles:
        p = torch.tensor(point, dtype=torch.float64)
        assert float(torch.linalg.vector_norm(surface.grad(p))) < 1e-12
        eig = np.linalg.eigvalsh(_hessian(surface, point))
        # Non-degenerate saddles have an indefinite Hessian; the monkey saddle's is zero.
        assert eig.min() < 0 or np.allclose(eig, 0.0)


@pytest.mark.parametrize("surface", ALL_SURFACES, ids=IDS)
def test_window_holds_start_and_global_minima(surface: Surface) -> None:
    (x0, x1), (y0, y1) = surface.window
    for x, y in [surface.start, *(m.point for m in surface.global_minima)]:
        assert x0 <= x <= x1
        assert y0 <= y <= y1


def test_double_well_minima_match_the_cubic_roots() -> None:
    roots = np.sort(np.roots([4.0, 0.0, -6.0, 1.0]).real)  # f'(x) = 4x^3 - 6x + 1
    surface = get_surface("double_well")
    (glob,) = surface.global_minima
    (local,) = [m for m in surface.minima if m.kind == "local"]
    assert glob.point == pytest.approx((roots[0], 0.0), abs=1e-12)
    assert local.point == pytest.approx((roots[2], 0.0), abs=1e-12)
    assert surface.saddles[0] == pytest.approx((roots[1], 0.0), abs=1e-12)
    assert glob.value == pytest.approx(-3.513905, abs=1e-6)
    assert local.value == pytest.approx(-1.070230, abs=1e-6)


def test_himmelblau_minima_match_the_published_values() -> None:
    published = [(3.0, 2.0), (-2.805118, 3.131312), (-3.779310, -3.283186), (3.584428, -1.848126)]
    points = [m.point for m in get_surface("himmelblau").minima]
    for point, ref in zip(points, published, strict=True):
        assert point == pytest.approx(ref, abs=1e-6)


def test_rastrigin_lists_all_local_minima_of_the_window() -> None:
    surface = get_surface("rastrigin")
    assert surface.global_minima[0].point == (0.0, 0.0)
    assert len(surface.minima) == 81
    # The 1-D minimum near 1 solves x + 10 pi sin(2 pi x) = 0 and sits slightly inside 1.
    near_one = min(m.point[0] for m in surface.minima if m.point[0] > 0.5)
    assert 0.99 < near_one < 1.0
    assert near_one + 10 * math.pi * math.sin(2 * math.pi * near_one) == pytest.approx(0, abs=1e-12)


def test_quadratic_rejects_kappa_below_one() -> None:
    with pytest.raises(ValueError, match="kappa"):
        quadratic(0.5)
