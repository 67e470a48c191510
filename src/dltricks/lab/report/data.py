"""The full data beside the page: each experiment's records as CSV and its results as JSON.

The page's tables are compact summaries (at most 15 rows); these files hold everything. The
JSON is the experiment's ``results.json`` as it is (records, summary, verdicts, checksum);
the CSV has one row per record with its scalar entries (settings, seed, measurements): entries
that are lists or mappings (curves, per-layer values) are in the JSON only.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from dltricks.data import atomic_write_bytes

__all__ = ["DATA_DIR", "records_csv", "write_data_files"]

DATA_DIR = "data"


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def records_csv(records: list[dict[str, Any]], first: list[str] | None = None) -> str:
    """The records as CSV: a column per scalar entry (``first`` first, then in order of first
    appearance), a row per record; empty cells for entries a record lacks or that are null;
    booleans as ``true``/``false``."""
    columns: list[str] = [k for k in first or [] if any(k in r for r in records)]
    for record in records:
        columns.extend(k for k, v in record.items() if _scalar(v) and k not in columns)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for record in records:
        row: list[Any] = []
        for column in columns:
            value = record.get(column)
            if value is None or not _scalar(value):
                row.append("")
            else:
                row.append(json.dumps(value) if isinstance(value, bool) else value)
        writer.writerow(row)
    return out.getvalue()


def write_data_files(
    results_path: Path, results: dict[str, Any], folder: Path
) -> list[tuple[str, str]]:
    """Write ``NAME.csv`` and ``NAME.json`` into ``folder``; returns ``(label, file name)``."""
    name = str(results["experiment"])
    folder.mkdir(parents=True, exist_ok=True)
    records = results.get("records", [])
    atomic_write_bytes(folder / f"{name}.json", results_path.read_bytes())
    atomic_write_bytes(
        folder / f"{name}.csv", records_csv(records, results.get("record_keys")).encode()
    )
    return [
        (f"{len(records)} records (CSV)", f"{name}.csv"),
        ("all results (JSON)", f"{name}.json"),
    ]
