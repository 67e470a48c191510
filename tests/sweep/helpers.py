"""A tiny sweep of the bias-correction experiment: a few tenths of a second per run."""

from __future__ import annotations

from typing import Any

from dltricks.sweep import SweepSpec

# Fixed settings are one-value grid entries; lr varies. The noisy gradient makes every seed's
# numbers differ, so equal metrics across executors are not equal by accident.
TINY_FIXED: dict[str, list[Any]] = {
    "steps": [5],
    "dim": [4],
    "problems": [["noisy"]],
    "beta2s": [[0.99]],
}


def tiny_sweep(lrs: list[float], seeds: int = 2, **fixed: list[Any]) -> SweepSpec:
    """``len(lrs) * seeds`` quick runs of bias-correction."""
    return SweepSpec(
        "bias-correction",
        {**TINY_FIXED, **fixed, "lr": list(lrs)},
        seeds=seeds,
        quick=True,
    )


def tiny_grid_args(lrs: str) -> list[str]:
    """The same sweep as command-line arguments."""
    return [
        "bias-correction",
        "--quick",
        "--grid",
        "steps=5",
        "--grid",
        "dim=4",
        "--grid",
        'problems=["noisy"]',
        "--grid",
        "beta2s=[0.99]",
        "--grid",
        f"lr={lrs}",
    ]
