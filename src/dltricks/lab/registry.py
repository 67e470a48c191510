"""The registry of experiments: each is a module under :mod:`dltricks.lab.experiments`."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dltricks.lab.context import RunContext
    from dltricks.lab.settings import ExperimentConfig
    from dltricks.lab.verdicts import Verdict

#: The report's sections, in the lecture's order: first what helps a deep network train (new
#: activations; adaptive learning rates; the error surface that momentum rolls over), then what
#: helps it generalise (early stopping, regularization, dropout).
TRICKS: tuple[str, ...] = (
    "new activation functions",
    "adaptive learning rate",
    "error surfaces",
    "early stopping",
    "regularization",
    "dropout",
)


@dataclass(frozen=True)
class Experiment:
    """A reproducible experiment.

    Attributes:
        name: the CLI name (``dltricks run NAME``).
        claim: the claim it tests, in one sentence.
        source: where the claim comes from.
        tricks: which sections of the report it belongs to (from :data:`TRICKS`).
        configure: ``configure(quick) -> config``: the typed settings
            (:class:`~dltricks.lab.settings.ExperimentConfig`) of the quick or full size.
        run: ``run(ctx) -> summary``: trains, writes figures into ``ctx.out_dir``, records one
            record per setting and seed through ``ctx.unit``, and returns a summary dict.
        headline: the numeric summary entry that best tells runs with different settings
            apart (a sweep's table shows it); ``None`` lets the table pick one.
        question: the question the experiment answers, as the report's title of it.
        judge: ``judge(results) -> [Verdict]``: whether each claim held, decided by a stated
            rule from the measured numbers (``results`` as in results.json: ``summary``,
            ``records``, ``config``); the runner stores them as ``results["verdicts"]``.
        table: ``table(results) -> {"headers": [...], "rows": [...], "note": ...}``: the
            report's compact table (at most 15 rows); ``None``: the report summarises the
            records over seeds.
    """

    name: str
    claim: str
    source: str
    tricks: tuple[str, ...]
    configure: Callable[[bool], ExperimentConfig]
    run: Callable[[RunContext], dict[str, Any]]
    headline: str | None = None
    question: str = ""
    judge: Callable[[dict[str, Any]], list[Verdict]] | None = None
    table: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        unknown = [t for t in self.tricks if t not in TRICKS]
        if unknown:
            raise ValueError(f"experiment {self.name!r}: unknown trick(s) {unknown}")


_REGISTRY: dict[str, Experiment] = {}


def register(experiment: Experiment) -> Experiment:
    """Add ``experiment`` to the registry (its name must be new)."""
    if experiment.name in _REGISTRY and _REGISTRY[experiment.name] is not experiment:
        raise ValueError(f"an experiment named {experiment.name!r} is already registered")
    _REGISTRY[experiment.name] = experiment
    return experiment


def _load_all() -> None:
    from dltricks.lab import experiments

    for module in pkgutil.iter_modules(experiments.__path__):
        importlib.import_module(f"{experiments.__name__}.{module.name}")


def all_experiments() -> dict[str, Experiment]:
    """Every registered experiment, by name, in name order."""
    _load_all()
    return dict(sorted(_REGISTRY.items()))


def get_experiment(name: str) -> Experiment:
    """The experiment called ``name``; ValueError listing the known names otherwise."""
    experiments = all_experiments()
    if name not in experiments:
        known = ", ".join(experiments) or "none"
        raise ValueError(f"unknown experiment {name!r}; known experiments: {known}")
    return experiments[name]
