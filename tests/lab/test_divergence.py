"""Divergence is a result: the run stops early, is recorded, and the experiment still reports."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import torch

from dltricks.data import load_dataset
from dltricks.lab.experiments import optimizers as optimizers_experiment
from dltricks.lab.results import read_json
from dltricks.lab.runner import run_experiment
from dltricks.nn import MLP
from dltricks.train import TrainConfig, fit

# One tiny depth run per activation at a rate that no network survives.
DIVERGING = {
    "lr": 50.0,
    "activations": ["relu", "selu"],
    "depths": [2],
    "width": 16,
    "epochs": 3,
}


def _torch_sgd_reference(activation: str, lr: float, epochs: int) -> Any:
    """The same model and data trained by torch's own SGD (which writes NaN silently)."""
    data = load_dataset("digits", seed=0)
    model = MLP(
        data.n_features,
        data.n_classes,
        16,
        2,
        activation,
        generator=torch.Generator().manual_seed(0),
    )
    return fit(
        model,
        lambda params: torch.optim.SGD(params, lr=lr),
        data,
        TrainConfig(epochs=epochs, batch_size=64, seed=0),
        progress=False,
    )


def test_a_diverging_depth_run_is_recorded_with_its_epoch(tmp_path: Path, one_thread: None) -> None:
    outcome = run_experiment("depth", out_root=tmp_path, quick=True, seeds=1, overrides=DIVERGING)
    results = read_json(outcome.results_path)
    records = {r["activation"]: r for r in results["records"]}
    for activation, record in records.items():
        reference = _torch_sgd_reference(activation, 50.0, 3)
        assert reference.stop_reason == "diverged", "the reference diverges too"
        assert record["diverged"] is True
        assert record["diverged_epoch"] == reference.stopped_epoch
        # Stopped early: the curve ends at the epoch the loss went non-finite.
        assert len(record["curve_train_loss"]) == reference.stopped_epoch
    assert results["summary"]["diverged_runs"] == 2
    assert "2 of 2 runs diverged" in results["summary"]["finding"]
    assert results["figures"] == ["depth_accuracy.png"]
    assert (outcome.out_dir / "depth_accuracy.png").stat().st_size > 0


def test_a_healthy_run_is_recorded_as_not_diverged(tmp_path: Path, one_thread: None) -> None:
    settings = {**DIVERGING, "lr": 0.1, "activations": ["relu"], "epochs": 1}
    outcome = run_experiment("depth", out_root=tmp_path, quick=True, seeds=1, overrides=settings)
    (record,) = outcome.results["records"]
    assert record["diverged"] is False
    assert record["diverged_epoch"] is None
    assert math.isfinite(record["train_loss"])


class _NaNAfterStep(torch.optim.SGD):
    """SGD whose every step leaves the weights at NaN: a run that diverges at its first step."""

    def step(self, closure: Callable[[], float] | None = None) -> Any:  # type: ignore[override]
        loss = super().step(closure)
        with torch.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    p.fill_(math.nan)
        return loss


def test_optimizers_writes_results_and_figures_when_every_rate_diverges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    def factory(params: Iterable[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
        return _NaNAfterStep(params, lr=lr)

    monkeypatch.setitem(optimizers_experiment.OPTIMIZERS, "SGD", factory)
    settings = {
        "models": ["logistic"],
        "optimizers": ["SGD"],
        "grids": {"SGD": [0.1, 1.0]},
        "epochs": 2,
    }
    outcome = run_experiment(
        "optimizers", out_root=tmp_path, quick=True, seeds=1, overrides=settings
    )
    results = read_json(outcome.results_path)
    assert sorted(results["figures"]) == [
        "optimizers_curves.png",
        "optimizers_sensitivity.png",
        "optimizers_test_accuracy.png",
    ]
    for name in results["figures"]:
        assert (outcome.out_dir / name).stat().st_size > 0
    # Two tuning runs (one per rate) and no final run: nothing was chosen.
    assert all(r["diverged"] for r in results["records"])
    assert results["summary"]["diverged_runs"] == len(results["records"]) >= 2
    assert "every learning rate of every optimizer diverged" in results["summary"]["finding"]


def _nan_named_optimizer(name: str, params: Iterable[Any], lr: float, **kwargs: Any) -> Any:
    # Stands in for dltricks.lab.training.make_optimizer.
    return _NaNAfterStep(params, lr=lr)


def _nan_adam(params: Iterable[Any], lr: float, **kwargs: Any) -> Any:
    # Stands in for dltricks.optim.Adam.
    return _NaNAfterStep(params, lr=lr)


# Experiment, the name it builds optimizers through, tiny settings.
EVERY_RUN_DIVERGES = {
    "activations": (
        "make_optimizer",
        {"activations": ["relu", "tanh"], "depth": 2, "width": 8, "epochs": 2},
    ),
    "depth": ("make_optimizer", {"activations": ["relu"], "depths": [1, 2], "width": 8}),
    "init": ("make_optimizer", {"depths": [2], "width": 8, "epochs": 2}),
    "saturation": ("make_optimizer", {"width": 8, "epochs": 2, "inits": ["xavier"]}),
    "vanishing": (
        "make_optimizer",
        {"activations": ["sigmoid", "relu"], "depth": 3, "width": 8, "epochs": 2},
    ),
    "generalization": (
        "Adam",
        {
            "width": 8,
            "epochs": 2,
            "tricks": {"plain": {}, "early_stopping": {"early_stopping": True}},
        },
    ),
}


@pytest.mark.parametrize("name", list(EVERY_RUN_DIVERGES))
def test_an_experiment_whose_every_run_diverges_still_reports(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    import importlib

    builder, settings = EVERY_RUN_DIVERGES[name]
    # The training experiments build their optimizer through the lab's shared training helper.
    experiment_module = f"dltricks.lab.experiments.{'init_depth' if name == 'init' else name}"
    module = importlib.import_module(
        "dltricks.lab.training" if builder == "make_optimizer" else experiment_module
    )
    stand_in = _nan_adam if builder == "Adam" else _nan_named_optimizer
    monkeypatch.setattr(module, builder, stand_in)
    outcome = run_experiment(name, out_root=tmp_path, quick=True, seeds=1, overrides=settings)
    results = read_json(outcome.results_path)
    trained = [r for r in results["records"] if r.get("stage", "trained") == "trained"]
    assert trained
    # The weights are NaN after the first step: every run stops after its first epoch.
    assert all(r["diverged"] is True and r["diverged_epoch"] == 1 for r in trained)
    assert results["summary"]["diverged_runs"] == len(trained)
    assert results["figures"]
    for figure in results["figures"]:
        assert (outcome.out_dir / figure).stat().st_size > 0
