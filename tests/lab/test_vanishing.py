"""``vanishing``: per-layer gradient norms of a 10-hidden-layer MLP at init and after training.

Runs the quick configuration (digits, width 64, SGD lr 0.1, 10 epochs = 210 steps, seeds 0-1).
Calibration, quick configuration over seeds 0-7 (first/last-layer gradient-norm ratio):

- at init: sigmoid (Xavier) 7.9e-7 .. 2.3e-6, tanh 1.2 .. 2.1, ReLU (He) 0.21 .. 0.60,
  SELU (LeCun) 0.76 .. 1.3;
- after 210 steps: sigmoid 3.1e-6 .. 7.3e-6 (training accuracy 0.099 .. 0.101, chance),
  ReLU 0.87 .. 2.2, SELU 0.66 .. 0.93;
- SELU's last hidden layer at init: mean -0.018 .. 0.012, std 0.942 .. 1.021.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from dltricks.lab.runner import run_experiment

DEPTH = 10


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("vanishing")
    return run_experiment("vanishing", out_root=out, quick=True).results


def _records(results: dict[str, Any], activation: str, stage: str) -> list[dict[str, Any]]:
    found = [r for r in results["records"] if r["activation"] == activation and r["stage"] == stage]
    assert len(found) == 2
    return found


def test_records_carry_the_public_keys(results: dict[str, Any]) -> None:
    assert len(results["records"]) == 4 * 2 * 2
    for record in results["records"]:
        assert {"activation", "seed", "stage", "grad_norms", "vanishing_ratio"} <= set(record)
        # DEPTH hidden Linear layers plus the output layer, input side first.
        assert len(record["grad_norms"]) == DEPTH + 1
        assert record["vanishing_ratio"] == pytest.approx(
            record["grad_norms"][0] / record["grad_norms"][-1]
        )


def test_sigmoid_gradient_shrinks_by_the_derivative_bound_per_layer(
    results: dict[str, Any],
) -> None:
    # Back-prop multiplies by W^T diag(sigma') per layer; Xavier gives W unit gain on square
    # layers and sigma'(z) ~ sigma'(0) = 1/4 near init, so the ratio is about 4^-DEPTH
    # (9.5e-7). Measured 7.9e-7 .. 2.3e-6 (within 0.4 decades).
    reference = math.log10(0.25**DEPTH)
    for record in _records(results, "sigmoid", "init"):
        assert abs(math.log10(record["vanishing_ratio"]) - reference) < 1.0


@pytest.mark.parametrize("activation", ["relu", "selu"])
def test_relu_he_and_selu_lecun_keep_gradients_level(
    results: dict[str, Any], activation: str
) -> None:
    # Measured 0.21 .. 1.3 at init and 0.66 .. 2.2 after training.
    for stage in ("init", "trained"):
        for record in _records(results, activation, stage):
            assert 0.1 < record["vanishing_ratio"] < 10.0


def test_sigmoid_is_orders_of_magnitude_below_relu(results: dict[str, Any]) -> None:
    # Measured gap of the geometric means: 5.6 decades (seeds 0-1).
    ratios = results["summary"]["vanishing_ratio"]["init"]
    assert math.log10(ratios["relu"] / ratios["sigmoid"]) > 4.0


def test_deep_sigmoid_still_vanishes_after_training_and_stays_at_chance(
    results: dict[str, Any],
) -> None:
    # Measured 3.1e-6 .. 7.3e-6 and accuracy 0.099 .. 0.101 (chance is 0.1).
    for record in _records(results, "sigmoid", "trained"):
        assert record["vanishing_ratio"] < 1e-4
        assert record["train_accuracy"] < 0.1 + 0.05
    assert results["summary"]["steps"] == 10 * math.ceil(1294 / 64)


def test_selu_activations_sit_at_the_fixed_point_mean_0_variance_1(
    results: dict[str, Any],
) -> None:
    # Klambauer et al. 2017: (0, 1) is SELU's attracting fixed point. Measured at the 10th
    # hidden layer: mean -0.018 .. 0.012, std 0.942 .. 1.021.
    for record in _records(results, "selu", "init"):
        for mean, std in zip(record["activation_mean"], record["activation_std"], strict=True):
            assert abs(mean) < 0.1
            assert 0.85 < std < 1.15


def test_finding_reports_the_measured_ratios(results: dict[str, Any]) -> None:
    summary = results["summary"]
    sigmoid = summary["vanishing_ratio"]["init"]["sigmoid"]
    assert f"sigmoid {sigmoid:.1e}" in summary["finding"]
    assert results["figures"] == ["vanishing_activations.png", "vanishing_gradients.png"]


def test_same_seed_gives_byte_identical_results(tmp_path: Path, one_thread: None) -> None:
    tiny = {"activations": ["sigmoid", "selu"], "depth": 3, "epochs": 1}
    paths = [
        run_experiment(
            "vanishing", out_root=tmp_path / str(i), quick=True, seeds=1, overrides=tiny
        ).results_path
        for i in range(2)
    ]
    assert paths[0].read_bytes() == paths[1].read_bytes()
