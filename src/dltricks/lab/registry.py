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

TRICKS: tuple[str, ...] = (
    "adaptive learning rate",
    "new activation functions",
    "early stopping",
    "regularization",
    "dropout",
    "error surfaces",
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
    """

    name: str
    claim: str
    source: str
    tricks: tuple[str, ...]
    configure: Callable[[bool], ExperimentConfig]
    run: Callable[[RunContext], dict[str, Any]]
    headline: str | None = None

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
