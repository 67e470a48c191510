"""Fair comparison: the tuner picks what an independent search over the grid picks."""

from __future__ import annotations

import json
import math

import pytest
import torch

from dltricks.surfaces import (
    OptimizerSpec,
    TuningProtocol,
    compare_on_surface,
    default_optimizers,
    get_surface,
    quadratic,
    run_trajectory,
    steps_to_tolerance,
    tune,
)

RECORD_FIELDS = {"surface", "optimizer", "lr", "steps_to_tolerance", "final_distance", "reached"}


def _sgd_spec() -> OptimizerSpec:
    return OptimizerSpec("SGD", lambda p, lr, m: torch.optim.SGD(p, lr=lr))


def test_tune_picks_the_fewest_steps_on_the_grid_and_ranks_divergence_last() -> None:
    surface = quadratic(10.0)
    # 2/11 is gradient descent's optimal lr here; 0.25 diverges (|1 - 10 lr| = 1.5).
    grid = (0.25, 0.01, 0.05, 0.1, 2 / 11)
    protocol = TuningProtocol(lr_grid=grid, steps=200, tol=1e-6)
    run = tune(surface, _sgd_spec(), protocol)

    def steps(lr: float) -> float:
        traj = run_trajectory(
            surface, lambda p: torch.optim.SGD(p, lr=lr), steps=200, divergence_bound=1e6
        )
        s = steps_to_tolerance(traj, surface, 1e-6)
        return math.inf if s is None else s

    assert run.lr == min(grid, key=steps) == pytest.approx(2 / 11)
    assert len(run.grid) == len(grid)
    diverged = [g for g in run.grid if g["lr"] == 0.25]
    assert diverged[0]["steps_to_tolerance"] is None
    assert diverged[0]["final_loss"] is None


def test_momentum_is_tuned_on_its_grid() -> None:
    surface = quadratic(10.0)
    spec = default_optimizers((0.1, 0.5, 0.9))["Momentum"]
    run = tune(surface, spec, TuningProtocol(lr_grid=(0.1, 0.3), steps=200))
    assert len(run.grid) == 6
    assert run.momentum in (0.1, 0.5, 0.9)


def test_surfaces_without_a_minimum_use_the_common_lr() -> None:
    protocol = TuningProtocol(lr_grid=(1e-3, 1e-2), steps=100, untuned_lr=0.02)
    runs = compare_on_surface(get_surface("saddle"), default_optimizers(), protocol)
    assert {r.lr for r in runs} == {0.02}
    assert all(len(r.grid) == 1 for r in runs)
    assert {r.momentum for r in runs if r.optimizer in ("Momentum", "Nesterov")} == {0.9}


def test_records_carry_the_fields_and_serialise() -> None:
    protocol = TuningProtocol(lr_grid=(0.01, 0.1), steps=100)
    runs = compare_on_surface(get_surface("double_well"), default_optimizers(), protocol)
    assert [r.optimizer for r in runs] == [
        "SGD",
        "Momentum",
        "Nesterov",
        "AdaGrad",
        "RMSprop",
        "Adam",
    ]
    for r in runs:
        record = r.record()
        assert set(record) >= RECORD_FIELDS
        assert record["reached"] in ("global", "local", "none")
    json.dumps([r.record() for r in runs])


def test_protocol_text_states_grid_budget_and_objective() -> None:
    protocol = TuningProtocol(lr_grid=(1e-3, 1e-2, 1e-1), steps=123, tol=1e-4)
    text = protocol.describe(default_optimizers((0.5, 0.9)))
    for needle in ("3 values", "0.001", "0.1", "123 steps", "below 0.0001", "Momentum [0.5, 0.9]"):
        assert needle in text, needle


def test_a_custom_optimizer_mapping_is_used() -> None:
    calls: list[float] = []

    def build(p: list[torch.nn.Parameter], lr: float, m: float | None) -> torch.optim.Optimizer:
        calls.append(lr)
        return torch.optim.SGD(p, lr=lr)

    spec = OptimizerSpec("Mine", build)
    runs = compare_on_surface(
        quadratic(2.0), {"Mine": spec}, TuningProtocol(lr_grid=(0.1, 0.5), steps=20)
    )
    assert calls == [0.1, 0.5]
    assert runs[0].optimizer == "Mine"
