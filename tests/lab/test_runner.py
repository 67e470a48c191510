"""The lab runner: deterministic results, resumable units, checksums, locks."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar

import pytest

from dltricks.lab import registry
from dltricks.lab.context import RunContext
from dltricks.lab.registry import Experiment
from dltricks.lab.results import CorruptFileError, read_json, write_json
from dltricks.lab.runner import RunError, exclusive_lock, run_experiment
from dltricks.lab.settings import SEEDS, ExperimentConfig, Int, ListOf

CALLS: list[tuple[int, int]] = []


class CrashError(Exception):
    pass


# Where the toy experiment crashes; outside its config, so a resumed run has the same config.
CRASH_AFTER: dict[str, int | None] = {"units": None}


@dataclass(frozen=True)
class ToyConfig(ExperimentConfig):
    experiment: ClassVar[str] = "toy-runner-test"

    values: Annotated[list[int], ListOf(Int(0, 100))]
    seeds: Annotated[int, SEEDS]


def _configure(quick: bool) -> ToyConfig:
    return ToyConfig(values=[1, 2, 3], seeds=2)


def _run(ctx: RunContext) -> dict[str, Any]:
    done = 0
    for value in ctx.config["values"]:
        for seed in ctx.seeds:
            if done == CRASH_AFTER["units"]:
                raise CrashError

            def compute(value: int = value, seed: int = seed) -> dict[str, Any]:
                CALLS.append((value, seed))
                return {"square": value * value + seed / 10}

            ctx.unit({"value": value, "seed": seed}, compute)
            done += 1
    total = sum(r["square"] for r in ctx.records)
    return {"total": total, "finding": f"the squares add up to {total:.1f}"}


@pytest.fixture
def toy() -> Iterator[str]:
    name = "toy-runner-test"
    registry.register(
        Experiment(name, "squares add up", "arithmetic", ("dropout",), _configure, _run)
    )
    CALLS.clear()
    yield name
    CRASH_AFTER["units"] = None
    registry._REGISTRY.pop(name, None)


def test_results_have_config_records_summary_and_checksum(toy: str, tmp_path: Path) -> None:
    outcome = run_experiment(toy, out_root=tmp_path)
    results = read_json(outcome.results_path)
    assert results["config"]["seeds"] == [0, 1]
    assert [(r["value"], r["seed"]) for r in results["records"]] == [
        (1, 0),
        (1, 1),
        (2, 0),
        (2, 1),
        (3, 0),
        (3, 1),
    ]
    assert results["summary"]["total"] == pytest.approx(1 + 1.1 + 4 + 4.1 + 9 + 9.1)
    raw = json.loads(outcome.results_path.read_text())
    assert len(raw["sha256"]) == 64


def test_same_seed_gives_byte_identical_results(toy: str, tmp_path: Path) -> None:
    a = run_experiment(toy, out_root=tmp_path / "a", seed=3)
    b = run_experiment(toy, out_root=tmp_path / "b", seed=3)
    assert a.results_path.read_bytes() == b.results_path.read_bytes()
    c = run_experiment(toy, out_root=tmp_path / "c", seed=4)
    assert a.results_path.read_bytes() != c.results_path.read_bytes()


def test_resume_with_another_configuration_is_refused(toy: str, tmp_path: Path) -> None:
    CRASH_AFTER["units"] = 2
    with pytest.raises(CrashError):
        run_experiment(toy, out_root=tmp_path)
    CRASH_AFTER["units"] = None
    with pytest.raises(RunError, match="used another configuration"):
        run_experiment(toy, out_root=tmp_path, resume=True, overrides={"values": [1, 2]})


def test_resume_reuses_finished_units(toy: str, tmp_path: Path) -> None:
    reference = run_experiment(toy, out_root=tmp_path / "ref")
    CALLS.clear()
    run_dir = tmp_path / "run"
    CRASH_AFTER["units"] = 4
    with pytest.raises(CrashError):
        run_experiment(toy, out_root=run_dir)
    CRASH_AFTER["units"] = None
    assert len(CALLS) == 4
    # A crash leaves units/ and a run.json marked running; resume the same configuration.
    run_file = run_dir / toy / "run.json"
    state = read_json(run_file)
    assert state["status"] == "running"
    CALLS.clear()
    resumed = run_experiment(toy, out_root=run_dir, resume=True)
    assert resumed.results["records"] == reference.results["records"]
    assert CALLS == [(3, 0), (3, 1)], "only the two missing units may run"
    assert resumed.results["summary"] == reference.results["summary"]


def test_corrupt_unit_is_reported_and_recomputed(toy: str, tmp_path: Path) -> None:
    run_experiment(toy, out_root=tmp_path)
    unit = sorted((tmp_path / toy / "units").glob("*.json"))[0]
    unit.write_text(unit.read_text()[:-20])
    CALLS.clear()
    outcome = run_experiment(toy, out_root=tmp_path, resume=True)
    assert len(CALLS) == 1
    assert any("moved to" in n for n in outcome.notices)
    assert unit.with_suffix(".corrupt").exists()


def test_corrupt_results_file_is_detected_not_used(toy: str, tmp_path: Path) -> None:
    outcome = run_experiment(toy, out_root=tmp_path)
    text = outcome.results_path.read_text()
    outcome.results_path.write_text(text.replace('"square": 1.0', '"square": 2.0'))
    damaged = outcome.results_path.read_bytes()
    with pytest.raises(CorruptFileError, match="checksum mismatch"):
        read_json(outcome.results_path)
    with pytest.raises(CorruptFileError):
        run_experiment(toy, out_root=tmp_path, reuse=True)
    assert outcome.results_path.read_bytes() == damaged


def test_truncated_results_file_is_reported(toy: str, tmp_path: Path) -> None:
    outcome = run_experiment(toy, out_root=tmp_path)
    outcome.results_path.write_bytes(outcome.results_path.read_bytes()[:100])
    with pytest.raises(CorruptFileError, match="not valid JSON"):
        read_json(outcome.results_path)


def test_reuse_returns_cached_results_only_for_the_same_config(toy: str, tmp_path: Path) -> None:
    run_experiment(toy, out_root=tmp_path)
    CALLS.clear()
    again = run_experiment(toy, out_root=tmp_path, reuse=True)
    assert again.reused
    assert CALLS == []
    changed = run_experiment(toy, out_root=tmp_path, reuse=True, overrides={"values": [5]})
    assert not changed.reused
    assert len(CALLS) == 2


def test_unknown_setting_is_rejected(toy: str, tmp_path: Path) -> None:
    with pytest.raises(RunError, match="has no setting 'widht'"):
        run_experiment(toy, out_root=tmp_path, overrides={"widht": 3})


def _hold_lock(path: str, ready: Any, release: Any) -> None:
    with exclusive_lock(Path(path)):
        ready.set()
        release.wait(10)


def test_second_run_into_the_same_folder_is_refused(toy: str, tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold_lock, args=(str(tmp_path / toy), ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(RunError, match="another dltricks run is writing into"):
            run_experiment(toy, out_root=tmp_path)
    finally:
        release.set()
        holder.join(30)
    assert run_experiment(toy, out_root=tmp_path).results["summary"]["total"] > 0


def test_write_json_refuses_reserved_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="reserved"):
        write_json(tmp_path / "x.json", {"sha256": "x"})
