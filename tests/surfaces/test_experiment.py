"""Figures and the experiment entry point (on a reduced set, to stay fast)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image

from dltricks.surfaces import (
    LabelledTrajectory,
    OptimizerSpec,
    animate_trajectories,
    get_surface,
    plot_contour,
    plot_loss_curves,
    plot_theory,
    run_surfaces_experiment,
    run_trajectory,
)
from dltricks.surfaces.theory import RateCheck


def _runs() -> list[LabelledTrajectory]:
    surface = get_surface("saddle")
    out = []
    for m in (0.0, 0.9):
        traj = run_trajectory(
            surface, lambda p, m=m: torch.optim.SGD(p, lr=0.02, momentum=m), steps=120
        )
        out.append(LabelledTrajectory(f"m={m}", traj))
    return out


def test_plot_functions_write_and_return_their_paths(tmp_path: Path) -> None:
    surface = get_surface("saddle")
    runs = _runs()
    assert plot_contour(surface, runs, tmp_path / "c.png", caption="protocol") == tmp_path / "c.png"
    assert plot_loss_curves(surface, runs, tmp_path / "l.png") == tmp_path / "l.png"
    gif = animate_trajectories(surface, runs, tmp_path / "a.gif", frames=30)
    with Image.open(gif) as image:
        assert image.n_frames <= 30
        # What it shows, for the report's alt text: the runs of its legend.
        comment = image.info["comment"].decode()
    assert comment.startswith("Animation, step by step. ")
    assert all(run.label in comment for run in runs)
    with Image.open(tmp_path / "c.png") as image:
        assert all(run.label in image.text["Description"] for run in runs)
    check = RateCheck(10.0, "heavy ball", 0.1, 0.27, 0.52, 0.521, 0.002, 700, (350, 700))
    assert plot_theory([check], tmp_path / "t.png").exists()
    for name in ("c.png", "l.png", "a.gif", "t.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_experiment_returns_json_ready_results_and_figures(tmp_path: Path) -> None:
    optimizers = {
        "SGD": OptimizerSpec("SGD", lambda p, lr, m: torch.optim.SGD(p, lr=lr)),
        "Adam": OptimizerSpec("Adam", lambda p, lr, m: torch.optim.Adam(p, lr=lr)),
    }
    result = run_surfaces_experiment(
        tmp_path,
        quick=True,
        seed=3,
        optimizers=optimizers,
        surfaces=("double_well", "saddle"),
        theory_kappas=(10.0,),
    )
    json.dumps(result)
    assert set(result) >= {"config", "records", "theory", "protocol"}
    assert result["config"]["seed"] == 3  # type: ignore[index]
    records = result["records"]
    assert isinstance(records, list)
    assert len(records) == 4
    assert {(r["surface"], r["optimizer"]) for r in records} == {
        (s, o) for s in ("double_well", "saddle") for o in ("SGD", "Adam")
    }
    assert "tuned" in str(result["protocol"])
    figures = result["figures"]
    assert isinstance(figures, dict)
    for path in figures.values():
        assert Path(path).exists()
    assert {"contour_double_well", "loss_saddle", "theory", "escape_saddle"} <= set(figures)
