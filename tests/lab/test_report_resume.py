"""An interrupted ``dltricks report`` continues its unfinished experiment from the saved units."""

from __future__ import annotations

from pathlib import Path

import pytest

from dltricks.lab.report import build_report
from dltricks.lab.results import read_json
from dltricks.lab.runner import run_experiment


class InterruptAfter:
    """A progress sink that presses Ctrl-C once ``units`` units have finished."""

    def __init__(self, units: int) -> None:
        self.units = units
        self.seen = 0

    def plan(self, total: int) -> None:
        return None

    def advance(self, label: str) -> None:
        self.seen += 1
        if self.seen == self.units:
            raise KeyboardInterrupt


def _units(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_ino for p in (folder / "units").glob("*.json")}


def test_a_rerun_continues_the_interrupted_experiment_from_its_units(
    tmp_path: Path, one_thread: None
) -> None:
    runs = tmp_path / "runs"
    # The report's own configuration of the experiment (quick, seed 0), stopped after 3 units.
    with pytest.raises(KeyboardInterrupt):
        run_experiment(
            "bias-correction", out_root=runs, quick=True, seed=0, progress=InterruptAfter(3)
        )
    folder = runs / "bias-correction"
    saved = _units(folder)
    assert len(saved) == 3
    assert read_json(folder / "run.json")["status"] == "running"

    outcome = build_report(
        out_dir=tmp_path / "report", runs_dir=runs, quick=True, only=["bias-correction"]
    )
    assert outcome.ran == ["bias-correction"]
    assert not outcome.failed
    after = _units(folder)
    assert len(after) > len(saved)
    # The saved units were read back, not computed and written again.
    assert {name: after[name] for name in saved} == saved

    # The same results as an uninterrupted run.
    fresh = run_experiment("bias-correction", out_root=tmp_path / "fresh", quick=True, seed=0)
    resumed = read_json(folder / "results.json")
    assert resumed["records"] == fresh.results["records"]
    assert resumed["summary"] == fresh.results["summary"]
    assert resumed["config_hash"] == fresh.results["config_hash"]
