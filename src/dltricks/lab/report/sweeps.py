"""The report's Sweeps section, read from the sweep stores (``sweep-*.sqlite``) in the runs folder.

Everything comes from the stores through :func:`dltricks.sweep.read_rows` and
:func:`dltricks.sweep.read_meta`: each sweep's description (grid, seeds, size, the command that
reproduces it) and its runs with their status, headline metric and duration. A store is read as
it is, also while a sweep is writing it (the report never writes it); one that cannot be read
is shown with its error. Each done row is checked against its run's checksummed results.json:
a row that disagrees is shown with the file's numbers and a note (the next ``dltricks sweep``
rebuilds it).
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import sqlite3
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dltricks.lab.report.tables import MAX_ROWS, Table, format_value
from dltricks.lab.results import canonical_json, read_json
from dltricks.sweep.integrity import RESULTS_FILE, run_metrics
from dltricks.sweep.run import SWEEP_META, headline_metric
from dltricks.sweep.store import STATUSES, RunRow, read_meta, read_rows

__all__ = ["SweepView", "find_sweep_stores", "sweep_views"]

STORE_GLOB = "sweep-*.sqlite"
MAX_TEXT = 160


@dataclass
class SweepView:
    """What the page shows of one sweep (one grid written into one store)."""

    anchor: str
    experiment: str
    store: str
    sweep_id: str | None
    settings: dict[str, str]
    counts: str
    table: Table
    reproduce: str | None
    notes: list[str] = field(default_factory=list)
    error: str | None = None


def find_sweep_stores(runs_dir: Path) -> list[Path]:
    """The sweep stores directly in ``runs_dir`` (where ``dltricks sweep --out`` puts them)."""
    return sorted(runs_dir.glob(STORE_GLOB)) if runs_dir.is_dir() else []


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


def _counts(rows: Sequence[RunRow]) -> str:
    by_status = Counter(r.status for r in rows)
    parts = [f"{by_status[s]} {s}" for s in STATUSES if by_status[s]]
    noun = "run" if len(rows) == 1 else "runs"
    return f"{len(rows)} {noun}: " + (", ".join(parts) if parts else "none stored yet")


def _last_line(error: str | None) -> str:
    lines = (error or "").strip().splitlines()
    return _text(lines[-1]) if lines else ""


def _runs_table(rows: Sequence[RunRow], varying: Sequence[str]) -> Table:
    """One row per run: its id, the grid settings that vary, seed, status, headline, seconds."""
    if not rows:
        return Table([], [], "no runs in the store for this sweep yet")
    headline = headline_metric(rows)
    failed = any(r.status == "failed" for r in rows)
    headers = ["run id", *varying, "seed", "status"]
    headers += [headline] if headline else []
    headers += ["seconds"] + (["error"] if failed else [])
    body = []
    for row in rows[:MAX_ROWS]:
        overrides = row.spec.get("overrides", {})
        summary = (row.metrics or {}).get("summary", {})
        status = row.status if row.status != "failed" else f"failed ({row.attempts}x)"
        cells = [row.id, *(_text(overrides.get(k)) for k in varying)]
        cells += [format_value(row.spec.get("seed")), status]
        cells += [format_value(summary.get(headline))] if headline else []
        cells.append(f"{row.duration:.2f}" if row.duration is not None else "—")
        cells += [_last_line(row.error)] if failed else []
        body.append(cells)
    note = f"headline metric: the summary's {headline!r}" if headline else ""
    if len(rows) > MAX_ROWS:
        note += f" (first {MAX_ROWS} of {len(rows)} runs; all in the store)"
    return Table(headers, body, note.strip())


def _grid_settings(grid: dict[str, list[Any]]) -> tuple[dict[str, str], list[str]]:
    """``(grid rows for the setup table, the keys with more than one value)``."""
    settings = {
        f"grid: {k}": _text(", ".join(_text(v) for v in values)) for k, values in grid.items()
    }
    return settings, [k for k, values in grid.items() if len(values) > 1]


def _inferred_grid(rows: Sequence[RunRow]) -> dict[str, list[Any]]:
    grid: dict[str, list[Any]] = {}
    for row in rows:
        for key, value in row.spec.get("overrides", {}).items():
            values = grid.setdefault(key, [])
            if value not in values:
                values.append(value)
    return grid


def _reproduce(command: str, runs_arg: str) -> str:
    return f"{command} --out {shlex.quote(runs_arg)}"


def _checked(
    path: Path, experiment: str, rows: list[RunRow]
) -> tuple[list[RunRow], dict[str, str]]:
    """The rows with any done row that disagrees with its run's results.json replaced by the
    file's numbers, and a note by run id for each disagreement or unreadable file."""
    checked: list[RunRow] = []
    notes: dict[str, str] = {}
    for row in rows:
        results_path = path.parent / f"sweep-{experiment}" / row.id / experiment / RESULTS_FILE
        if row.status != "done" or not results_path.exists():
            checked.append(row)
            continue
        try:
            results = read_json(results_path)
        except (OSError, ValueError) as error:
            notes[row.id] = f"run {row.id}: cannot check its row ({error})"
            checked.append(row)
            continue
        metrics = run_metrics(results)
        if canonical_json(metrics) != canonical_json(row.metrics):
            notes[row.id] = (
                f"run {row.id}: the store disagreed with its checksummed {RESULTS_FILE}; shown "
                "from the file (the next `dltricks sweep` of it rebuilds the row)"
            )
            row = dataclasses.replace(row, metrics=metrics)
        checked.append(row)
    return checked, notes


