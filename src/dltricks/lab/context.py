"""What an experiment sees while it runs: settings, seeds, data, resumable units, figures."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure

from dltricks.data import SplitDataset, load_dataset
from dltricks.lab.results import (
    CorruptFileError,
    canonical_json,
    config_hash,
    read_json,
    write_json,
)


class ProgressSink(Protocol):
    """Where a run reports progress (the CLI draws a bar; tests pass nothing)."""

    def plan(self, total: int) -> None: ...

    def advance(self, label: str) -> None: ...


class SilentProgress:
    """A progress sink that shows nothing."""

    def plan(self, total: int) -> None:
        return None

    def advance(self, label: str) -> None:
        return None


@dataclass
class RunContext:
    """The settings and services of one experiment run.

    An experiment is a set of independent *units* (one setting and seed: one training run, one
    trajectory...). ``ctx.unit(key, compute)`` runs ``compute`` and stores its record under
    ``units/`` before returning it; a resumed run finds finished units there and does not run
    them again, which is what makes an interrupted run end with the same results.
    """

    experiment: str
    out_dir: Path
    config: dict[str, Any]
    seeds: tuple[int, ...]
    quick: bool
    data_dir: Path | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    resume: bool = False
    progress: ProgressSink = field(default_factory=SilentProgress)
    records: list[dict[str, Any]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    key_names: list[str] = field(default_factory=list)
    _datasets: dict[tuple[str, int], SplitDataset] = field(default_factory=dict)

    @property
    def units_dir(self) -> Path:
        """Where the experiment keeps its per-unit records (resumable work)."""
        return self.out_dir / "units"

    def figure(self, name: str) -> Path:
        """Where to save the figure ``name`` (a PNG in the experiment's folder)."""
        return self.out_dir / f"{name}.png"

    def save_figure(self, fig: Figure, name: str) -> Path:
        """Save ``fig`` as the figure ``name`` (see :meth:`figure`); returns its path."""
        from dltricks.lab.figures import save_figure  # matplotlib only when plotting

        return save_figure(fig, self.figure(name))

    def data(self, name: str, *, seed: int = 0) -> SplitDataset:
        """A data set by name, loaded once per run.

        With ``--data-dir`` a full-size run that asks for MNIST-1D gets real MNIST from the
        IDX files there instead (quick runs keep their small embedded data, to stay within
        their time budget). The names actually loaded are listed in ``results.json``.
        """
        if name == "mnist1d" and self.data_dir is not None and not self.quick:
            name = "mnist"
        key = (name, seed)
        if key not in self._datasets:
            self._datasets[key] = load_dataset(
                name, data_dir=self.data_dir, seed=seed, device=self.device
            )
        return self._datasets[key]

    @property
    def datasets_used(self) -> list[str]:
        """The names of the data sets this run loaded, in load order."""
        return list(dict.fromkeys(name for name, _ in self._datasets))

    def unit(self, key: dict[str, Any], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run (or, when resuming, reuse) one unit and append its record to the results.

        ``key`` identifies the unit (setting and seed) and is stored with the record; the
        record returned by ``compute`` is merged over it.
        """
        record = self._cached(key, lambda: {**key, **compute()})
        self.records.append(record)
        self._advance(key)
        return record

    def unit_records(
        self, key: dict[str, Any], compute: Callable[[], list[dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        """Like :meth:`unit` for a unit that yields several records (e.g. one per optimizer)."""
        records = self._cached(key, lambda: {"records": [{**key, **r} for r in compute()]})
        self.records.extend(records["records"])
        self._advance(key)
        return list(records["records"])

    def _advance(self, key: dict[str, Any]) -> None:
        self.key_names.extend(k for k in key if k not in self.key_names)
        self.progress.advance(", ".join(f"{k}={v}" for k, v in key.items()))

    def _cached(self, key: dict[str, Any], compute: Callable[[], dict[str, Any]]) -> Any:
        path = self.units_dir / f"{config_hash(key)}.json"
        stored_key = _jsonable(key)
        if self.resume and path.exists():
            try:
                stored = read_json(path)
                if stored.get("key") == stored_key:
                    return stored["value"]
            except CorruptFileError as error:
                # Keep the damaged file for inspection and recompute the unit.
                aside = path.with_suffix(".corrupt")
                shutil.move(path, aside)
                self.notices.append(f"{error}; moved to {aside.name} and recomputed")
        value = _jsonable(compute())
        self.units_dir.mkdir(parents=True, exist_ok=True)
        write_json(path, {"key": stored_key, "value": value})
        return value


def _jsonable(value: Any) -> Any:
    """The value as it reads back from JSON (tuples become lists, keys strings)."""
    return json.loads(canonical_json(value))
