"""The driver and its store: failures, retries, resume after SIGKILL, no partial rows."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar

import pytest

from dltricks.lab import registry
from dltricks.lab.context import RunContext
from dltricks.lab.registry import Experiment
from dltricks.lab.settings import SEEDS, ExperimentConfig, Int
from dltricks.sweep import (
    RunResult,
    RunTask,
    SweepSpec,
    execute_run,
    expand,
    read_rows,
    run_sweep,
)
from dltricks.sweep.executors import SequentialExecutor, _failed
from dltricks.sweep.store import SweepStore
from tests.sweep.helpers import tiny_grid_args, tiny_sweep

ROOT = Path(__file__).parents[2]


class Recording(SequentialExecutor):
    """The in-process executor, noting which runs it executed; the runs in ``crash`` fail as a
    dead worker process would (an infrastructure failure, which the driver retries)."""

    def __init__(self, crash: frozenset[str] = frozenset()) -> None:
        super().__init__(self._run)
        self.ran: list[str] = []
        self.crash = crash

    def _run(self, task: RunTask) -> RunResult:
        self.ran.append(task.run_id)
        if task.run_id in self.crash:
            return _failed(task, "worker process died: BrokenProcessPool: killed by signal 9")
        return execute_run(task)


def _integrity(path: Path) -> str:
    db = sqlite3.connect(path)
    try:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()


def test_a_crashed_run_is_recorded_with_its_error_and_the_others_finish(tmp_path: Path) -> None:
    sweep = tiny_sweep([0.001, 0.01], seeds=1, problems=[["noisy"], ["constant"]])
    specs = expand(sweep)
    bad = frozenset(s.run_id for s in specs if s.overrides["problems"] == ["constant"])
    executor = Recording(crash=bad)
    outcome = run_sweep(sweep, out_root=tmp_path, executor=executor, retries=1)
    rows = {r.id: r for r in outcome.rows}
    assert len(rows) == 4
    for run_id, row in rows.items():
        if run_id in bad:
            assert row.status == "failed"
            assert row.attempts == 2, "one try and one retry"
            assert row.metrics is None
            assert "worker process died" in (row.error or "")
        else:
            assert row.status == "done"
            assert row.attempts == 1
            assert row.error is None
            assert row.metrics is not None
            assert "finding" in row.metrics["summary"]
            records = row.metrics["records"]
            assert sorted(r["bias_correction"] for r in records) == [False, True]
            assert all(r["problem"] == "noisy" for r in records)
            assert all("step_sizes" not in r for r in records), "curves stay in results.json"
            assert (Path(row.out_dir or "") / "bias-correction" / "results.json").exists()
            assert row.duration is not None
            assert row.finished is not None
            assert row.started is not None
            assert row.finished >= row.started
    assert sorted(executor.ran) == sorted([*rows, *bad])
    # The store on disk says the same as the outcome.
    assert {r.id: r.status for r in read_rows(outcome.store_path)} == {
        i: r.status for i, r in rows.items()
    }

    # Rerun with the same limit: done runs are skipped, exhausted failures are not retried.
    again = Recording(crash=bad)
    outcome = run_sweep(sweep, out_root=tmp_path, executor=again, retries=1)
    assert again.ran == []
    assert outcome.skipped == 2
    # A larger limit gives the failed runs one more attempt each.
    more = Recording(crash=bad)
    outcome = run_sweep(sweep, out_root=tmp_path, executor=more, retries=2)
    assert sorted(more.ran) == sorted(bad)
    assert {r.id: r.attempts for r in outcome.rows if r.id in bad} == dict.fromkeys(bad, 3)


_WRITER = """
import sys
from dltricks.sweep.store import SweepStore

store = SweepStore(sys.argv[1])
store.add_pending((f"r{i:05d}", "x", {"i": i}, "") for i in range(5000))
print("ready", flush=True)
for i in range(5000):
    store.mark_running(f"r{i:05d}")
    store.finish(f"r{i:05d}", ok=True, metrics={"i": i, "pad": "x" * 3000}, error=None,
                 started=1.0, finished=2.0, duration=1.0, host="h")
