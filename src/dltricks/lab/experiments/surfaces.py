"""``surfaces``: plateaus, local minima and saddle points, and momentum as a rolling ball.

Claim (Hung-yi Lee): training is a ball rolling on an error surface with three traps — very
slow plateaus, local minima and saddle points; momentum, the ball's inertia, may carry it out
("not guaranteed, but a great step"). Goh (2017, "Why Momentum Really Works"): on a quadratic
with condition number kappa, heavy-ball momentum at its optimal step converges at
(sqrt(kappa) - 1)/(sqrt(kappa) + 1) per step against gradient descent's (kappa - 1)/(kappa + 1).

Setup: the project's optimizers (SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam) on ten 2-D
surfaces from their standard starts, each optimizer's lr (and momentum) tuned per surface on a
stated grid (see ``protocol`` in the summary); Goh's rates measured on the quadratic; gradient
descent and momentum from the same start on the saddle and the double well. Deterministic:
the seed is recorded but nothing is random.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from dltricks.lab.context import RunContext
from dltricks.lab.registry import Experiment, register
from dltricks.lab.settings import (
    BETA,
    SEEDS,
    Choice,
    ExperimentConfig,
    Float,
    ListOf,
)
from dltricks.lab.verdicts import Verdict, judged
from dltricks.surfaces.experiment import (
    SURFACES_IN_EXPERIMENT,
    THEORY_KAPPAS,
    compare_surface,
    escape_section,
    protocol_for,
)
from dltricks.surfaces.tuning import default_optimizers


@dataclass(frozen=True)
class SurfacesConfig(ExperimentConfig):
    """The settings of ``surfaces``: which surfaces, the momentum values every momentum
    optimizer is tuned over, and the condition numbers of the theory checks."""

    experiment: ClassVar[str] = "surfaces"

    surfaces: Annotated[list[str], ListOf(Choice(SURFACES_IN_EXPERIMENT), unique=True)]
    momentum_grid: Annotated[list[float], ListOf(BETA, max_length=20, unique=True)]
    theory_kappas: Annotated[list[float], ListOf(Float(1.0, 1e6), max_length=20, unique=True)]
    seeds: Annotated[int, SEEDS]


def configure(quick: bool) -> SurfacesConfig:
    return SurfacesConfig(
        surfaces=list(SURFACES_IN_EXPERIMENT),
        momentum_grid=[0.9] if quick else [0.5, 0.9, 0.99],
        theory_kappas=list(THEORY_KAPPAS),
        seeds=1,
    )


def run(ctx: RunContext) -> dict[str, Any]:
    from dltricks.surfaces.experiment import theory_section

    cfg = ctx.config
    specs = default_optimizers(tuple(cfg["momentum_grid"]))
    protocol = protocol_for(ctx.quick)
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    ctx.progress.plan(len(cfg["surfaces"]) + 2)
    for name in cfg["surfaces"]:

        def compare(name: str = name) -> list[dict[str, Any]]:
            return compare_surface(name, specs, protocol, ctx.out_dir)[0]

        ctx.unit_records({"surface": name}, compare)
    # The theory check and the escape demonstrations are summaries, not comparison records.
    theory = ctx.unit(
        {"section": "theory"},
        lambda: {"checks": theory_section(cfg["theory_kappas"], ctx.out_dir)[0]},
    )["checks"]
    demos = ctx.unit({"section": "escape"}, lambda: {"runs": escape_section(ctx.out_dir)[0]})[
        "runs"
    ]
    # Keep results.json's records to the per-surface comparison.
    ctx.records[:] = [r for r in ctx.records if "surface" in r]
    return _summary(ctx.records, theory, demos, protocol.describe(specs))


def _summary(
    records: list[dict[str, Any]],
    theory: list[dict[str, Any]],
    demos: list[dict[str, Any]],
    protocol: str,
) -> dict[str, Any]:
    gaps = {
        method: max(c["relative_error"] for c in theory if c["method"] == method)
        for method in sorted({c["method"] for c in theory})
    }
    winners: dict[str, str] = {}
    for surface in sorted({r["surface"] for r in records}):
        done = [
            r
            for r in records
            if r["surface"] == surface and r.get("steps_to_tolerance") is not None
        ]
        if done:
            best = min(done, key=lambda r: r["steps_to_tolerance"])
            winners[surface] = f"{best['optimizer']} ({best['steps_to_tolerance']} steps)"
    parts = [f"fastest to tolerance: {', '.join(f'{s}: {w}' for s, w in winners.items())}"]
    parts += [f"{m} rates within {gap:.2%} of Goh's theory" for m, gap in gaps.items()]
    return {
        "protocol": protocol,
        "theory": theory,
        "demonstrations": demos,
        "fastest": winners,
        "theory_worst_relative_error": gaps,
        "finding": "; ".join(parts) + ".",
    }


#: Goh's rate counts as met when the measured rate is within 5% of it.
RATE_TOLERANCE = 0.05


def _steps(value: Any) -> float:
    """Steps to an event; never (None) is infinitely many."""
    return float(value) if value is not None else math.inf


def judge(results: dict[str, Any]) -> list[Verdict]:
    """Rules: on each quadratic (condition number kappa) heavy ball's measured rate is within
    5% of Goh's and below gradient descent's measured rate; in each escape demonstration
    momentum leaves the saddle in fewer steps (never: infinitely many), or ends in the global
    minimum while gradient descent does not; on each surface where any run reaches tolerance,
    the faster of Momentum and Nesterov (tuned) needs fewer steps than tuned SGD."""
    s = results["summary"]
    verdicts = []
    theory = s["theory"]
    kappas = sorted({c["kappa"] for c in theory})
    rate_checks = {}
    for kappa in kappas:
        by = {c["method"]: c for c in theory if c["kappa"] == kappa}
        hb, gd = by.get("heavy ball"), by.get("gradient descent")
        if hb is not None and gd is not None:
            rate_checks[f"kappa {kappa:g}"] = (
                hb["relative_error"] <= RATE_TOLERANCE and hb["measured_rate"] < gd["measured_rate"]
            )
    if rate_checks:
        worst = s["theory_worst_relative_error"].get("heavy ball", math.nan)
        verdicts.append(
            judged(
                "On an ill-conditioned quadratic heavy-ball momentum converges at Goh's rate "
                "(sqrt(kappa) - 1)/(sqrt(kappa) + 1), faster than gradient descent.",
                rate_checks,
                rule=f"heavy ball's measured rate within {RATE_TOLERANCE:.0%} of theory and "
                "below gradient descent's, for each kappa",
                measured=f"heavy ball within {worst:.2%} of theory at kappa "
                + ", ".join(f"{k:g}" for k in kappas),
            )
        )
    escape_checks = {}
    for demo in s["demonstrations"]:
        if demo["momentum"] == 0:
            continue
        twin = next(
            (
                d
                for d in s["demonstrations"]
                if d["momentum"] == 0
                and d["surface"] == demo["surface"]
                and d["start"] == demo["start"]
            ),
            None,
        )
        if twin is None:
            continue
        where = f"{demo['surface']} from ({demo['start'][0]:g}, {demo['start'][1]:g})"
        if demo["surface"] == "saddle":
            escape_checks[where] = _steps(demo["steps_to_leave_saddle"]) < _steps(
                twin["steps_to_leave_saddle"]
            )
        else:
            escape_checks[where] = demo["reached"] == "global" != twin["reached"]
    if escape_checks:
        verdicts.append(
            judged(
                "Momentum carries a descent off a saddle point and out of a shallow local "
                "minimum where gradient descent at the same learning rate stays.",
                escape_checks,
                rule="same lr and start: momentum leaves the saddle in fewer steps, or ends in "
                "the global minimum while gradient descent does not",
                measured=f"{sum(escape_checks.values())} of {len(escape_checks)} demonstrations",
            )
        )
    faster = {}
    for surface in sorted({r["surface"] for r in results["records"]}):
        steps = {
            r["optimizer"]: _steps(r.get("steps_to_tolerance"))
            for r in results["records"]
            if r["surface"] == surface
        }
        heavy = min(steps.get("Momentum", math.inf), steps.get("Nesterov", math.inf))
        if "SGD" in steps and math.isfinite(min(heavy, steps["SGD"])):
            faster[surface] = heavy < steps["SGD"]
    if faster:
        verdicts.append(
            judged(
                "With tuned learning rates momentum reaches the minimum in fewer steps than "
                "plain gradient descent.",
                faster,
                rule="on each surface where a run reaches tolerance, the faster of tuned "
                "Momentum and Nesterov needs fewer steps than tuned SGD",
                measured=f"on {sum(faster.values())} of {len(faster)} surfaces",
            )
        )
    return verdicts


EXPERIMENT = register(
    Experiment(
        name="surfaces",
        question="Can momentum roll a descent through plateaus, saddle points and local minima?",
        judge=judge,
        claim="Momentum helps a descent roll through plateaus and out of saddles and shallow "
        "minima, and converges faster on ill-conditioned valleys.",
        source="Hung-yi Lee, Tips for Training DNN; Goh 2017, Why Momentum Really Works",
        tricks=("error surfaces",),
        configure=configure,
        run=run,
    )
)
