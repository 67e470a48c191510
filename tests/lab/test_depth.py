"""``depth``: sigmoid nets collapse to chance as layers are added; ReLU and SELU keep training.

Reduced size: depths 1, 4 and 8, one seed, digits, 20 epochs of SGD (lr 0.1). Calibration,
quick configuration over seeds 0-1 (training accuracy): sigmoid 0.96 at depth 1, 0.10 (chance)
from depth 4 on; ReLU, tanh and SELU >= 0.99 at every depth 1-10.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dltricks.lab.runner import run_experiment

OVERRIDES = {"depths": [1, 4, 8], "activations": ["sigmoid", "relu", "selu"]}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("depth")
    return run_experiment("depth", out_root=out, quick=True, seeds=1, overrides=OVERRIDES).results


def _train_accuracy(results: dict[str, Any], activation: str, depth: int) -> float:
    (record,) = [
        r for r in results["records"] if r["activation"] == activation and r["depth"] == depth
    ]
    return float(record["train_accuracy"])


def test_records_carry_the_public_keys(results: dict[str, Any]) -> None:
    for record in results["records"]:
        assert {"activation", "depth", "seed", "train_accuracy", "test_accuracy"} <= set(record)
    assert len(results["records"]) == 9


def test_shallow_sigmoid_trains(results: dict[str, Any]) -> None:
    assert _train_accuracy(results, "sigmoid", 1) > 0.9


def test_deep_sigmoid_collapses_to_chance(results: dict[str, Any]) -> None:
    chance = 1 / 10
    assert _train_accuracy(results, "sigmoid", 8) < chance + 0.1


@pytest.mark.parametrize("activation", ["relu", "selu"])
def test_relu_and_selu_train_at_every_depth(results: dict[str, Any], activation: str) -> None:
    for depth in (1, 4, 8):
        assert _train_accuracy(results, activation, depth) > 0.95


def test_finding_states_the_measured_collapse_depth(results: dict[str, Any]) -> None:
    summary = results["summary"]
    assert summary["collapse_depth"]["sigmoid"] in (4, 8)
    assert summary["collapse_depth"]["relu"] is None
    assert "sigmoid first falls below 25% training accuracy at depth" in summary["finding"]


def test_figure_is_written(results: dict[str, Any], tmp_path: Path) -> None:
    assert results["figures"] == ["depth_accuracy.png"]
