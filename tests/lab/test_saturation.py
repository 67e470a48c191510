"""``saturation``: Glorot & Bengio's top hidden layer saturating at 0 in a deep sigmoid net.

Reduced size: the quick configuration (digits, 4 sigmoid hidden layers of 256, SGD lr 0.1,
batch 10, probe every 26 steps = 1/5 epoch) for 12 epochs instead of 20, seed 0.
Calibration, quick configuration over seeds 0-5 (probe means of the 300 probe examples):

- standard init U(+-1/sqrt(n)): top layer mean 0.209 .. 0.224 at epoch 3, 0.083 .. 0.085 at
  epoch 12, 0.058 .. 0.059 at epoch 20; fraction of top outputs within 0.1 of 0 or 1: 1.00 at
  epoch 12; lower layers' means 0.490 .. 0.681 over the whole run; training accuracy 0.10;
- normalized (Xavier) init: top layer mean 0.090 .. 0.101 at epoch 12, saturated fraction
  0.61 .. 0.82 at epoch 12; it then desaturates (0.111 .. 0.236 at epoch 20, training
  accuracy 0.27 .. 0.39).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from dltricks.lab.runner import run_experiment

OVERRIDES = {"epochs": 12}
DEPTH = 4


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("saturation")
    return run_experiment(
        "saturation", out_root=out, quick=True, seeds=1, overrides=OVERRIDES
    ).results


def _records(results: dict[str, Any], init: str) -> list[dict[str, Any]]:
    found = [r for r in results["records"] if r["init"] == init]
    assert len(found) == 1
    return found


def _at_epoch(record: dict[str, Any], key: str, epoch: float) -> list[float]:
    """The per-layer statistic at the last probe at or before ``epoch``."""
    index = max(i for i, e in enumerate(record["probe_epoch"]) if e <= epoch + 1e-9)
    return list(record[key][index])


def test_records_carry_per_layer_curves(results: dict[str, Any]) -> None:
    for record in results["records"]:
        assert {"init", "seed", "probe_epoch", "layer_mean", "layer_std"} <= set(record)
        # One probe at init, then one every 26 steps: 130 steps per epoch on digits.
        assert record["steps_per_epoch"] == math.ceil(1294 / 10)
        assert len(record["probe_epoch"]) == 1 + 12 * 130 // 26
        assert all(len(row) == DEPTH for row in record["layer_mean"])


def test_every_layer_starts_at_sigmoid_of_zero(results: dict[str, Any]) -> None:
    # Zero biases and symmetric weights: pre-activations are centred, so means start at
    # sigma(0) = 1/2 (measured 0.500 .. 0.507).
    half = 1.0 / (1.0 + math.exp(0.0))
    for record in results["records"]:
        for mean in record["layer_mean"][0]:
            assert mean == pytest.approx(half, abs=0.02)


def test_top_layer_saturates_toward_zero_early_with_standard_init(
    results: dict[str, Any],
) -> None:
    for record in _records(results, "torch"):
        # Measured 0.209 .. 0.224 at epoch 3 (halved from 0.5), 0.083 .. 0.085 at epoch 12.
        assert _at_epoch(record, "layer_mean", 3.0)[-1] < 0.3
        assert _at_epoch(record, "layer_mean", 12.0)[-1] < 0.15
        # Measured 1.00 of the top outputs within 0.1 of a bound at epoch 12.
        assert _at_epoch(record, "layer_saturated", 12.0)[-1] > 0.9


def test_lower_layers_stay_around_one_half(results: dict[str, Any]) -> None:
    # Glorot & Bengio: lower layers' means stay above 0.5. Measured 0.490 .. 0.681 (the
    # first layer dips a hair below 0.5 on some seeds).
    for record in _records(results, "torch"):
        for row in record["layer_mean"]:
            assert min(row[:-1]) > 0.45


def test_normalized_init_saturates_less(results: dict[str, Any]) -> None:
    # At epoch 12: Xavier 0.61 .. 0.82 of the top outputs saturated, standard init 1.00.
    xavier = [_at_epoch(r, "layer_saturated", 12.0)[-1] for r in _records(results, "xavier")]
    standard = [_at_epoch(r, "layer_saturated", 12.0)[-1] for r in _records(results, "torch")]
    assert max(xavier) < min(standard)


def test_finding_reports_the_measured_means(results: dict[str, Any]) -> None:
    summary = results["summary"]
    top = summary["per_init"]["torch"]["top_final_mean"]
    assert f"ends at {top:.3f}" in summary["finding"]
    assert results["figures"] == ["saturation_activations.png"]


def test_same_seed_gives_byte_identical_results(tmp_path: Path, one_thread: None) -> None:
    tiny = {"epochs": 1, "width": 16, "inits": ["torch"], "probe_every": 65}
    paths = [
        run_experiment(
            "saturation", out_root=tmp_path / str(i), quick=True, seeds=1, overrides=tiny
        ).results_path
        for i in range(2)
    ]
    assert paths[0].read_bytes() == paths[1].read_bytes()
