"""The sweep store against the runs' checksummed results: edits, damage and lost files.

Every check compares with the run folders' own ``results.json`` (read and verified here), never
with what the store said before.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dltricks.cli import main
from dltricks.lab.results import read_json
from dltricks.sweep import RunTask, execute_run, expand, read_rows, run_sweep
from dltricks.sweep.store import CorruptStoreError, StoreError, SweepStore
from tests.sweep.helpers import tiny_grid_args, tiny_sweep
from tests.sweep.test_run import Recording

ROOT = Path(__file__).parents[2]
STORE = "sweep-bias-correction.sqlite"
LRS = [0.001, 0.01]


def _results_path(root: Path, run_id: str) -> Path:
    return root / "sweep-bias-correction" / run_id / "bias-correction" / "results.json"


def _expected_metrics(results: dict[str, Any]) -> dict[str, Any]:
    """What a row must hold, computed here from results.json: the summary and each record's
    scalar fields."""
    scalar = (str, int, float, type(None))
    return {
        "summary": results["summary"],
        "records": [
            {k: v for k, v in r.items() if isinstance(v, scalar)} for r in results["records"]
        ],
    }


@pytest.fixture
def finished(tmp_path: Path) -> dict[str, bytes]:
    """A finished two-run sweep in ``tmp_path``; returns each run's results.json bytes."""
    outcome = run_sweep(tiny_sweep(LRS, seeds=1), out_root=tmp_path, executor=Recording())
    assert all(r.status == "done" for r in outcome.rows)
    return {r.id: _results_path(tmp_path, r.id).read_bytes() for r in outcome.rows}


