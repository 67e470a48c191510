"""Small summaries over seeds that several experiments share."""

from __future__ import annotations

import math
from collections.abc import Sequence


def mean(values: Sequence[float]) -> float:
    """The arithmetic mean (NaN in, NaN out)."""
    return sum(values) / len(values)


def finite_mean(values: Sequence[float | None]) -> float:
    """The mean of the finite values, skipping None and non-finite ones (diverged runs);
    NaN when none is finite."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else float("nan")
