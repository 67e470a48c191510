"""Saddle points and local minima: does momentum's inertia carry the ball out?

The lecture pictures momentum as a ball's inertia that may carry it over a small hill or off
a saddle ("not guaranteed, but a great step"). These demonstrations pit gradient descent
against heavy-ball momentum at the same lr on the same start, so the only difference is the
inertia:

- saddle x^2 - y^2 from (1, 1e-3) (just off the ridge y = 0) and from (1, 0) (on the ridge):
  steps until the run leaves the ball of radius ``saddle.saddle_radius`` around (0, 0);
- double well x^4 - 3x^2 + x + y^2 from a start in the local minimum's basin: which minimum
  each run ends in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from dltricks.surfaces.functions import Surface, double_well, saddle
from dltricks.surfaces.runner import Trajectory, TrajectoryMetrics, measure, run_trajectory

__all__ = ["EscapeRun", "double_well_demo", "saddle_demo"]


@dataclass(frozen=True)
class EscapeRun:
    """One run of a demonstration: which optimizer, from where, and what it measured."""

    surface: str
    optimizer: str
    lr: float
    momentum: float
    start: tuple[float, float]
    trajectory: Trajectory
    metrics: TrajectoryMetrics

    def record(self) -> dict[str, object]:
        """JSON-serialisable summary."""
        m = self.metrics
        return {
            "surface": self.surface,
            "optimizer": self.optimizer,
            "lr": self.lr,
            "momentum": self.momentum,
            "start": list(self.start),
            "steps_to_leave_saddle": m.steps_to_leave_saddle,
            "reached": m.reached,
            "final_distance": m.final_distance,
            "final_loss": m.final_loss,
            "diverged": m.diverged,
            "diverged_at": m.diverged_at,
        }


def _pair(
    surface: Surface, start: tuple[float, float], lr: float, momentum: float, steps: int
) -> list[EscapeRun]:
    runs = []
    for name, beta in (("gradient descent", 0.0), (f"momentum {momentum:g}", momentum)):

        def make(params: list[torch.nn.Parameter], beta: float = beta) -> torch.optim.Optimizer:
            return torch.optim.SGD(params, lr=lr, momentum=beta)

        trajectory = run_trajectory(surface, make, start, steps)
        runs.append(
            EscapeRun(surface.name, name, lr, beta, start, trajectory, measure(trajectory, surface))
        )
    return runs


def saddle_demo(
    lr: float = 0.01,
    momentum: float = 0.9,
    steps: int = 400,
    starts: Sequence[tuple[float, float]] = ((1.0, 1e-3), (1.0, 0.0)),
) -> list[EscapeRun]:
    """Gradient descent and momentum on x^2 - y^2 from each start (off and on the ridge)."""
    surface = saddle()
    return [run for start in starts for run in _pair(surface, start, lr, momentum, steps)]


def double_well_demo(
    lr: float = 0.01,
    momentum: float = 0.9,
    steps: int = 400,
    start: tuple[float, float] = (2.0, 1.0),
) -> list[EscapeRun]:
    """Gradient descent and momentum on the double well from one start in the local basin."""
    return _pair(double_well(), start, lr, momentum, steps)
