"""The ``surfaces`` experiment: every optimizer, fairly tuned, on every surface.

:func:`run_surfaces_experiment` tunes each optimizer per surface (see
:mod:`dltricks.surfaces.tuning`), runs the Goh (2017) theory check and the saddle / double
well demonstrations, writes the figures into ``out_dir`` and returns a JSON-serialisable dict
``{config, protocol, records, theory, demonstrations, figures}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from dltricks.surfaces.escape import EscapeRun, double_well_demo, saddle_demo
from dltricks.surfaces.functions import Surface, get_surface, quadratic
from dltricks.surfaces.plots import (
    LabelledTrajectory,
    animate_trajectories,
    plot_contour,
    plot_loss_curves,
    plot_theory,
)
from dltricks.surfaces.theory import check_rates
from dltricks.surfaces.tuning import (
    OptimizerSpec,
    TunedRun,
    TuningProtocol,
    compare_on_surface,
    default_optimizers,
)

__all__ = [
    "SURFACES_IN_EXPERIMENT",
    "THEORY_KAPPAS",
    "compare_surface",
    "escape_section",
    "protocol_for",
    "run_label",
    "run_surfaces_experiment",
    "theory_section",
]

SURFACES_IN_EXPERIMENT: tuple[str, ...] = (
    "quadratic",
    "rosenbrock",
    "beale",
    "himmelblau",
    "rastrigin",
    "plateau",
    "saddle",
    "monkey_saddle",
    "double_well",
    "goh_banana",
)
THEORY_KAPPAS: tuple[float, ...] = (4.0, 10.0, 100.0, 1000.0)


def _protocol(quick: bool) -> TuningProtocol:
    if quick:
        # Half-decade lr grid, 300 steps: a coarse but still per-optimizer tuning.
        return TuningProtocol(lr_grid=tuple(10.0 ** (k / 2) for k in range(-10, 1)), steps=300)
    # Down to 1e-5: from Beale's start (3, 4) the gradient is ~1e5 and momentum needs it.
    return TuningProtocol(lr_grid=tuple(10.0 ** (k / 4) for k in range(-20, 1)), steps=1000)


def run_label(run: TunedRun, *, short: bool = False) -> str:
    """Legend text: optimizer, its tuned hyperparameters and (unless ``short``) its outcome."""
    hyper = f"lr={run.lr:.3g}" + ("" if run.momentum is None else f", m={run.momentum:g}")
    if short:
        return f"{run.optimizer} ({hyper})"
    m = run.metrics
    if m.steps_to_leave_saddle is not None:
        outcome = f"left the saddle at step {m.steps_to_leave_saddle}"
    elif m.diverged:
        outcome = f"diverged at step {m.diverged_at} (every lr on the grid diverged)"
    elif m.steps_to_tolerance is not None:
        outcome = f"{m.steps_to_tolerance} steps to tol"
    elif m.reached == "local":
        outcome = f"stuck in a local minimum, dist {m.final_distance:.2g}"
    elif m.final_distance is not None:
        outcome = f"not within tol, final dist {m.final_distance:.2g}"
    else:
        outcome = "did not leave the saddle"
    return f"{run.optimizer} ({hyper}): {outcome}"


def _escape_label(run: EscapeRun) -> str:
    m = run.metrics
    if run.surface == "saddle":
        left = (
            "never left"
            if m.steps_to_leave_saddle is None
            else (f"left at step {m.steps_to_leave_saddle}")
        )
        return f"{run.optimizer} from ({run.start[0]:g}, {run.start[1]:g}): {left}"
    return f"{run.optimizer} from ({run.start[0]:g}, {run.start[1]:g}): reached {m.reached}"


def compare_surface(
    name: str,
    specs: Mapping[str, OptimizerSpec],
    protocol: TuningProtocol,
    out: Path,
) -> tuple[list[dict[str, object]], dict[str, str]]:
    """Tune every optimizer on surface ``name``; write its contour, loss and GIF figures.

    Returns the records (one per optimizer) and the figures written, by key.
    """
    surface: Surface = quadratic(10.0) if name == "quadratic" else get_surface(name)
    runs = compare_on_surface(surface, specs, protocol)
    labelled = [LabelledTrajectory(run_label(run), run.trajectory) for run in runs]
    x0, y0 = surface.start
    caption = f"Start ({x0:.3g}, {y0:.3g}). "
    if surface.min_value is None:
        caption += (
            f"No minimum exists, so nothing is tuned: every optimizer runs at lr "
            f"{protocol.untuned_lr:g}; runs head to −∞ and 'diverged' means |x| or |y| "
            "passed 1e6. "
        )
    caption += protocol.describe(specs)
    figures = {
        f"contour_{name}": str(
            plot_contour(surface, labelled, out / f"contour_{name}.png", caption=caption)
        ),
        f"loss_{name}": str(
            plot_loss_curves(surface, labelled, out / f"loss_{name}.png", caption=caption)
        ),
    }
    short = [LabelledTrajectory(run_label(r, short=True), r.trajectory) for r in runs]
    figures[f"gif_{name}"] = str(
        animate_trajectories(surface, short, out / f"trajectories_{name}.gif")
    )
    return [run.record() for run in runs], figures


def theory_section(
    theory_kappas: Sequence[float], out: Path
) -> tuple[list[dict[str, object]], dict[str, str]]:
    """Goh's rate check on the quadratic for each kappa, and its figure."""
    checks = check_rates(theory_kappas)
    theory_caption = (
        "Gradient descent at α = 2/(λ₁+λₙ) and heavy ball (SGD, momentum=β, lr=α) at "
        "α = (2/(√λ₁+√λₙ))², β = ((√λₙ−√λ₁)/(√λₙ+√λ₁))², from (1, 1), float64. Measured "
        "rate: geometric-mean contraction of the distance to the optimum over the second half "
        "of the run, (d_T/d_{T/2})^(2/T), T chosen so that ρ^T ≈ 1e-200 (at most 3000 steps)."
    )
    figure = plot_theory(checks, out / "theory.png", caption=theory_caption)
    return [c.record() for c in checks], {"theory": str(figure)}


