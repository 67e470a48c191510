"""Run an optimizer on a surface and measure what happened.

:func:`run_trajectory` drives any ``torch.optim.Optimizer`` (built by a factory from the one
2-vector parameter) for ``steps`` steps in float64 and records the points x_0 .. x_T, the loss
f(x_t) and the gradient norm |grad f(x_t)| at every point. A run that becomes non-finite or
leaves the ball |x|_inf <= ``divergence_bound`` stops there and is marked ``diverged``; it never
raises.

Metrics (all functions of a :class:`Trajectory`):

- :func:`steps_to_tolerance`: the first step t from which the distance to the nearest global
  minimum stays below ``tol`` for the rest of the run (a fly-by through the tolerance ball does
  not count), or None.
- :func:`final_distance`: distance from x_T to the nearest global minimum.
- :func:`reached_minimum`: ``"global"`` / ``"local"`` when x_T is within ``radius`` of a listed
  minimum of that kind, else ``"none"``.
- :func:`steps_to_leave`: first step t with |x_t - s| > radius after the run has been inside
  the ball around the saddle s, or None when it never leaves.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from dltricks.surfaces.functions import Minimum, Surface

__all__ = [
    "OptimizerFactory",
    "Reached",
    "Trajectory",
    "TrajectoryMetrics",
    "final_distance",
    "measure",
    "reached_minimum",
    "run_trajectory",
    "steps_to_leave",
    "steps_to_tolerance",
]

OptimizerFactory = Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]
Reached = Literal["global", "local", "none"]


@dataclass(frozen=True)
class Trajectory:
    """Points x_0 .. x_T (shape ``(T+1, 2)``), losses and gradient norms at those points.

    ``steps`` is the number of steps asked for. For a diverged run ``diverged_at`` is the step
    whose point was non-finite or out of bounds; the arrays stop at the last good point.
    """

    surface: str
    points: np.ndarray
    losses: np.ndarray
    grad_norms: np.ndarray
    steps: int
    diverged: bool
    diverged_at: int | None

    @property
    def final_point(self) -> np.ndarray:
        """The last point, ``(x, y)``."""
        return self.points[-1]

    @property
    def final_loss(self) -> float:
        """The loss at the last point."""
        return float(self.losses[-1])


def run_trajectory(
    surface: Surface,
    make_optimizer: OptimizerFactory,
    start: Sequence[float] | None = None,
    steps: int = 500,
    *,
    gradient: Literal["analytic", "autograd"] = "analytic",
    divergence_bound: float = 1e6,
) -> Trajectory:
    """Run ``make_optimizer([p])`` on ``surface`` from ``start`` (default: the surface's).

    ``gradient="analytic"`` sets ``p.grad`` from the surface's hand-written gradient (the tests
    check it equals autograd's; it is several times faster per step), computed on Python
    floats by the surface's ``value_and_grad`` where it has one (the same numbers, several
    times faster again); ``"autograd"`` calls ``backward``. The optimizer's ``step`` gets a
    closure, so closure-based optimizers work too.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    x0 = surface.start if start is None else tuple(start)
    param = torch.nn.Parameter(torch.tensor(x0, dtype=torch.float64))
    optimizer = make_optimizer([param])
    analytic = gradient == "analytic"
    at_point = surface.value_and_grad if analytic else None
    # The gradient is written into this buffer (through its numpy view) and handed over as
    # p.grad; an optimizer that replaces p.grad (a fast path's flat buffer) gets a copy.
    grad_buffer = torch.zeros(2, dtype=torch.float64)
    grad_view = grad_buffer.numpy()

    def evaluate() -> tuple[float, float, float, float, float]:
        """x, y, f and its gradient at the parameter, with p.grad set to the gradient."""
        if at_point is not None:
            x, y = param.tolist()
            f, gx, gy = at_point(x, y)
            grad_view[0], grad_view[1] = gx, gy
        elif analytic:
            with torch.no_grad():
                loss = surface.fn(param)
                grad_buffer.copy_(surface.grad(param))
            x, y = param.tolist()
            f = loss.item()
            gx, gy = grad_view.tolist()
        else:
            optimizer.zero_grad(set_to_none=False)
            loss = surface.fn(param)
            loss.backward()
            assert param.grad is not None
            x, y = param.tolist()
            f = loss.item()
            gx, gy = param.grad.tolist()
            return x, y, f, gx, gy
        if param.grad is None:
            param.grad = grad_buffer
        elif param.grad is not grad_buffer:
            param.grad.copy_(grad_buffer)
        return x, y, f, gx, gy

    def closure() -> float:
        return evaluate()[2]

    # p.grad already holds the gradient at x_t when step() runs, so the closure handed to the
    # optimizer returns the loss already computed on its first call (no second evaluation for
    # SGD, Adam, ...) and evaluates again only when called again (LBFGS's line search moves p
    # in between).
    fresh = [False]
    cached = [0.0]

    def step_closure() -> float:
        if fresh[0]:
            fresh[0] = False
            return cached[0]
        return closure()

    # On a 2-vector the arithmetic is nothing and each tensor operation costs microseconds of
    # dispatch (a surface's formulas are a dozen each): the loop reads each point once, as
    # Python floats, and checks it in Python; a surface's value_and_grad computes the loss and
    # gradient on those floats (bit for bit fn's and grad's).
    points: list[tuple[float, float]] = []
    losses: list[float] = []
    grad_norms: list[float] = []
    diverged_at: int | None = None
    isfinite = math.isfinite
    for t in range(steps + 1):
        x, y, loss_value, gx, gy = evaluate()
        grad_norm = math.hypot(gx, gy)
        if not (
            isfinite(x)
            and isfinite(y)
            and isfinite(loss_value)
            and isfinite(grad_norm)
            and max(abs(x), abs(y)) <= divergence_bound
        ):
            diverged_at = t
            break
        points.append((x, y))
        losses.append(loss_value)
        grad_norms.append(grad_norm)
        if t < steps:
            cached[0] = loss_value
            fresh[0] = True
            optimizer.step(step_closure)
    return Trajectory(
        surface=surface.name,
        points=np.array(points, dtype=np.float64).reshape(len(points), 2),
        losses=np.array(losses, dtype=np.float64),
        grad_norms=np.array(grad_norms, dtype=np.float64),
        steps=steps,
        diverged=diverged_at is not None,
        diverged_at=diverged_at,
    )


