"""``init``: ReLU + Xavier stalls at depth 16-32 while ReLU + He and SELU + LeCun train.

Reduced size: the quick configuration (digits, width 64, SGD lr 0.01, batch 64, 30 epochs)
at depth 32 only, with one seed (0). Calibration, quick configuration over seeds 0-7:

- depth 32: ReLU + Xavier training loss 2.303 on every seed (ln 10 = 2.3026, chance),
  accuracy 0.101; ReLU + He loss 0.19 .. 1.05, accuracy 0.54 .. 0.94; SELU + LeCun loss
  0.005 .. 0.006, accuracy 1.00;
- depth 16: ReLU + Xavier loss 2.269 .. 2.293 (accuracy 0.18 .. 0.37); ReLU + He loss
  0.014 .. 0.60; SELU + LeCun 0.008 .. 0.013;
- forward signal at init, log2(RMS of the last hidden layer / RMS of the first): Xavier
  -15.5 .. -18.1 at depth 32 and -6.6 .. -9.1 at depth 16 (theory -31/2 and -15/2);
  He -1.6 .. 1.3; SELU -0.1 .. 0.2.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from dltricks.lab.runner import run_experiment

CHANCE_LOSS = math.log(10)
DEPTH = 32


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("init")
    return run_experiment(
        "init", out_root=out, quick=True, seeds=1, overrides={"depths": [DEPTH]}
    ).results


def _record(results: dict[str, Any], activation: str, init: str, depth: int) -> dict[str, Any]:
    (record,) = [
        r
        for r in results["records"]
        if r["activation"] == activation and r["init"] == init and r["depth"] == depth
    ]
    return record


def test_records_carry_the_public_keys(results: dict[str, Any]) -> None:
    assert len(results["records"]) == 3
    for record in results["records"]:
        assert {"activation", "init", "depth", "seed", "train_loss", "train_accuracy"} <= set(
            record
        )
        assert len(record["curve_train_loss"]) == 30
        assert len(record["init_signal_rms"]) == record["depth"]


def test_xavier_relu_signal_halves_its_second_moment_per_layer(results: dict[str, Any]) -> None:
    # E[z_l^2] = fan_in Var(W) E[z_{l-1}^2] / 2 and Xavier on square layers gives
    # fan_in Var(W) = 1: RMS falls by 2^(-1/2) per layer, 2^(-(depth-1)/2) overall.
    # Measured within 2.6 (in log2) of the prediction over seeds 0-7.
    rms = _record(results, "relu", "xavier", DEPTH)["init_signal_rms"]
    assert math.log2(rms[-1] / rms[0]) == pytest.approx(-(DEPTH - 1) / 2, abs=4.0)


@pytest.mark.parametrize(("activation", "init"), [("relu", "he"), ("selu", "lecun")])
def test_he_and_lecun_keep_the_signal_level(
    results: dict[str, Any], activation: str, init: str
) -> None:
    # He: fan_in Var(W) = 2 cancels ReLU's 1/2. Measured |log2 ratio| <= 1.63.
    rms = _record(results, activation, init, DEPTH)["init_signal_rms"]
    assert abs(math.log2(rms[-1] / rms[0])) < 3.0


def test_xavier_relu_stalls_at_chance_at_depth_32(results: dict[str, Any]) -> None:
    # Measured loss 2.303 on every seed: exactly chance.
    record = _record(results, "relu", "xavier", DEPTH)
    assert record["train_loss"] == pytest.approx(CHANCE_LOSS, abs=0.02)
    assert record["train_accuracy"] < 0.1 + 0.05


def test_he_relu_trains_where_xavier_stalls(results: dict[str, Any]) -> None:
    xavier = _record(results, "relu", "xavier", DEPTH)
    he = _record(results, "relu", "he", DEPTH)
    # Measured He loss 0.19 .. 1.05 (at most 0.46 of chance), Xavier 2.303.
    assert he["train_loss"] < 0.6 * CHANCE_LOSS
    assert xavier["train_loss"] > 0.95 * CHANCE_LOSS
    # Measured gaps in training accuracy: 0.44 .. 0.84.
    assert he["train_accuracy"] > xavier["train_accuracy"] + 0.3


def test_selu_lecun_trains_at_depth_32(results: dict[str, Any]) -> None:
    # Measured loss 0.005 .. 0.006 and training accuracy 1.00.
    assert _record(results, "selu", "lecun", DEPTH)["train_accuracy"] > 0.95


def test_finding_counts_the_stalled_runs(results: dict[str, Any]) -> None:
    summary = results["summary"]
    assert summary["outcome"]["relu + xavier @ 32"]["stalled_seeds"] == 1
    assert summary["outcome"]["relu + he @ 32"]["stalled_seeds"] == 0
    assert "relu + xavier loss 2.30" in summary["finding"]
    assert results["figures"] == ["init_signal.png", "init_training.png"]


def test_same_seed_gives_byte_identical_results(tmp_path: Path, one_thread: None) -> None:
    tiny = {"depths": [4], "epochs": 1, "settings": [["relu", "he"]]}
    paths = [
        run_experiment(
            "init", out_root=tmp_path / str(i), quick=True, seeds=1, overrides=tiny
        ).results_path
        for i in range(2)
    ]
    assert paths[0].read_bytes() == paths[1].read_bytes()
