"""A sweep: one experiment, a grid over its settings, and seeds, expanded into run specs.

A sweep over ``G`` grid points and ``K`` seeds is ``G * K`` independent runs. Each run is one
ordinary lab run (:func:`dltricks.lab.runner.run_experiment`) with ``seeds=1`` at one seed and
the grid point as ``--set`` overrides. Its id is :func:`~dltricks.lab.results.config_hash` of
the run's full configuration (:func:`~dltricks.lab.runner.run_config`): the same settings give
the same id in every process and on every machine, so the store can tell which runs are done
no matter who ran them, and a changed experiment default gives new ids (old results no longer
apply).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from dltricks.lab.registry import get_experiment
from dltricks.lab.results import canonical_json, config_hash
from dltricks.lab.runner import RunError, run_config

__all__ = ["RunSpec", "SweepSpec", "SweepSpecError", "expand", "parse_grid_item", "split_values"]


class SweepSpecError(ValueError):
    """A sweep description that cannot be expanded; the message says what to change."""


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: an experiment at one grid point and one seed.

    ``overrides`` holds only the grid's settings (the rest are the experiment's defaults);
    ``run_id`` is the hash of the full configuration, computed once at expansion.
    """

    experiment: str
    quick: bool
    overrides: dict[str, Any]
    seed: int
    run_id: str

    def to_json(self) -> dict[str, Any]:
        """The spec as stored in the sweep's store and sent to workers."""
        return {
            "experiment": self.experiment,
            "quick": self.quick,
            "overrides": self.overrides,
            "seed": self.seed,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> RunSpec:
        """The inverse of :meth:`to_json` (the id is recomputed, so it cannot disagree)."""
        return make_run_spec(
            value["experiment"],
            quick=bool(value["quick"]),
            overrides=dict(value["overrides"]),
            seed=int(value["seed"]),
        )

    def label(self) -> str:
        """The settings that vary in a sweep, as ``key=value`` text, then the seed."""
        parts = [f"{k}={_short(v)}" for k, v in self.overrides.items()]
        return ", ".join([*parts, f"seed={self.seed}"])


@dataclass(frozen=True)
class SweepSpec:
    """A sweep description.

    Attributes:
        experiment: a registered experiment name.
        grid: setting name -> the values to try (each a JSON value); the sweep takes their
            Cartesian product, in the order given.
        seeds: how many seeds per grid point; run ``i`` uses seed ``seed + i``.
        seed: the first seed.
        quick: the experiment's quick size.
    """

    experiment: str
    grid: dict[str, list[Any]] = field(default_factory=dict)
    seeds: int = 1
    seed: int = 0
    quick: bool = False


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def make_run_spec(experiment: str, *, quick: bool, overrides: dict[str, Any], seed: int) -> RunSpec:
    """A run spec with its id: the config hash of the lab run it stands for.

    Raises:
        SweepSpecError: an unknown setting, a value its typed rule refuses, or a bad seed
            (from the lab's own validation).
    """
    # Checked before anything is converted (JSON would turn an infinite rate into null), then
    # kept as the typed settings normalised them: the worker, the store and the id all see
    # the same values (1 and 1.0 are one learning rate; tuples become lists).
    try:
        config = run_config(
            experiment, quick=quick, seed=seed, seeds=1, data_dir=None, overrides=overrides
        )
    except RunError as error:
        raise SweepSpecError(str(error)) from None
    settings = config["config"]
    normalised = json.loads(canonical_json({k: settings[k] for k in overrides}))
    return RunSpec(experiment, quick, normalised, seed, config_hash(config))


def expand(sweep: SweepSpec) -> list[RunSpec]:
    """Every run of ``sweep``: the grid's Cartesian product (first key slowest) x seeds.

    Raises:
        SweepSpecError: unknown experiment or setting, an empty value list, ``seeds`` in the
            grid, fewer than one seed, or a negative first seed.
    """
    try:
        get_experiment(sweep.experiment)
    except ValueError as error:
        raise SweepSpecError(str(error)) from None
    if sweep.seeds < 1:
        raise SweepSpecError(f"--seeds must be >= 1, got {sweep.seeds}")
    if sweep.seed < 0:
        raise SweepSpecError(f"--seed must be >= 0, got {sweep.seed}")
    if "seeds" in sweep.grid:
        raise SweepSpecError("the grid cannot vary 'seeds': each run has one seed; use --seeds K")
    for key, values in sweep.grid.items():
        if not values:
            raise SweepSpecError(f"grid setting {key!r} has no values")
    keys = list(sweep.grid)
    specs: list[RunSpec] = []
    seen: set[str] = set()
    for point in itertools.product(*(sweep.grid[k] for k in keys)):
        overrides = dict(zip(keys, point, strict=True))
        for seed in range(sweep.seed, sweep.seed + sweep.seeds):
            spec = make_run_spec(
                sweep.experiment, quick=sweep.quick, overrides=overrides, seed=seed
            )
            # A value listed twice gives the same run twice; run it once.
            if spec.run_id not in seen:
                seen.add(spec.run_id)
                specs.append(spec)
    return specs


def split_values(text: str) -> list[str]:
    """Split ``text`` at the commas that are not inside brackets, braces or quotes.

    ``0.1,0.01`` -> ``["0.1", "0.01"]``; ``[1,2],[3]`` -> ``["[1,2]", "[3]"]``.

    Raises:
        SweepSpecError: unbalanced brackets or quotes, or an empty value.
    """
    parts: list[str] = []
    depth = 0
    quote = False
    escaped = False
    start = 0
    for i, char in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quote = False
            continue
        if char == '"':
            quote = True
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
            if depth < 0:
                raise SweepSpecError(f"unbalanced {char!r} in {text!r}")
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if quote or depth != 0:
        raise SweepSpecError(f"unbalanced brackets or quotes in {text!r}")
    parts.append(text[start:])
    if any(not p.strip() for p in parts):
        raise SweepSpecError(f"empty value in {text!r}")
    return parts


def _value(raw: str) -> Any:
    # Like `dltricks run --set`: JSON when it parses, the text itself otherwise.
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def parse_grid_item(text: str) -> tuple[str, list[Any]]:
    """``key=v1,v2,...`` -> ``(key, [v1, v2, ...])``, each value JSON-parsed (else text).

    Raises:
        SweepSpecError: no ``=``, an empty key, or bad values (see :func:`split_values`).
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SweepSpecError(f"expected KEY=V1,V2,..., got {text!r}")
    try:
        values = [_value(v.strip()) for v in split_values(raw)]
    except SweepSpecError as error:
        raise SweepSpecError(f"grid setting {key!r}: {error}") from None
    return key, values
