"""Typed experiment settings: every value is checked, normalised, recorded and honoured."""

from __future__ import annotations

import math
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest
import torch

from dltricks.data import load_dataset
from dltricks.lab.registry import all_experiments, get_experiment
from dltricks.lab.runner import RunError, run_config, run_experiment
from dltricks.lab.settings import ExperimentConfig, Float, Int, ListOf, MapOf, SettingError
from dltricks.nn import MLP
from dltricks.train import TrainConfig, fit

# The five experiments that declare an optimizer and a learning rate.
WITH_OPTIMIZER = ("activations", "depth", "init", "saturation", "vanishing")


@pytest.mark.parametrize("name", sorted(all_experiments()))
@pytest.mark.parametrize("quick", [True, False])
def test_every_experiment_has_a_typed_frozen_config(name: str, quick: bool) -> None:
    config = get_experiment(name).configure(quick)
    assert isinstance(config, ExperimentConfig)
    rules = config.rules()
    assert set(rules) == set(config.to_dict()), "every setting declares its rule"
    with pytest.raises(FrozenInstanceError):
        config.seeds = 2  # type: ignore[misc]


@pytest.mark.parametrize("name", WITH_OPTIMIZER)
def test_the_optimizer_setting_is_declared_with_its_choices(name: str) -> None:
    config = get_experiment(name).configure(True)
    assert config.to_dict()["optimizer"] == "SGD"
    with pytest.raises(RunError, match=r"setting 'optimizer': expected one of SGD, .*Adam"):
        run_config(name, quick=True, seed=0, seeds=1, data_dir=None, overrides={"optimizer": "x"})


def test_results_record_the_full_resolved_config(tmp_path: Path) -> None:
    overrides = {"steps": 3, "dim": 4, "beta2s": [0.99], "problems": ["constant"], "lr": 1}
    outcome = run_experiment("bias-correction", out_root=tmp_path, quick=True, overrides=overrides)
    recorded = outcome.results["config"]["config"]
    defaults = get_experiment("bias-correction").configure(True).to_dict()
    assert set(recorded) == set(defaults)
    assert recorded == {**defaults, **overrides, "lr": 1.0}
    # An integer rate is the float rate: one spelling, one configuration.
    assert isinstance(recorded["lr"], float)


def test_equal_values_in_two_spellings_are_one_configuration() -> None:
    a = run_config("depth", quick=True, seed=0, seeds=1, data_dir=None, overrides={"lr": 1})
    b = run_config("depth", quick=True, seed=0, seeds=1, data_dir=None, overrides={"lr": 1.0})
    assert a == b


def test_the_optimizer_setting_is_honoured(tmp_path: Path, one_thread: None) -> None:
    """depth with optimizer=Adam trains exactly what torch.optim.Adam trains from the same start."""
    settings = {
        "optimizer": "Adam",
        "lr": 0.01,
        "activations": ["relu"],
        "depths": [1],
        "width": 16,
        "epochs": 2,
    }
    outcome = run_experiment("depth", out_root=tmp_path, quick=True, seeds=1, overrides=settings)
    (record,) = outcome.results["records"]
    # The reference: the same model and data, trained by torch's own Adam.
    data = load_dataset("digits", seed=0)
    model = MLP(
        data.n_features, data.n_classes, 16, 1, "relu", generator=torch.Generator().manual_seed(0)
    )
    expected = fit(
        model,
        lambda params: torch.optim.Adam(params, lr=0.01),
        data,
        TrainConfig(epochs=2, batch_size=64, seed=0),
        progress=False,
    )
    assert record["train_loss"] == pytest.approx(expected.final.train_loss, rel=1e-5)
    sgd = fit(
        MLP(
            data.n_features,
            data.n_classes,
            16,
            1,
            "relu",
            generator=torch.Generator().manual_seed(0),
        ),
        lambda params: torch.optim.SGD(params, lr=0.01),
        data,
        TrainConfig(epochs=2, batch_size=64, seed=0),
        progress=False,
    )
    assert not math.isclose(record["train_loss"], sgd.final.train_loss, rel_tol=1e-3)


def test_a_rule_normalises_and_refuses() -> None:
    assert Float(0.0, 1.0).check(1, "x") == 1.0
    assert ListOf(Int(1, 3)).check((1, 2), "x") == [1, 2]
    with pytest.raises(SettingError, match=r"setting 'x\[1\]': expected an integer from 1 to 3"):
        ListOf(Int(1, 3)).check([1, 4], "x")
    with pytest.raises(SettingError, match=r"got true"):
        Int(0, 5).check(True, "x")
    with pytest.raises(SettingError, match=r"setting 'x \(a key\)'"):
        MapOf(Int(0, 1), Int(0, 1)).check({"a": 1}, "x")
    for bad in (math.nan, math.inf, -math.inf, "0.5"):
        with pytest.raises(SettingError):
            Float(0.0, 1.0).check(bad, "x")


def test_an_error_is_one_line_naming_experiment_setting_and_range() -> None:
    with pytest.raises(RunError) as caught:
        run_config("depth", quick=True, seed=0, seeds=1, data_dir=None, overrides={"depths": [0]})
    assert str(caught.value) == (
        "depth: setting 'depths[0]': expected an integer from 1 to 100, got 0"
    )
