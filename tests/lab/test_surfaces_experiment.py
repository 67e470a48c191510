"""The ``surfaces`` experiment as the lab runs it: records, protocol, theory check, figures."""

from __future__ import annotations

import math
from typing import Any

import pytest

from dltricks.lab.runner import run_experiment

OVERRIDES = {"surfaces": ["quadratic", "saddle", "double_well"], "theory_kappas": [10.0]}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("surfaces")
    return run_experiment("surfaces", out_root=out, quick=True, overrides=OVERRIDES).results


def test_one_record_per_surface_and_optimizer_with_public_keys(results: dict[str, Any]) -> None:
    keys = {"surface", "optimizer", "lr", "steps_to_tolerance", "final_distance", "reached"}
    records = results["records"]
    assert len(records) == 3 * 6
    for record in records:
        assert keys <= set(record)
        assert record["reached"] in ("global", "local", "none")


def test_every_optimizer_reaches_the_quadratic_minimum_after_tuning(
    results: dict[str, Any],
) -> None:
    quadratic = [r for r in results["records"] if r["surface"] == "quadratic"]
    assert {r["reached"] for r in quadratic} == {"global"}
    # Tuned learning rates differ between optimizers: one lr for all would not be fair.
    assert len({r["lr"] for r in quadratic}) > 1


def test_heavy_ball_rate_matches_goh_within_two_percent(results: dict[str, Any]) -> None:
    kappa = 10.0
    for check in results["summary"]["theory"]:
        expected = (
            (kappa - 1) / (kappa + 1)
            if check["method"] == "gradient descent"
            else (math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1)
        )
        assert check["measured_rate"] == pytest.approx(expected, rel=0.02)


def test_protocol_is_stated_and_figures_include_animations(results: dict[str, Any]) -> None:
    assert "tuned" in results["summary"]["protocol"]
    figures = results["figures"]
    for surface in OVERRIDES["surfaces"]:
        assert f"contour_{surface}.png" in figures
        assert f"trajectories_{surface}.gif" in figures
    assert "theory.png" in figures
    assert "escape_saddle.png" in figures
