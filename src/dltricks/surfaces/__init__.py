"""Error surfaces: 2-D test functions, a trajectory runner, fair tuning and a theory check.

The lecture pictures training as a ball rolling on an error surface with three traps (slow
plateaus, local minima, saddle points) and momentum as the ball's inertia. This package makes
those pictures measurable:

- :mod:`~dltricks.surfaces.functions`: the surfaces, their analytic gradients and minima;
- :mod:`~dltricks.surfaces.runner`: run any ``torch.optim`` optimizer and measure the run;
- :mod:`~dltricks.surfaces.tuning`: per-optimizer, per-surface tuning on a stated grid;
- :mod:`~dltricks.surfaces.theory`: Goh (2017)'s rates on a quadratic, measured;
- :mod:`~dltricks.surfaces.escape`: saddle and double-well demonstrations;
- :mod:`~dltricks.surfaces.plots`: contours, loss curves, GIFs, the theory figure;
- :mod:`~dltricks.surfaces.experiment`: the whole set, as the lab's ``surfaces`` experiment.
"""

from __future__ import annotations

from dltricks.surfaces.escape import EscapeRun, double_well_demo, saddle_demo
from dltricks.surfaces.experiment import (
    SURFACES_IN_EXPERIMENT,
    THEORY_KAPPAS,
    run_label,
    run_surfaces_experiment,
)
from dltricks.surfaces.functions import (
    Minimum,
    MinimumKind,
    Surface,
    beale,
    double_well,
    get_surface,
    goh_banana,
    himmelblau,
    monkey_saddle,
    plateau,
    quadratic,
    rastrigin,
    rosenbrock,
    saddle,
    surface_names,
)
from dltricks.surfaces.plots import (
    LabelledTrajectory,
    animate_trajectories,
    plot_contour,
    plot_loss_curves,
    plot_theory,
)
from dltricks.surfaces.runner import (
    OptimizerFactory,
    Reached,
    Trajectory,
    TrajectoryMetrics,
    final_distance,
    measure,
    reached_minimum,
    run_trajectory,
    steps_to_leave,
    steps_to_tolerance,
)
from dltricks.surfaces.theory import (
    RateCheck,
    check_rates,
    gradient_descent_optimal,
    heavy_ball_optimal,
    measured_rate,
    theoretical_rate,
)
from dltricks.surfaces.tuning import (
    OptimizerBuilder,
    OptimizerSpec,
    TunedRun,
    TuningProtocol,
    compare_on_surface,
    default_optimizers,
    tail_loss_gap,
    tune,
)

__all__ = [
    "SURFACES_IN_EXPERIMENT",
    "THEORY_KAPPAS",
    "EscapeRun",
    "LabelledTrajectory",
    "Minimum",
    "MinimumKind",
    "OptimizerBuilder",
    "OptimizerFactory",
    "OptimizerSpec",
    "RateCheck",
    "Reached",
    "Surface",
    "Trajectory",
    "TrajectoryMetrics",
    "TunedRun",
    "TuningProtocol",
    "animate_trajectories",
    "beale",
    "check_rates",
    "compare_on_surface",
    "default_optimizers",
    "double_well",
    "double_well_demo",
    "final_distance",
    "get_surface",
    "goh_banana",
    "gradient_descent_optimal",
    "heavy_ball_optimal",
    "himmelblau",
    "measure",
    "measured_rate",
    "monkey_saddle",
    "plateau",
    "plot_contour",
    "plot_loss_curves",
    "plot_theory",
    "quadratic",
    "rastrigin",
    "reached_minimum",
    "rosenbrock",
    "run_label",
    "run_surfaces_experiment",
    "run_trajectory",
    "saddle",
    "saddle_demo",
    "steps_to_leave",
    "steps_to_tolerance",
    "surface_names",
    "tail_loss_gap",
    "theoretical_rate",
    "tune",
]
