"""The table of numbers of an experiment, computed from its results.json.

An experiment may give its own table as ``summary["table"] = {"headers": [...], "rows": [...]}``;
otherwise records are grouped by their setting (the record keys other than the seed) and each
numeric measurement is shown as the mean over seeds, with the standard deviation when there are
several.
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
MAX_ROWS = 60


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


def results_table(results: dict[str, Any]) -> Table:
    """The table for ``results`` (the experiment's own, or the generic grouping)."""
    own = results.get("summary", {}).get("table")
    if isinstance(own, dict) and "headers" in own and "rows" in own:
        rows = [[format_value(v) for v in row] for row in own["rows"]]
        return Table([str(h) for h in own["headers"]], rows, str(own.get("note", "")))
    records = results.get("records", [])
    if not records:
        return Table([], [], "no records")
    settings = _setting_keys(results)
    metrics = _metrics(records, settings)
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for record in records:
        group = tuple(format_value(record.get(k)) for k in settings)
        groups.setdefault(group, []).append(record)
    seeds = {r.get("seed") for r in records}
    rows = [
        [*group, *(_aggregate([r.get(m) for r in members]) for m in metrics)]
        for group, members in list(groups.items())[:MAX_ROWS]
    ]
    note = f"mean ± sd over {len(seeds)} seeds" if len(seeds) > 1 else ""
    if len(groups) > MAX_ROWS:
        note += f" (first {MAX_ROWS} of {len(groups)} settings; all in results.json)"
    return Table([*settings, *metrics], rows, note.strip())