"""


def test_the_store_survives_sigkill_of_its_writer(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "ready"
    # Kill it in the middle of its stream of transactions.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done = sum(r.status == "done" for r in read_rows(path))
        if done >= 20:
            break
        time.sleep(0.05)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert _integrity(path) == "ok"
    rows = read_rows(path)
    assert len(rows) == 5000
    done = [r for r in rows if r.status == "done"]
    assert 20 <= len(done) < 5000
    for row in rows:
        # Every row is a whole transaction: done with all its fields, or untouched.
        if row.status == "done":
            assert row.metrics == {"i": row.spec["i"], "pad": "x" * 3000}
            assert (row.attempts, row.finished, row.host) == (1, 2.0, "h")
        else:
            assert row.status in ("pending", "running")
            assert (row.metrics, row.attempts, row.finished) == (None, 0, None)
    # The next driver takes over: a run left running goes back to pending.
    with SweepStore(path) as store:
        store.release_stale()
        assert {r.status for r in store.rows()} <= {"done", "pending"}
    assert _integrity(path) == "ok"


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # Field 4 (after the parenthesised command) is the parent's pid.
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the workers")
def test_a_killed_sweep_reruns_only_its_missing_runs(tmp_path: Path) -> None:
    sweep = tiny_sweep([0.001, 0.01], seeds=4)
    specs = expand(sweep)
    store_path = tmp_path / "sweep-bias-correction.sqlite"
    argv = [*tiny_grid_args("0.001,0.01"), "--seeds", "4", "--workers", "2"]
    driver = subprocess.Popen(
        [sys.executable, "-m", "dltricks.cli", "sweep", *argv, "--out", str(tmp_path), "--quiet"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 90
    done: dict[str, float | None] = {}
    while time.monotonic() < deadline and driver.poll() is None:
        if store_path.exists():
            done = {r.id: r.finished for r in read_rows(store_path) if r.status == "done"}
            if len(done) >= 2:
                break
        time.sleep(0.05)
    workers = _children(driver.pid)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert 2 <= len(done) < len(specs), "killed midway"
    # Orphaned pool workers notice their driver is gone and exit.
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in workers)
    assert _integrity(store_path) == "ok"
    done = {r.id: r.finished for r in read_rows(store_path) if r.status == "done"}
    # A run may have written its results.json just before the kill, unrecorded: the store
    # check records it from that file instead of running it again.
    written = {
        s.run_id
        for s in specs
        if s.run_id not in done
        and (tmp_path / "sweep-bias-correction" / s.run_id / s.experiment / "results.json").exists()
    }

    executor = Recording()
    outcome = run_sweep(sweep, out_root=tmp_path, executor=executor, retries=0)
    assert sorted(executor.ran) == sorted({s.run_id for s in specs} - set(done) - written)
    assert outcome.skipped == len(done) + len(written)
    assert all(r.status == "done" for r in outcome.rows)
    # Runs finished before the kill were not touched.
    assert {r.id: r.finished for r in outcome.rows if r.id in done} == done
    assert all(r.attempts == 1 for r in outcome.rows)


def test_a_second_driver_on_the_same_sweep_is_refused(tmp_path: Path) -> None:
    from dltricks.lab.runner import RunError, exclusive_lock

    sweep = tiny_sweep([0.001], seeds=1)
    with (
        exclusive_lock(tmp_path.resolve() / "sweep-bias-correction"),
        pytest.raises(RunError, match="another dltricks run"),
    ):
        run_sweep(sweep, out_root=tmp_path, executor=Recording())
    assert os.listdir(tmp_path) == ["sweep-bias-correction"]


@dataclass(frozen=True)
class _RaisingConfig(ExperimentConfig):
    experiment: ClassVar[str] = "raises-in-sweep-test"

    value: Annotated[int, Int(0, 10)]
    seeds: Annotated[int, SEEDS]


def _raise(ctx: RunContext) -> dict[str, Any]:
    if ctx.config["value"] == 1:
        raise ValueError("value 1 is refused by the experiment itself")
    return {"value": ctx.config["value"], "finding": "fine"}


@pytest.fixture
def raising_experiment() -> Iterator[str]:
    name = _RaisingConfig.experiment
    registry.register(
        Experiment(
            name, "raises for 1", "a test", ("dropout",), lambda q: _RaisingConfig(0, 1), _raise
        )
    )
    yield name
    registry._REGISTRY.pop(name, None)


def test_an_exception_of_the_run_itself_is_not_retried(
    tmp_path: Path, raising_experiment: str
) -> None:
    sweep = SweepSpec(raising_experiment, {"value": [0, 1]}, quick=True)
    executor = Recording()
    outcome = run_sweep(sweep, out_root=tmp_path, executor=executor, retries=2)
    by_value = {s.overrides["value"]: r for s, r in zip(outcome.specs, outcome.rows, strict=True)}
    assert by_value[0].status == "done"
    assert by_value[1].status == "failed"
    assert by_value[1].attempts == 1, "the same settings would raise again"
    assert "ValueError: value 1 is refused" in (by_value[1].error or "")
    assert len(executor.ran) == 2
    # A later invocation tries it again (its cause may have been fixed) while attempts remain.
    again = Recording()
    outcome = run_sweep(sweep, out_root=tmp_path, executor=again, retries=2)
    assert again.ran == [by_value[1].id]
    assert {r.attempts for r in outcome.rows if r.status == "failed"} == {2}
