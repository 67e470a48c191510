"""Matplotlib figures for the monitors (object API only: no pyplot global state)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure

__all__ = ["activation_figure", "bar_figure"]


def bar_figure(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    log: bool,
    title: str,
) -> Figure:
    """One panel of per-layer values, one line-with-markers per series, layers on x."""
    fig = Figure(figsize=(max(4.0, 0.5 * len(labels) + 2.0), 3.5), layout="constrained")
    ax = fig.subplots()
    positions = range(len(labels))
    for name, values in series.items():
        ax.plot(positions, values, marker="o", label=name)
    if log:
        ax.set_yscale("log")
    ax.set_xticks(list(positions), list(labels), rotation=45, ha="right")
    ax.set_xlabel("layer")
    ax.set_title(title)
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    return fig


def activation_figure(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """Left: mean with a +-std band per layer. Right: saturated and dead fractions."""
    labels = [str(r["layer"]) for r in rows]
    positions = list(range(len(rows)))
    fig = Figure(figsize=(max(7.0, 0.8 * len(rows) + 3.0), 3.5), layout="constrained")
    left, right = fig.subplots(1, 2)
    means = [r["mean"] for r in rows]
    stds = [r["std"] for r in rows]
    left.errorbar(positions, means, yerr=stds, marker="o", capsize=3, label="mean +- std")
    left.set_title("activation mean and std")
    for key, label in (("saturated", "saturated"), ("dead", "dead units")):
        values = [r[key] if r[key] is not None else float("nan") for r in rows]
        if any(v == v for v in values):
            right.plot(positions, values, marker="o", label=label)
    right.set_ylim(-0.02, 1.02)
    right.set_title("fraction saturated / dead")
    for ax in (left, right):
        ax.set_xticks(positions, labels, rotation=45, ha="right")
        ax.set_xlabel("layer")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    return fig
