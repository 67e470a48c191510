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


EXPERIMENT = register(
    Experiment(
        name="surfaces",
        claim="Momentum helps a descent roll through plateaus and out of saddles and shallow "
        "minima, and converges faster on ill-conditioned valleys.",
        source="Hung-yi Lee, Tips for Training DNN; Goh 2017, Why Momentum Really Works",
        tricks=("error surfaces",),
        configure=configure,
        run=run,
    )
)
