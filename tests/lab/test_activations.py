"""``activations``: the zoo at depth 10; sigmoid stays at chance, the others train.

Reduced size: the quick configuration (digits, width 64, depth 10, recommended init each,
SGD lr 0.1, batch 64, 15 epochs) with one seed (0). Calibration, quick configuration over
seeds 0-7:

- training accuracy: sigmoid 0.097 .. 0.101 (chance 0.1); every other activation
  0.982 .. 1.000 (lowest: leaky_relu 0.982, silu 0.988); test accuracy 0.930 .. 0.972
  (sigmoid 0.097 .. 0.100);
- PReLU slopes (init 0.25, one per layer): single slopes 0.189 .. 0.710 after 15 epochs,
  per-seed mean over the 10 layers 0.361 .. 0.461.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dltricks.lab.runner import run_experiment

DEPTH = 10
CHANCE = 1 / 10
TRAINABLE = ["tanh", "relu", "leaky_relu", "prelu", "elu", "selu", "gelu", "silu", "maxout"]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("activations")
    return run_experiment("activations", out_root=out, quick=True, seeds=1).results


def _record(results: dict[str, Any], activation: str) -> dict[str, Any]:
    (record,) = [r for r in results["records"] if r["activation"] == activation]
    return record


def test_records_cover_the_zoo(results: dict[str, Any]) -> None:
    assert sorted(r["activation"] for r in results["records"]) == sorted(["sigmoid", *TRAINABLE])
    for record in results["records"]:
        assert {"activation", "seed", "train_accuracy", "test_accuracy"} <= set(record)
        assert len(record["curve_train_accuracy"]) == 15


def test_sigmoid_stays_at_chance(results: dict[str, Any]) -> None:
    # Measured 0.097 .. 0.101.
    assert _record(results, "sigmoid")["train_accuracy"] < CHANCE + 0.05


@pytest.mark.parametrize("activation", TRAINABLE)
def test_relu_family_selu_and_maxout_beat_sigmoid(results: dict[str, Any], activation: str) -> None:
    # Measured training accuracy >= 0.982 and test accuracy >= 0.930 for every one of them.
    record = _record(results, activation)
    assert record["train_accuracy"] > 0.9
    assert record["test_accuracy"] > _record(results, "sigmoid")["test_accuracy"] + 0.5


def test_prelu_slopes_start_at_he_et_al_value_and_are_learned(results: dict[str, Any]) -> None:
    record = _record(results, "prelu")
    history = record["curve_prelu_slopes"]
    assert len(record["prelu_slopes"]) == DEPTH
    assert len(history) == 15 + 1
    # He et al. 2015 initialise the slopes at 0.25.
    assert history[0] == pytest.approx([0.25] * DEPTH)
    assert history[-1] == record["prelu_slopes"]
    # Measured single slopes 0.189 .. 0.710 and per-seed means 0.361 .. 0.461: they grow
    # from 0.25 but stay a leaky (0 < a < 1) rectifier.
    assert all(0.0 < a < 1.0 for a in record["prelu_slopes"])
    assert 0.3 < sum(record["prelu_slopes"]) / DEPTH < 0.6


def test_summary_reports_per_layer_slopes_and_the_ranking(results: dict[str, Any]) -> None:
    summary = results["summary"]
    assert summary["prelu_layer_slopes"] == pytest.approx(_record(results, "prelu")["prelu_slopes"])
    assert summary["finding"].startswith("test accuracy after 15 epochs, best first: ")
    # Sigmoid ranks last.
    sigmoid = _record(results, "sigmoid")["test_accuracy"]
    ranking = summary["finding"].split("best first: ")[1].split(";")[0]
    assert ranking.endswith(f"sigmoid {sigmoid:.3f}")
    assert results["figures"] == ["activations_accuracy.png", "activations_prelu_slopes.png"]


def test_same_seed_gives_byte_identical_results(tmp_path: Path, one_thread: None) -> None:
    tiny = {"activations": ["prelu", "maxout"], "depth": 2, "epochs": 1}
    paths = [
        run_experiment(
            "activations", out_root=tmp_path / str(i), quick=True, seeds=1, overrides=tiny
        ).results_path
        for i in range(2)
    ]
    assert paths[0].read_bytes() == paths[1].read_bytes()
