"""The error-surface side of the playground: the catalogue, contour grids and optimizer runs.

All of it is :mod:`dltricks.surfaces`: the surfaces and their landmarks come from
:func:`~dltricks.surfaces.get_surface`, runs from :func:`~dltricks.surfaces.run_trajectory`
(float64, analytic gradients; a run that leaves ``|x|_inf <= 1e6`` or turns non-finite stops
there and is reported ``"diverged": true``) and the metrics from
:func:`~dltricks.surfaces.measure`.
"""

from __future__ import annotations

import math
from typing import Any

from dltricks.lab.settings import Choice, Float, Int, Pair
from dltricks.serve.fields import Field, RequestError, parse_fields
from dltricks.serve.optimizers import HYPERPARAMETERS, OPTIMIZERS, build_optimizer, hyperparameters

__all__ = [
    "MAX_GRID",
    "MAX_STEPS",
    "SURFACE_RUN_FIELDS",
    "TRAPS",
    "run_surface",
    "surface_catalogue",
    "surface_grid",
]

#: What each surface shows, in the lecture's terms.
TRAPS: dict[str, str] = {
    "quadratic": "an ill-conditioned valley: steep across, shallow along (Goh 2017)",
    "rosenbrock": "a curved, narrow valley with a flat floor",
    "beale": "steep walls around a flat floor",
    "himmelblau": "four global minima: where you end depends on where you start",
    "rastrigin": "many local minima",
    "plateau": "a very slow plateau: the gradient is tiny far from the minimum",
    "saddle": "a saddle point: gradient zero, but not a minimum",
    "monkey_saddle": "a degenerate saddle (three valleys)",
    "double_well": "one local and one global minimum: momentum may carry the ball over",
    "goh_banana": "Goh's banana-shaped valley",
}

MAX_STEPS = 5000
MAX_GRID = 200
_COORDINATE = Float(-1e4, 1e4)


def _names() -> tuple[str, ...]:
    from dltricks.surfaces import surface_names

    return surface_names()


SURFACE_RUN_FIELDS: dict[str, Field] = {
    "surface": Field(Choice(_names()), required=True),
    "optimizer": Field(Choice(tuple(OPTIMIZERS)), required=True),
    "lr": Field(Float(0.0, 100.0, low_open=True), 0.01),
    "steps": Field(Int(1, MAX_STEPS), 200),
    "start": Field(Pair(_COORDINATE, _COORDINATE), None),
    **{name: Field(rule, None) for name, rule in HYPERPARAMETERS.items()},
}


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def surface_catalogue() -> list[dict[str, Any]]:
    """Every surface: name, formula, what it shows, bounds, start, minima and saddles."""
    from dltricks.surfaces import get_surface

    out = []
    for name in _names():
        surface = get_surface(name)
        out.append(
            {
                "name": name,
                "formula": surface.formula,
                "description": TRAPS.get(name, surface.formula),
                "bounds": [list(surface.window[0]), list(surface.window[1])],
                "start": list(surface.start),
                "minima": [
                    {"point": list(m.point), "value": m.value, "kind": m.kind}
                    for m in surface.minima
                ],
                "saddles": [list(s) for s in surface.saddles],
                "log_levels": surface.log_levels,
                "min_value": surface.min_value,
            }
        )
    return out


def surface_grid(name: str, n: int) -> dict[str, Any]:
    """The surface's values on an ``n`` x ``n`` grid over its bounds: ``z[j][i] = f(x_i, y_j)``.

    Raises:
        RequestError: an unknown surface or ``n`` outside 2..:data:`MAX_GRID`.
    """
    import torch

    from dltricks.surfaces import get_surface

    if name not in _names():
        raise RequestError(f"unknown surface {name!r}; known: {', '.join(_names())}", "surface")
    if not 2 <= n <= MAX_GRID:
        raise RequestError(f"field 'n': expected an integer from 2 to {MAX_GRID}, got {n}", "n")
    surface = get_surface(name)
    (x0, x1), (y0, y1) = surface.window
    xs = torch.linspace(x0, x1, n, dtype=torch.float64)
    ys = torch.linspace(y0, y1, n, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)
    z = surface.fn(grid)
    return {
        "surface": name,
        "x": xs.tolist(),
        "y": ys.tolist(),
        "z": [[_finite(v) for v in row] for row in z.tolist()],
        "log_levels": surface.log_levels,
    }


def run_surface(body: Any) -> dict[str, Any]:
    """Run one optimizer on one surface as the request ``body`` says (see the module docs).

    Raises:
        RequestError: a field is unknown, missing or out of range.
    """
    from dltricks.surfaces import get_surface, measure, run_trajectory

    what = "surface run"
    request = parse_fields(body, SURFACE_RUN_FIELDS, what)
    given = {k: request[k] for k in HYPERPARAMETERS}
    settings = hyperparameters(request["optimizer"], given, what)
    surface = get_surface(request["surface"])
    start = surface.start if request["start"] is None else tuple(request["start"])
    # Eager, always: the fast path leaves a 2-vector eager anyway (far below the size that pays)
    # after its own per-step bookkeeping, and with DLTRICKS_FAST=1 it would compile a kernel.
    factory = build_optimizer(request["optimizer"], request["lr"], settings, fast=False)
    trajectory = run_trajectory(surface, factory, start, request["steps"])
    metrics = measure(trajectory, surface)
    return {
        "surface": surface.name,
        "optimizer": request["optimizer"],
        "lr": request["lr"],
        "hyperparameters": {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()},
        "start": list(start),
        "steps": request["steps"],
        "trajectory": trajectory.points.tolist(),
        "losses": trajectory.losses.tolist(),
        "grad_norms": trajectory.grad_norms.tolist(),
        "diverged": trajectory.diverged,
        "diverged_at": trajectory.diverged_at,
        "final_loss": metrics.final_loss,
        "final_distance": metrics.final_distance,
        "reached": metrics.reached,
        "steps_to_tolerance": metrics.steps_to_tolerance,
        "min_value": surface.min_value,
    }
