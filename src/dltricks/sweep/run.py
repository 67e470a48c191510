"""Run a sweep: expand it, skip what the store has done, execute the rest, record each run.

Layout under ``out_root`` for experiment ``NAME``::

    sweep-NAME.sqlite          the store (one row per run; see dltricks.sweep.store)
    sweep-NAME/.lock           held by the driver: one driver per sweep at a time
    sweep-NAME/<run id>/NAME/  the run's results.json, figures, units

The store also keeps each sweep's description under the meta key ``sweep:<sweep id>``
(:func:`sweep_meta`): experiment, grid, seeds, the ``dltricks sweep`` command that reproduces it
and its run ids in grid order, so a report can show the sweep from the store alone.

The driver is the only writer of the store. Runs found ``done`` are skipped. Within one
invocation a run that failed for a retryable reason (a crash or an infrastructure failure:
:attr:`RunResult.retryable`) is tried again while it has used fewer than ``1 + retries``
attempts; an exception the run itself raised is not, since the same settings would raise it
again. A later invocation tries every ``failed`` run again while it has attempts left (the
user may have fixed the cause; a rerun with a larger ``retries`` gives more). A run that
diverges is not a failure: the experiment records it and the run is ``done``. Killing the
driver at any moment leaves every finished run recorded; the next invocation runs only the
others.
"""

from __future__ import annotations

import json
import shlex
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dltricks.lab.results import config_hash
from dltricks.lab.runner import exclusive_lock
from dltricks.sweep.executors import Executor, RunTask
from dltricks.sweep.integrity import prepared_store
from dltricks.sweep.spec import RunSpec, SweepSpec, expand
from dltricks.sweep.store import RunRow

__all__ = [
    "SilentSweepProgress",
    "SweepOutcome",
    "SweepProgress",
    "headline_metric",
    "run_sweep",
    "sweep_command",
    "sweep_id",
    "sweep_meta",
    "sweep_paths",
]

SWEEP_META = "sweep:"


class SweepProgress(Protocol):
    """Where a sweep reports runs as they finish (the CLI draws a bar)."""

    def start(self, total: int, skipped: int) -> None: ...

    def finished(self, spec: RunSpec, status: str, error: str | None) -> None:
        """``status``: done, failed (no attempts left) or retry (failed, queued again)."""


class SilentSweepProgress:
    """A sweep progress sink that shows nothing."""

    def start(self, total: int, skipped: int) -> None:
        return None

    def finished(self, spec: RunSpec, status: str, error: str | None) -> None:
        return None


@dataclass(frozen=True)
class SweepOutcome:
    """What a sweep invocation did, and the rows of its runs in grid order."""

    store_path: Path
    runs_dir: Path
    specs: list[RunSpec]
    rows: list[RunRow]
    executed: int
    skipped: int
    attempts: int
    seconds: float
    startup_seconds: float
    # What the store check and the runs found and repaired, one line each.
    notices: tuple[str, ...] = ()

    @property
    def failed(self) -> list[RunRow]:
        """The rows that did not finish (status other than ``done``)."""
        return [r for r in self.rows if r.status != "done"]


def sweep_paths(out_root: Path, experiment: str) -> tuple[Path, Path]:
    """``(store file, runs folder)`` of the sweeps of ``experiment`` under ``out_root``."""
    return out_root / f"sweep-{experiment}.sqlite", out_root / f"sweep-{experiment}"


def sweep_id(sweep: SweepSpec) -> str:
    """A stable id of the sweep description (its experiment, grid, seeds and size)."""
    return config_hash(_description(sweep))


def _description(sweep: SweepSpec) -> dict[str, Any]:
    return {
        "experiment": sweep.experiment,
        "grid": sweep.grid,
        "seeds": sweep.seeds,
        "seed": sweep.seed,
        "quick": sweep.quick,
    }