def _store_views(path: Path, runs_arg: str) -> list[SweepView]:
    store = path.name
    experiment = path.stem.removeprefix("sweep-")
    rows, check_notes = _checked(path, experiment, read_rows(path))
    by_id = {r.id: r for r in rows}
    described = read_meta(path, SWEEP_META)
    views = []
    covered: set[str] = set()
    for key, entry in described.items():
        sweep = key[len(SWEEP_META) :]
        ids = [i for i in entry.get("runs", []) if i in by_id]
        covered.update(ids)
        sweep_rows = [by_id[i] for i in ids]
        grid = entry.get("grid", [])
        settings, varying = _grid_settings(dict(grid.items() if isinstance(grid, dict) else grid))
        seeds, first = entry.get("seeds", 1), entry.get("seed", 0)
        settings["seeds"] = f"{seeds} per grid point, from seed {first}"
        settings["size"] = "quick" if entry.get("quick") else "full"
        missing = len(entry.get("runs", [])) - len(ids)
        notes = [f"{missing} run(s) of this sweep are not in the store"] if missing else []
        notes += [check_notes[i] for i in ids if i in check_notes]
        views.append(
            SweepView(
                anchor=f"sweep-{experiment}-{sweep}",
                experiment=str(entry.get("experiment", experiment)),
                store=store,
                sweep_id=sweep,
                settings=settings,
                counts=_counts(sweep_rows),
                table=_runs_table(sweep_rows, varying),
                reproduce=_reproduce(entry["command"], runs_arg) if "command" in entry else None,
                notes=notes,
            )
        )
    rest = [r for r in rows if r.id not in covered]
    if rest or not views:
        # Rows no stored description covers: a store written before descriptions were kept.
        grid = _inferred_grid(rest)
        settings, varying = _grid_settings(grid)
        views.append(
            SweepView(
                anchor=f"sweep-{experiment}-other",
                experiment=experiment,
                store=store,
                sweep_id=None,
                settings=settings,
                counts=_counts(rest),
                table=_runs_table(rest, varying),
                reproduce=None,
                notes=[
                    "runs without a stored sweep description: grid inferred from the runs",
                    *(check_notes[r.id] for r in rest if r.id in check_notes),
                ],
            )
        )
    return views


def sweep_views(runs_dir: Path, runs_arg: str | None = None) -> list[SweepView]:
    """A view per sweep in every store of ``runs_dir``; ``runs_arg`` is how the reproduce
    command names the folder (default: ``runs_dir`` as given)."""
    runs_arg = runs_arg if runs_arg is not None else str(runs_dir)
    views: list[SweepView] = []
    for path in find_sweep_stores(runs_dir):
        try:
            views.extend(_store_views(path, runs_arg))
        except (sqlite3.Error, OSError, ValueError, KeyError) as error:
            # One unreadable store must not take the report down.
            experiment = path.stem.removeprefix("sweep-")
            views.append(
                SweepView(
                    anchor=f"sweep-{experiment}-unreadable",
                    experiment=experiment,
                    store=path.name,
                    sweep_id=None,
                    settings={},
                    counts="",
                    table=Table([], [], ""),
                    reproduce=None,
                    error=f"cannot read {path.name}: {type(error).__name__}: {error}",
                )
            )
    return views
