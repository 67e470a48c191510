"""Plain-text tables for the monitors' ``to_table()``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["format_table", "format_value"]


def format_value(value: Any) -> str:
    """Numbers in 4 significant digits (scientific when far from 1); ``None`` as ``-``."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value != 0.0 and not 1e-3 <= abs(value) < 1e4:
            return f"{value:.3e}"
        return f"{value:.4g}"
    return str(value)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """Render ``rows`` as aligned columns; ``columns`` is ``(key, header)`` pairs."""
    cells = [[header for _, header in columns]]
    cells += [[format_value(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
