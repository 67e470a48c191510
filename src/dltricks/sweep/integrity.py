"""The sweep store checked against the runs' own results before a sweep uses it.

The store is an index; each run's ``results.json`` (checksummed, see
:mod:`dltricks.lab.results`) is the record. Before a sweep runs, :func:`prepare_store`

- opens the store, and moves a damaged one aside (kept as ``NAME.sqlite.corrupt-<time>``,
  never deleted) to start a new one;
- puts rows left ``running`` by a dead or stopped driver back to ``pending``;
- adds the sweep's runs as pending rows and its description;
- compares every row of the sweep with its run folder: a row whose metrics differ from its
  ``results.json`` is reported and rebuilt from it, a run whose ``results.json`` is finished
  but not in the store (a rebuilt store, a driver stopped before it recorded the run) is
  recorded as done without running, and a ``results.json`` that is corrupt is moved aside
  (``results.json.corrupt``) so the run runs again with fresh attempts: its failures were the
  file's, not the run's.

What was found is returned as notices, one line each, for the caller to show.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from dltricks.data import CorruptFileError
from dltricks.lab.results import canonical_json, read_json
from dltricks.sweep.spec import RunSpec
from dltricks.sweep.store import CorruptStoreError, RunRow, SweepStore, set_aside

__all__ = [
    "move_aside_if_corrupt",
    "prepare_store",
    "prepared_store",
    "run_metrics",
    "run_results_path",
    "verify_rows",
]

RESULTS_FILE = "results.json"
TIMING_FILE = "timing.json"


def run_results_path(runs_dir: Path, spec: RunSpec) -> Path:
    """Where the run of ``spec`` keeps its ``results.json``."""
    return runs_dir / spec.run_id / spec.experiment / RESULTS_FILE


def _scalars(record: dict[str, Any]) -> dict[str, Any]:
    # Curves and nested tables stay in results.json; the store keeps what a table shows.
    return {k: v for k, v in record.items() if v is None or isinstance(v, str | int | float)}


def run_metrics(results: dict[str, Any]) -> dict[str, Any]:
    """What the store keeps of a run's results: its summary and its records' scalars."""
    return {
        "summary": results.get("summary", {}),
        "records": [_scalars(r) for r in results.get("records", [])],
    }


def move_aside_if_corrupt(path: Path) -> str | None:
    """Move ``path`` to ``<name>.corrupt`` if it is a damaged checksummed JSON file.

    Returns a notice saying so, or ``None`` when the file is missing or sound.
    """
    try:
        read_json(path)
    except FileNotFoundError:
        return None
    except CorruptFileError as error:
        aside = path.with_name(path.name + ".corrupt")
        shutil.move(path, aside)
        return f"{error}; moved to {aside.name}, the run runs again"
    return None


def _finished_results(path: Path, run_id: str) -> tuple[dict[str, Any] | None, str | None]:
    """``(results, notice)``: the run's results if finished and sound, with what was done."""
    notice = move_aside_if_corrupt(path)
    if notice is not None:
        return None, notice
    if not path.exists():
        return None, None
    results = read_json(path)
    # A results file of another configuration is not this run's (e.g. other defaults).
    return (results if results.get("config_hash") == run_id else None), None


def _duration(results_path: Path) -> float | None:
    try:
        seconds = read_json(results_path.with_name(TIMING_FILE)).get("seconds")
    except (OSError, ValueError):
        return None
    return float(seconds) if isinstance(seconds, int | float) else None


def verify_rows(store: SweepStore, specs: Sequence[RunSpec], runs_dir: Path) -> list[str]:
    """Check the rows of ``specs`` against their run folders and repair them (see the module).

    Raises:
        CorruptStoreError: a row cannot be decoded.
    """
    notices: list[str] = []
    try:
        rows: dict[str, RunRow] = {r.id: r for r in store.rows([s.run_id for s in specs])}
    except ValueError as error:  # JSON in a row that does not decode: the file was edited
        raise CorruptStoreError(store.path, f"a row does not decode ({error})") from None
    recovered = 0
    for spec in specs:
        row = rows.get(spec.run_id)
        path = run_results_path(runs_dir, spec)
        results, notice = _finished_results(path, spec.run_id)
        if notice is not None:
            notices.append(notice)
            store.reset(spec.run_id)
            continue
        if results is None:
            if row is not None and row.status == "done":
                notices.append(
                    f"run {spec.run_id} is done in {store.path.name} but {path} is missing: "
                    "it runs again"
                )
                store.reset(spec.run_id)
            continue
        metrics = run_metrics(results)
        if (
            row is not None
            and row.status == "done"
            and row.spec == spec.to_json()
            and canonical_json(row.metrics) == canonical_json(metrics)
        ):
            continue
        if row is not None and row.status == "done":
            notices.append(
                f"run {spec.run_id} in {store.path.name} disagreed with its checksummed "
                f"{path}: the row was rebuilt from it"
            )
        else:
            recovered += 1
        store.restore(
            spec.run_id,
            experiment=spec.experiment,
            spec=spec.to_json(),
            metrics=metrics,
            duration=_duration(path),
        )
    if recovered:
        notices.append(
            f"{recovered} finished run(s) recorded in {store.path.name} from their results.json"
        )
    return notices


def _prepare(
    store: SweepStore,
    specs: Sequence[RunSpec],
    runs_dir: Path,
    meta: dict[str, Any],
) -> list[str]:
    store.release_stale()
    store.add_pending(
        ((s.run_id, s.experiment, s.to_json(), str(runs_dir / s.run_id)) for s in specs),
        meta=meta,
    )
    return verify_rows(store, specs, runs_dir)


def prepare_store(
    path: Path, specs: Sequence[RunSpec], runs_dir: Path, meta: dict[str, Any]
) -> tuple[SweepStore, list[str]]:
    """Open the store at ``path`` ready for the runs of ``specs`` (see the module).

    Call it holding the sweep's lock. Returns the open store (the caller closes it) and the
    notices.

    Raises:
        StoreError: the store cannot be opened or written (full disk, permissions).
    """
    notices: list[str] = []
    for attempt in range(2):
        try:
            store = SweepStore(path)
        except CorruptStoreError as error:
            if attempt:
                raise
            notices.append(_set_aside(path, error))
            continue
        try:
            notices += _prepare(store, specs, runs_dir, meta)
        except CorruptStoreError as error:
            store.close()
            if attempt:
                raise
            notices.append(_set_aside(path, error))
            continue
        except BaseException:
            store.close()
            raise
        return store, notices
    raise AssertionError("unreachable")


@contextlib.contextmanager
def prepared_store(
    path: Path, specs: Sequence[RunSpec], runs_dir: Path, meta: dict[str, Any]
) -> Iterator[tuple[SweepStore, list[str]]]:
    """:func:`prepare_store` as a context that closes the store."""
    store, notices = prepare_store(path, specs, runs_dir, meta)
    with store:
        yield store, notices


def _set_aside(path: Path, error: CorruptStoreError) -> str:
    aside = set_aside(path)
    return (
        f"{error}; kept as {aside.name} and rebuilt from the run folders (other sweeps' rows "
        "come back when they run again)"
    )
