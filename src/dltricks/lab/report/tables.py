"""The compact table of numbers of an experiment, computed from its results.json.

An experiment may give its own table (``Experiment.table``, or ``summary["table"] =
{"headers": [...], "rows": [...]}``); otherwise records are grouped by their setting (the
record keys other than the seed) and each numeric measurement is shown as the mean over seeds,
with the standard deviation when there are several. A table has at most :data:`MAX_ROWS` rows:
when there are more settings, one setting with few values becomes columns of the first
measurement (e.g. rows per activation, a column per depth); if no such setting brings the rows
under the bound, the first rows are shown and the note says where the rest are (the full data
sits beside the table as CSV and JSON).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

PREFERRED_METRICS: tuple[str, ...] = (
    "train_accuracy",
    "test_accuracy",
    "final_train_loss",
    "train_loss",
    "val_loss",
    "best_epoch",
    "vanishing_ratio",
    "steps_to_tolerance",
    "final_distance",
    "reached",
    "final_x",
    "first_step",
    "formula",
)
MAX_METRICS = 6
MAX_ROWS = 15
#: The most values a setting may have to be turned into columns.
MAX_PIVOT_COLUMNS = 8


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[str]]
    note: str = ""


def format_value(value: Any) -> str:
    """A short human form: 3 significant digits for floats, a dash for missing values."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.3g}"
        return f"{value:.4g}"
    return str(value)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, int | float | str | bool)


def _setting_keys(results: dict[str, Any]) -> list[str]:
    keys = results.get("record_keys")
    if keys is None:
        first = results["records"][0] if results["records"] else {}
        keys = [k for k, v in first.items() if isinstance(v, str)]
    return [k for k in keys if k != "seed"]


def _metrics(records: list[dict[str, Any]], settings: list[str]) -> list[str]:
    candidates: list[str] = []
    for record in records:
        for key, value in record.items():
            if key in settings or key == "seed" or key in candidates:
                continue
            if _is_scalar(value):
                candidates.append(key)
    preferred = [m for m in PREFERRED_METRICS if m in candidates]
    rest = [m for m in candidates if m not in preferred]
    return (preferred + rest)[:MAX_METRICS]


def _aggregate(values: list[Any]) -> str:
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if len(numbers) != len(values) or not numbers:
        distinct = sorted({format_value(v) for v in values})
        return distinct[0] if len(distinct) == 1 else " / ".join(distinct)
    mean = sum(numbers) / len(numbers)
    if len(numbers) == 1:
        return format_value(numbers[0])
    sd = math.sqrt(sum((x - mean) ** 2 for x in numbers) / (len(numbers) - 1))
    return f"{format_value(float(mean))} ± {format_value(float(sd))}"


def _own_table(own: dict[str, Any]) -> Table:
    rows = [[format_value(v) for v in row] for row in own["rows"]]
    note = str(own.get("note", ""))
    if len(rows) > MAX_ROWS:
        note += f" (first {MAX_ROWS} of {len(rows)} rows; all in the data files)"
        rows = rows[:MAX_ROWS]
    return Table([str(h) for h in own["headers"]], rows, note.strip())


def _group(
    records: list[dict[str, Any]], keys: list[str]
) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(tuple(format_value(record.get(k)) for k in keys), []).append(record)
    return groups


def _pivot(
    records: list[dict[str, Any]], settings: list[str], metric: str, spread: str
) -> Table | None:
    """Rows by all settings but one, a column of ``metric`` per value of that one; None if no
    setting brings the rows to :data:`MAX_ROWS` or fewer."""
    distinct = {k: list(dict.fromkeys(format_value(r.get(k)) for r in records)) for k in settings}
    for column in sorted(settings, key=lambda k: len(distinct[k])):
        values = distinct[column]
        if not 2 <= len(values) <= MAX_PIVOT_COLUMNS:
            continue
        rest = [k for k in settings if k != column]
        groups = _group(records, rest)
        if len(groups) > MAX_ROWS:
            continue
        rows = []
        for group, members in groups.items():
            cells = []
            for value in values:
                chosen = [r for r in members if format_value(r.get(column)) == value]
                cells.append(_aggregate([r.get(metric) for r in chosen]) if chosen else "—")
            rows.append([*group, *cells])
        headers = [*rest, *(f"{column} {v}" for v in values)]
        note = f"{metric}{spread}, a column per {column}; every measurement in the data files"
        return Table(headers, rows, note)
    return None


def results_table(results: dict[str, Any], own: dict[str, Any] | None = None) -> Table:
    """The compact table for ``results``: ``own`` (the experiment's), the summary's own
    table, or the records grouped by setting; never more than :data:`MAX_ROWS` rows."""
    own = own if own is not None else results.get("summary", {}).get("table")
    if isinstance(own, dict) and "headers" in own and "rows" in own:
        return _own_table(own)
    records = results.get("records", [])
    if not records:
        return Table([], [], "no records")
    settings = _setting_keys(results)
    metrics = _metrics(records, settings)
    groups = _group(records, settings)
    seeds = {r.get("seed") for r in records}
    spread = f" (mean ± sd over {len(seeds)} seeds)" if len(seeds) > 1 else ""
    if len(groups) > MAX_ROWS and metrics:
        pivoted = _pivot(records, settings, metrics[0], spread)
        if pivoted is not None:
            return pivoted
    rows = [
        [*group, *(_aggregate([r.get(m) for r in members]) for m in metrics)]
        for group, members in list(groups.items())[:MAX_ROWS]
    ]
    note = spread.strip(" ()")
    if len(groups) > MAX_ROWS:
        note += f" (first {MAX_ROWS} of {len(groups)} settings; all in the data files)"
    return Table([*settings, *metrics], rows, note.strip())