def _distances(points: np.ndarray, minima: Sequence[Minimum]) -> np.ndarray:
    """Distance of each point to the nearest of ``minima`` (shape ``(len(points),)``)."""
    centres = np.asarray([m.point for m in minima], dtype=np.float64)
    diff = points[:, None, :] - centres[None, :, :]
    dist: np.ndarray = np.sqrt((diff**2).sum(-1)).min(axis=1)
    return dist


def steps_to_tolerance(trajectory: Trajectory, surface: Surface, tol: float) -> int | None:
    """First step t with dist(x_s, nearest global minimum) < tol for every s >= t, else None.

    The criterion is the distance, not the loss gap, so a flat surface (plateau) cannot count
    a point far from the optimum as converged. None for diverged runs, for surfaces without a
    minimum, and when the final point is outside the tolerance.
    """
    if trajectory.diverged or not surface.global_minima or len(trajectory.points) == 0:
        return None
    inside = _distances(trajectory.points, surface.global_minima) < tol
    if not inside[-1]:
        return None
    outside = np.flatnonzero(~inside)
    return 0 if outside.size == 0 else int(outside[-1]) + 1


def final_distance(trajectory: Trajectory, surface: Surface) -> float | None:
    """Distance from the final point to the nearest global minimum (None: diverged or none)."""
    if trajectory.diverged or not surface.global_minima:
        return None
    return float(_distances(trajectory.points[-1:], surface.global_minima)[0])


def reached_minimum(trajectory: Trajectory, surface: Surface, radius: float = 0.05) -> Reached:
    """Kind of the listed minimum within ``radius`` of the final point; ``"none"`` otherwise."""
    if trajectory.diverged or not surface.minima:
        return "none"
    final = trajectory.points[-1:]
    best = min(surface.minima, key=lambda m: float(_distances(final, [m])[0]))
    return best.kind if float(_distances(final, [best])[0]) < radius else "none"


def steps_to_leave(trajectory: Trajectory, point: Sequence[float], radius: float) -> int | None:
    """First step t with |x_t - point| > radius once the run has been within ``radius``.

    A diverged run counts up to its last good point (it has usually left long before).
    """
    centre = np.asarray(point, dtype=np.float64)
    dist = np.sqrt(((trajectory.points - centre) ** 2).sum(-1))
    inside = np.flatnonzero(dist <= radius)
    if inside.size == 0:
        return None
    after = np.flatnonzero(dist[inside[0] :] > radius)
    if after.size == 0:
        return None
    return int(inside[0] + after[0])


@dataclass(frozen=True)
class TrajectoryMetrics:
    """All metrics of one run; ``steps_to_leave_saddle`` refers to the surface's first saddle."""

    steps_to_tolerance: int | None
    final_distance: float | None
    final_loss: float | None
    reached: Reached
    steps_to_leave_saddle: int | None
    diverged: bool
    diverged_at: int | None


def measure(
    trajectory: Trajectory,
    surface: Surface,
    *,
    tol: float = 1e-3,
    reach_radius: float = 0.05,
) -> TrajectoryMetrics:
    """Compute every metric of ``trajectory`` on ``surface`` with the given thresholds."""
    leave = (
        steps_to_leave(trajectory, surface.saddles[0], surface.saddle_radius)
        if surface.saddles
        else None
    )
    return TrajectoryMetrics(
        steps_to_tolerance=steps_to_tolerance(trajectory, surface, tol),
        final_distance=final_distance(trajectory, surface),
        final_loss=None if trajectory.diverged else trajectory.final_loss,
        reached=reached_minimum(trajectory, surface, reach_radius),
        steps_to_leave_saddle=leave,
        diverged=trajectory.diverged,
        diverged_at=trajectory.diverged_at,
    )