def _rerun(root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    argv = ["sweep", *tiny_grid_args(",".join(map(str, LRS))), "--executor", "sequential"]
    status = main([*argv, "--out", str(root), "--quiet"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return status, err


def _check_rows_match_results(root: Path, ids: list[str]) -> None:
    rows = {r.id: r for r in read_rows(root / STORE)}
    assert sorted(rows) == sorted(ids)
    for run_id in ids:
        results = read_json(_results_path(root, run_id))
        assert rows[run_id].status == "done"
        assert rows[run_id].metrics == _expected_metrics(results)


def _edit_one_digit(path: Path, run_id: str) -> str:
    """Change one digit of the row's stored metrics, as a person editing the file would."""
    db = sqlite3.connect(path)
    (metrics,) = db.execute("SELECT metrics FROM runs WHERE id=?", (run_id,)).fetchone()
    position = next(i for i, c in enumerate(metrics) if c.isdigit() and c != "9")
    changed = metrics[:position] + str(int(metrics[position]) + 1) + metrics[position + 1 :]
    db.execute("UPDATE runs SET metrics=? WHERE id=?", (changed, run_id))
    db.commit()
    db.close()
    return changed


def test_the_report_shows_an_edited_row_from_its_results_and_says_so(
    tmp_path: Path, finished: dict[str, bytes]
) -> None:
    from dltricks.lab.report.sweeps import sweep_views
    from dltricks.lab.report.tables import format_value

    edited = sorted(finished)[0]
    db = sqlite3.connect(tmp_path / STORE)
    (text,) = db.execute("SELECT metrics FROM runs WHERE id=?", (edited,)).fetchone()
    metrics = json.loads(text)
    # Every number of the summary edited, so the table's headline shows the edit if used.
    for key, value in metrics["summary"].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            metrics["summary"][key] = value + 1
    changed = json.dumps(metrics)
    db.execute("UPDATE runs SET metrics=? WHERE id=?", (changed, edited))
    db.commit()
    db.close()
    (view,) = sweep_views(tmp_path)
    assert any(f"run {edited}: the store disagreed with its checksummed" in n for n in view.notes)
    assert len(view.notes) == 1, view.notes
    headline = view.table.headers[view.table.headers.index("status") + 1]
    for cells in view.table.rows:
        summary = read_json(_results_path(tmp_path, cells[0]))["summary"]
        assert cells[view.table.headers.index(headline)] == format_value(summary[headline])
    # The report only reads: the store still holds the edit.
    db = sqlite3.connect(tmp_path / STORE)
    assert db.execute("SELECT metrics FROM runs WHERE id=?", (edited,)).fetchone() == (changed,)
    db.close()


def test_an_edited_row_is_reported_and_rebuilt_from_its_results(
    tmp_path: Path, finished: dict[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    edited = sorted(finished)[0]
    _edit_one_digit(tmp_path / STORE, edited)
    status, err = _rerun(tmp_path, capsys)
    assert status == 0
    assert f"note: run {edited} in {STORE} disagreed with its checksummed" in err
    assert "the row was rebuilt from it" in err
    _check_rows_match_results(tmp_path, sorted(finished))
    # Nothing ran again: the results are the very same files.
    assert {i: _results_path(tmp_path, i).read_bytes() for i in finished} == finished


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupt_store_is_kept_aside_and_rebuilt_from_the_run_folders(
    damage: str,
    tmp_path: Path,
    finished: dict[str, bytes],
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / STORE
    original = path.read_bytes()
    broken = os.urandom(len(original)) if damage == "garbage" else original[: len(original) // 3]
    path.write_bytes(broken)

    status, err = _rerun(tmp_path, capsys)
    assert status == 0, err
    kept = sorted(tmp_path.glob(f"{STORE}.corrupt-*"))
    assert len(kept) == 1
    assert kept[0].read_bytes() == broken, "the damaged store is kept as it was"
    assert f"note: sweep store {path}:" in err
    assert f"kept as {kept[0].name} and rebuilt from the run folders" in err
    _check_rows_match_results(tmp_path, sorted(finished))
    assert {i: _results_path(tmp_path, i).read_bytes() for i in finished} == finished


def test_reading_a_corrupt_store_names_it(tmp_path: Path) -> None:
    path = tmp_path / STORE
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CorruptStoreError, match=f"sweep store {path}: file is not a database"):
        read_rows(path)
    with pytest.raises(CorruptStoreError):
        SweepStore(path)
    assert isinstance(CorruptStoreError(path, "x"), StoreError | sqlite3.DatabaseError)


def test_a_corrupt_results_file_is_set_aside_and_only_its_run_runs_again(
    tmp_path: Path, finished: dict[str, bytes]
) -> None:
    damaged = sorted(finished)[1]
    results = _results_path(tmp_path, damaged)
    results.write_bytes(finished[damaged][:-40])
    # Earlier drivers burnt its attempts on the damaged file.
    db = sqlite3.connect(tmp_path / STORE)
    db.execute("UPDATE runs SET status='failed', attempts=3, metrics=NULL WHERE id=?", (damaged,))
    db.commit()
    db.close()

    executor = Recording()
    outcome = run_sweep(tiny_sweep(LRS, seeds=1), out_root=tmp_path, executor=executor, retries=2)
    assert executor.ran == [damaged], "run again despite its used attempts; the other is kept"
    aside = results.with_name("results.json.corrupt")
    assert aside.read_bytes() == finished[damaged][:-40]
    moved = [n for n in outcome.notices if "moved to results.json.corrupt" in n]
    assert len(moved) == 1
    assert moved[0].startswith(f"{results}: ")
    # Made again from its units: the same bytes as before the damage.
    assert results.read_bytes() == finished[damaged]
    _check_rows_match_results(tmp_path, sorted(finished))
    assert {r.id: r.attempts for r in outcome.rows}[damaged] == 1


def test_a_worker_sets_a_corrupt_results_file_aside_and_makes_the_run(tmp_path: Path) -> None:
    spec = expand(tiny_sweep([0.001], seeds=1))[0]
    out = tmp_path / spec.run_id
    first = execute_run(RunTask(spec.run_id, spec.to_json(), str(out)))
    assert first.ok
    path = out / "bias-correction" / "results.json"
    good = path.read_bytes()
    path.write_bytes(b"{not json")
    again = execute_run(RunTask(spec.run_id, spec.to_json(), str(out)))
    assert again.ok, again.error
    assert again.notices
    assert "moved to results.json.corrupt" in again.notices[0]
    assert path.read_bytes() == good
    assert again.metrics == _expected_metrics(read_json(path))


def test_a_done_run_whose_results_are_gone_runs_again(
    tmp_path: Path, finished: dict[str, bytes]
) -> None:
    lost = sorted(finished)[0]
    shutil.rmtree(tmp_path / "sweep-bias-correction" / lost)
    executor = Recording()
    outcome = run_sweep(tiny_sweep(LRS, seeds=1), out_root=tmp_path, executor=executor, retries=0)
    assert executor.ran == [lost]
    assert any(f"run {lost} is done in {STORE} but" in n for n in outcome.notices)
    assert _results_path(tmp_path, lost).read_bytes() == finished[lost]
    _check_rows_match_results(tmp_path, sorted(finished))


def test_a_store_on_a_full_disk_is_one_line_exit_1_and_the_finished_run_is_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dltricks.sweep import store as store_module

    real_connect = store_module._connect

    class FullDisk:
        """A connection whose recording of a finished run fails as SQLite does on a full disk."""

        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def execute(self, sql: str, *params: Any) -> Any:
            if sql.startswith("UPDATE runs SET status=?, metrics=?"):
                raise sqlite3.OperationalError("database or disk is full")
            return self.db.execute(sql, *params)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.db, name)

    monkeypatch.setattr(store_module, "_connect", lambda path: FullDisk(real_connect(path)))
    status, err = _rerun(tmp_path, capsys)
    assert status == 1
    assert err.strip().splitlines() == [
        f"dltricks: error: sweep store {tmp_path / STORE}: database or disk is full (free some "
        "space and run the same command again: finished work is kept)"
    ]
    rows = read_rows(tmp_path / STORE)
    assert {r.status for r in rows} == {"pending"}, "nothing half-recorded, nothing left running"
    finished_runs = [r.id for r in rows if _results_path(tmp_path, r.id).exists()]
    assert len(finished_runs) == 1, "the run that finished kept its results"

    # With room again, that run is recorded from its results without running again.
    monkeypatch.undo()
    executor = Recording()
    outcome = run_sweep(tiny_sweep(LRS, seeds=1), out_root=tmp_path, executor=executor)
    assert sorted(executor.ran) == sorted({r.id for r in rows} - set(finished_runs))
    _check_rows_match_results(tmp_path, [r.id for r in outcome.rows])


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="POSIX signals, /proc to find workers")
@pytest.mark.parametrize(
    "executor", [["--executor", "sequential"], ["--executor", "local", "--workers", "2"]]
)
def test_sigterm_leaves_no_row_running_and_no_worker(executor: list[str], tmp_path: Path) -> None:
    from tests.sweep.test_run import _alive, _children

    # Slower runs (more steps), so the signal lands while runs are in flight.
    argv = [
        "sweep", "bias-correction", "--quick", "--grid", "steps=400", "--grid", "dim=64",
        "--grid", "lr=0.001,0.002,0.003,0.004", "--seeds", "2", *executor,
        "--out", str(tmp_path), "--quiet",
    ]  # fmt: skip
    driver = subprocess.Popen(
        [sys.executable, "-m", "dltricks.cli", *argv],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    store = tmp_path / STORE
    deadline = time.monotonic() + 120
    running = False
    while time.monotonic() < deadline and driver.poll() is None and not running:
        if store.exists():
            with contextlib.suppress(StoreError, FileNotFoundError):
                running = any(r.status == "running" for r in read_rows(store))
        time.sleep(0.05)
    if not running:
        driver.kill()
        pytest.fail("the sweep never had a running row")
    workers = _children(driver.pid)
    driver.send_signal(signal.SIGTERM)
    # It stops without waiting for the runs in flight to finish.
    _, err = driver.communicate(timeout=30)
    assert driver.returncode == 128 + signal.SIGTERM, err
    assert err.strip().splitlines()[-1] == (
        "dltricks: terminated; run the same command to finish the sweep"
    )
    assert "Traceback" not in err
    rows = read_rows(store)
    assert rows
    assert all(r.status in ("pending", "done") for r in rows)
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in workers), "the pool's workers were stopped"


def test_a_corrupt_unit_store_is_kept_aside_and_its_units_computed_again(tmp_path: Path) -> None:
    from dltricks.sweep import store_unit

    path = tmp_path / "units.sqlite"
    broken = b"SQLite format 3\x00" + os.urandom(3000)
    path.write_bytes(broken)
    unit = store_unit(path)
    kept = sorted(tmp_path.glob("units.sqlite.corrupt-*"))
    assert len(kept) == 1
    assert kept[0].read_bytes() == broken
    assert len(unit.notices) == 1
    assert f"kept as {kept[0].name}" in unit.notices[0]
    # The new store works: a unit is computed and stored.
    assert unit({"x": 1}, lambda: {"y": 1.0}) == {"x": 1, "y": 1.0}
    assert unit.ran == [{"x": 1}]
    assert [r.status for r in read_rows(path)] == ["done"]
