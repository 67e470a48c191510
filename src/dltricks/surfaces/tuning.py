"""Fair comparison: tune each optimizer's hyperparameters per surface, then compare.

Pictures that run every optimizer at one learning rate for 100 steps mostly show which
optimizer happens to like that lr. Here each optimizer gets its own lr (and momentum, where it
has one) per surface, chosen on a stated grid by a stated objective:

1. Every (lr, momentum) on the grid runs ``steps`` steps from the surface's start.
2. Runs are ranked by (diverged last) < (fewest ``steps_to_tolerance``; never = infinity)
   < (smallest mean loss gap f(x_t) - f* over the last 10% of steps) < (smaller lr); the
   first one wins.
3. Surfaces without a minimum (saddles) have nothing to converge to: every optimizer runs at
   the common ``untuned_lr`` (momentum ``untuned_momentum``), stated as such.

:meth:`TuningProtocol.describe` turns all of that into the text that results and figures carry.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from dltricks.surfaces.functions import Surface
from dltricks.surfaces.runner import (
    OptimizerFactory,
    Trajectory,
    TrajectoryMetrics,
    measure,
    run_trajectory,
)

__all__ = [
    "OptimizerBuilder",
    "OptimizerSpec",
    "TunedRun",
    "TuningProtocol",
    "compare_on_surface",
    "default_optimizers",
    "tail_loss_gap",
    "tune",
]

#: Builds an optimizer from the parameters, the lr and the momentum (None: it has none).
OptimizerBuilder = Callable[[list[torch.nn.Parameter], float, float | None], torch.optim.Optimizer]


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer under comparison: its ``build`` function and its momentum grid.

    An empty ``momentum_grid`` means the optimizer has no momentum hyperparameter to tune
    (``build`` then receives ``momentum=None``).
    """

    name: str
    build: OptimizerBuilder
    momentum_grid: tuple[float, ...] = ()

    def factory(self, lr: float, momentum: float | None = None) -> OptimizerFactory:
        """The ``params -> optimizer`` factory that :func:`run_trajectory` takes."""

        def make(params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
            return self.build(params, lr, momentum)

        return make


def default_optimizers(momentum_grid: Sequence[float] = (0.9,)) -> dict[str, OptimizerSpec]:
    """The lecture's optimizers as the project's ``dltricks.optim`` classes, torch's defaults.

    SGD (plain gradient descent), Momentum (heavy ball, ``SGD(momentum=m)``), Nesterov
    (``SGD(momentum=m, nesterov=True)``), AdaGrad, RMSprop (alpha 0.99) and Adam
    (betas 0.9, 0.999). A run that blows up is a result here (the runner marks it diverged),
    so non-finite gradients flow as in torch (``nonfinite="ignore"``). Pass a mapping with
    other :class:`OptimizerSpec` entries to compare other optimizers.
    """
    from dltricks import optim

    grid = tuple(momentum_grid)
    return {
        "SGD": OptimizerSpec("SGD", lambda p, lr, m: optim.SGD(p, lr=lr, nonfinite="ignore")),
        "Momentum": OptimizerSpec(
            "Momentum",
            lambda p, lr, m: optim.SGD(p, lr=lr, momentum=_req(m), nonfinite="ignore"),
            grid,
        ),
        "Nesterov": OptimizerSpec(
            "Nesterov",
            lambda p, lr, m: optim.SGD(
                p, lr=lr, momentum=_req(m), nesterov=True, nonfinite="ignore"
            ),
            grid,
        ),
        "AdaGrad": OptimizerSpec(
            "AdaGrad", lambda p, lr, m: optim.Adagrad(p, lr=lr, nonfinite="ignore")
        ),
        "RMSprop": OptimizerSpec(
            "RMSprop", lambda p, lr, m: optim.RMSprop(p, lr=lr, nonfinite="ignore")
        ),
        "Adam": OptimizerSpec("Adam", lambda p, lr, m: optim.Adam(p, lr=lr, nonfinite="ignore")),
    }


def _req(momentum: float | None) -> float:
    if momentum is None:
        raise ValueError("this optimizer needs a momentum value")
    return momentum


@dataclass(frozen=True)
class TuningProtocol:
    """The grid, budget and thresholds of a comparison (see the module docstring)."""

    lr_grid: tuple[float, ...] = tuple(10.0 ** (k / 4) for k in range(-16, 1))
    steps: int = 500
    tol: float = 1e-3
    reach_radius: float = 0.05
    untuned_lr: float = 0.02
    untuned_momentum: float = 0.9

    def describe(self, optimizers: Mapping[str, OptimizerSpec] | None = None) -> str:
        """One paragraph stating the protocol (and the optimizers' momentum grids)."""
        lo, hi = min(self.lr_grid), max(self.lr_grid)
        per_decade = (len(self.lr_grid) - 1) / max(math.log10(hi / lo), 1e-12)
        grids = "; ".join(
            f"{k} {list(v.momentum_grid)}" for k, v in (optimizers or {}).items() if v.momentum_grid
        )
        return (
            f"Per surface, each optimizer's lr is tuned on a log grid of {len(self.lr_grid)} "
            f"values from {lo:.2g} to {hi:.2g} (~{per_decade:.0f} per decade)"
            + (f", momentum on {grids}" if grids else "")
            + f"; budget {self.steps} steps from the surface's start, float64. Objective: fewest "
            f"steps until the distance to the nearest global minimum stays below {self.tol:g}; "
            "ties and never-converged runs ranked by the mean loss gap f(x_t) − f* over the "
            "last 10% of steps, diverged runs last. 'reached' = kind of listed minimum within "
            f"{self.reach_radius:g} of the final point. Surfaces without a minimum (saddles) "
            f"are not tuned: every optimizer uses lr {self.untuned_lr:g} "
            f"(momentum {self.untuned_momentum:g})."
        )


@dataclass(frozen=True)
class TunedRun:
    """The winning run of one optimizer on one surface, plus the whole grid's outcomes."""

    surface: str
    optimizer: str
    lr: float
    momentum: float | None
    trajectory: Trajectory
    metrics: TrajectoryMetrics
    grid: tuple[dict[str, float | int | None], ...]

    def record(self) -> dict[str, object]:
        """JSON-serialisable summary (the fields the lab's results carry)."""
        m = self.metrics
        return {
            "surface": self.surface,
            "optimizer": self.optimizer,
            "lr": self.lr,
            "momentum": self.momentum,
            "steps_to_tolerance": m.steps_to_tolerance,
            "final_distance": m.final_distance,
            "final_loss": m.final_loss,
            "reached": m.reached,
            "steps_to_leave_saddle": m.steps_to_leave_saddle,
            "diverged": m.diverged,
            "diverged_at": m.diverged_at,
            "grid_size": len(self.grid),
        }


def tail_loss_gap(trajectory: Trajectory, f_star: float, fraction: float = 0.1) -> float:
    """Mean of f(x_t) - f* over the last ``fraction`` of the run (inf when diverged).

    The tie-break uses a tail mean rather than the final loss alone: a run bouncing chaotically
    (RMSprop at a large lr on Rastrigin) can land low at the last step by luck.
    """
    if trajectory.diverged or len(trajectory.losses) == 0:
        return math.inf
    count = max(1, round(fraction * len(trajectory.losses)))
    gap = float((trajectory.losses[-count:] - f_star).mean())
    return math.inf if math.isnan(gap) else gap


def _rank_key(
    metrics: TrajectoryMetrics, trajectory: Trajectory, f_star: float, lr: float
) -> tuple[float, ...]:
    steps = metrics.steps_to_tolerance
    return (
        float(metrics.diverged),
        math.inf if steps is None else float(steps),
        tail_loss_gap(trajectory, f_star),
        lr,
    )


def tune(
    surface: Surface,
    spec: OptimizerSpec,
    protocol: TuningProtocol,
    start: Sequence[float] | None = None,
) -> TunedRun:
    """Run ``spec`` over the protocol's grid on ``surface`` and keep the best run."""
    f_star = surface.min_value
    if f_star is None:
        momentum = protocol.untuned_momentum if spec.momentum_grid else None
        grid_points: list[tuple[float, float | None]] = [(protocol.untuned_lr, momentum)]
    else:
        momenta: Sequence[float | None] = spec.momentum_grid or (None,)
        grid_points = [(lr, m) for lr in protocol.lr_grid for m in momenta]

    best: tuple[tuple[float, ...], float, float | None, Trajectory, TrajectoryMetrics] | None
    best = None
    outcomes: list[dict[str, float | int | None]] = []
    for lr, momentum in grid_points:
        trajectory = run_trajectory(surface, spec.factory(lr, momentum), start, protocol.steps)
        metrics = measure(trajectory, surface, tol=protocol.tol, reach_radius=protocol.reach_radius)
        outcomes.append(
            {
                "lr": lr,
                "momentum": momentum,
                "steps_to_tolerance": metrics.steps_to_tolerance,
                "final_loss": metrics.final_loss,
            }
        )
        key = _rank_key(metrics, trajectory, 0.0 if f_star is None else f_star, lr)
        if best is None or key < best[0]:
            best = (key, lr, momentum, trajectory, metrics)
    assert best is not None
    _, lr, momentum, trajectory, metrics = best
    return TunedRun(surface.name, spec.name, lr, momentum, trajectory, metrics, tuple(outcomes))


def compare_on_surface(
    surface: Surface,
    optimizers: Mapping[str, OptimizerSpec],
    protocol: TuningProtocol,
    start: Sequence[float] | None = None,
) -> list[TunedRun]:
    """Tune every optimizer in ``optimizers`` on ``surface``; one :class:`TunedRun` each."""
    return [tune(surface, spec, protocol, start) for spec in optimizers.values()]