def escape_section(out: Path) -> tuple[list[dict[str, object]], dict[str, str]]:
    """Gradient descent against momentum on the saddle and the double well, with figures."""
    saddle_runs = saddle_demo()
    well_runs = double_well_demo()
    demo_caption = "Same lr (0.01) for both; the only difference is momentum 0.9 (torch SGD). "
    figures: dict[str, str] = {}
    for key, demo in (("escape_saddle", saddle_runs), ("escape_double_well", well_runs)):
        surface = get_surface("saddle" if key == "escape_saddle" else "double_well")
        labelled = [LabelledTrajectory(_escape_label(r), r.trajectory) for r in demo]
        figures[key] = str(
            plot_contour(
                surface,
                labelled,
                out / f"{key}.png",
                title=f"{surface.name} ({surface.formula}): gradient descent vs momentum",
                caption=demo_caption
                + (
                    f"Leaving = distance from the saddle (0, 0) > {surface.saddle_radius:g}."
                    if key == "escape_saddle"
                    else "Reached = listed minimum within 0.05 of the final point."
                ),
            )
        )
    return [r.record() for r in (*saddle_runs, *well_runs)], figures


def protocol_for(quick: bool) -> TuningProtocol:
    """The tuning protocol of the quick or full experiment."""
    return _protocol(quick)


def run_surfaces_experiment(
    out_dir: str | Path,
    *,
    quick: bool,
    seed: int,
    optimizers: Mapping[str, OptimizerSpec] | None = None,
    surfaces: Sequence[str] = SURFACES_IN_EXPERIMENT,
    theory_kappas: Sequence[float] = THEORY_KAPPAS,
) -> dict[str, object]:
    """Tune and compare ``optimizers`` (default :func:`default_optimizers`) on ``surfaces``.

    Quick mode: half-decade lr grid (1e-5 .. 1), momentum 0.9 only, 300 steps. Full mode:
    quarter-decade grid (1e-5 .. 1), momentum in {0.5, 0.9, 0.99}, 1000 steps. Both write, per
    surface, a contour plot, loss curves and a GIF, plus the theory and escape figures.
    Everything is deterministic (fixed starts, full-batch gradients); ``seed`` is recorded for
    the lab's bookkeeping and seeds nothing.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    specs = (
        dict(optimizers)
        if optimizers is not None
        else default_optimizers((0.9,) if quick else (0.5, 0.9, 0.99))
    )
    protocol = _protocol(quick)
    figures: dict[str, str] = {}
    records: list[dict[str, object]] = []
    for name in surfaces:
        surface_records, surface_figures = compare_surface(name, specs, protocol, out)
        records.extend(surface_records)
        figures.update(surface_figures)
    theory, theory_figures = theory_section(theory_kappas, out)
    figures.update(theory_figures)
    demonstrations, demo_figures = escape_section(out)
    figures.update(demo_figures)
    return {
        "config": {
            "quick": quick,
            "seed": seed,
            "surfaces": list(surfaces),
            "optimizers": list(specs),
            "steps": protocol.steps,
            "lr_grid": list(protocol.lr_grid),
            "momentum_grids": {k: list(v.momentum_grid) for k, v in specs.items()},
            "tol": protocol.tol,
            "reach_radius": protocol.reach_radius,
            "quadratic_kappa": 10.0,
            "theory_kappas": list(theory_kappas),
        },
        "protocol": protocol.describe(specs),
        "records": records,
        "theory": theory,
        "demonstrations": demonstrations,
        "figures": figures,
    }