def _grid_value(value: Any) -> str:
    """``value`` as ``--grid`` reads it back (JSON if it parses, else the text itself)."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except json.JSONDecodeError:
            # Plain text stays plain unless it holds what splits or quotes a value list.
            if value == value.strip() and value and not any(c in value for c in ',[]{}"\\'):
                return value
    return json.dumps(value, separators=(",", ":"))


def sweep_command(sweep: SweepSpec) -> str:
    """The ``dltricks sweep`` command line that describes ``sweep`` (shell-quoted, no ``--out``).

    Every grid value is written so that ``--grid`` parses it back to the same JSON value; the
    executor is left out because a run's results do not depend on it.
    """
    parts = ["dltricks", "sweep", sweep.experiment]
    if sweep.quick:
        parts.append("--quick")
    for key, values in sweep.grid.items():
        parts += ["--grid", f"{key}={','.join(_grid_value(v) for v in values)}"]
    if sweep.seeds != 1:
        parts += ["--seeds", str(sweep.seeds)]
    if sweep.seed != 0:
        parts += ["--seed", str(sweep.seed)]
    return shlex.join(parts)


def sweep_meta(sweep: SweepSpec, specs: Sequence[RunSpec]) -> dict[str, Any]:
    """The store's meta entry of ``sweep``: ``{"sweep:<id>": description}``.

    The description holds experiment, seeds, seed, quick, ``grid`` as ``[key, values]`` pairs
    in the sweep's order, the ``command`` (:func:`sweep_command`) and the ``runs`` ids in grid
    order.
    """
    return {
        SWEEP_META + sweep_id(sweep): {
            **_description(sweep),
            # Pairs, not a mapping: the store's JSON sorts keys, and the grid's order is the
            # order of its runs (first key slowest).
            "grid": [[key, values] for key, values in sweep.grid.items()],
            "command": sweep_command(sweep),
            "runs": [s.run_id for s in specs],
        }
    }


def run_sweep(
    sweep: SweepSpec,
    *,
    out_root: Path,
    executor: Executor,
    retries: int = 2,
    progress: SweepProgress | None = None,
    specs: Sequence[RunSpec] | None = None,
) -> SweepOutcome:
    """Execute the runs of ``sweep`` that the store does not have as done.

    Args:
        executor: where runs execute; started here only if there is something to run (the
            caller closes it).
        retries: extra attempts for a run that crashed or met an infrastructure failure,
            counted across invocations.
        specs: the expansion of ``sweep`` if the caller already made it (the CLI does, to
            validate before writing).

    Raises:
        SweepSpecError: the sweep cannot be expanded.
        RunError: another driver holds this sweep.
    """
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    specs = list(specs) if specs is not None else expand(sweep)
    sink = progress or SilentSweepProgress()
    out_root = out_root.resolve()
    store_path, runs_dir = sweep_paths(out_root, sweep.experiment)
    clock = time.perf_counter()
    startup = 0.0
    executed = attempts = 0
    with (
        exclusive_lock(runs_dir),
        prepared_store(store_path, specs, runs_dir, sweep_meta(sweep, specs)) as (store, notices),
    ):
        by_id = {s.run_id: s for s in specs}
        rows = {r.id: r for r in store.rows(list(by_id))}
        used = {i: rows[i].attempts for i in by_id}
        todo = deque(
            s
            for s in specs
            if rows[s.run_id].status != "done" and rows[s.run_id].attempts < 1 + retries
        )
        skipped = sum(r.status == "done" for r in rows.values())
        sink.start(len(todo), skipped)
        try:
            if todo:
                started = time.perf_counter()
                executor.start()
                startup = time.perf_counter() - started
            in_flight = 0
            while todo or in_flight:
                while todo and in_flight < executor.capacity:
                    spec = todo.popleft()
                    store.mark_running(spec.run_id)
                    executor.submit(
                        RunTask(spec.run_id, spec.to_json(), str(runs_dir / spec.run_id))
                    )
                    in_flight += 1
                result = executor.wait_one()
                in_flight -= 1
                attempts += 1
                store.finish(
                    result.run_id,
                    ok=result.ok,
                    metrics=result.metrics,
                    error=result.error,
                    started=result.started,
                    finished=result.finished,
                    duration=result.duration,
                    host=result.host,
                )
                spec = by_id[result.run_id]
                notices.extend(result.notices)
                used[spec.run_id] += 1
                if result.ok:
                    executed += 1
                    sink.finished(spec, "done", None)
                elif result.retryable and used[spec.run_id] < 1 + retries:
                    todo.append(spec)
                    sink.finished(spec, "retry", result.error)
                else:
                    executed += 1
                    sink.finished(spec, "failed", result.error)
        finally:
            # Interrupted: runs handed out but not finished are not running any more.
            store.release_stale()
        final = store.rows([s.run_id for s in specs])
    return SweepOutcome(
        store_path=store_path,
        runs_dir=runs_dir,
        specs=specs,
        rows=final,
        executed=executed,
        skipped=skipped,
        attempts=attempts,
        seconds=time.perf_counter() - clock,
        startup_seconds=startup,
        notices=tuple(notices),
    )


def headline_metric(rows: Sequence[RunRow]) -> str | None:
    """The summary field a sweep table shows.

    The experiment's declared :attr:`~dltricks.lab.registry.Experiment.headline` (a measured
    number, not a constant such as a chance level) when every done run has it as a number;
    otherwise the first numeric field (by name) the done runs share. ``None`` when the
    summaries have no number in common.
    """
    done = [r for r in rows if r.status == "done" and r.metrics is not None]
    summaries = [(r.metrics or {}).get("summary", {}) for r in done]
    common: set[str] | None = None
    for summary in summaries:
        numeric = {
            k for k, v in summary.items() if isinstance(v, int | float) and not isinstance(v, bool)
        }
        common = numeric if common is None else common & numeric
    if not common:
        return None
    declared = _declared_headline(done)
    return declared if declared in common else min(common)


def _declared_headline(rows: Sequence[RunRow]) -> str | None:
    from dltricks.lab.registry import get_experiment

    names = {str(r.spec.get("experiment")) for r in rows if isinstance(r.spec, dict)}
    if len(names) != 1:
        return None
    try:
        return get_experiment(names.pop()).headline
    except ValueError:  # a store written by another version, with an experiment not known here
        return None
