"""The store's meta entries: each sweep's description and command, a comparison's units."""

from __future__ import annotations

import shlex
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from dltricks.cli import build_parser, main
from dltricks.sweep import (
    SweepSpec,
    expand,
    parse_grid_item,
    read_meta,
    read_rows,
    read_units,
    run_sweep,
    store_unit,
    sweep_command,
    sweep_id,
)
from dltricks.sweep.executors import SequentialExecutor
from tests.sweep.helpers import tiny_sweep


def test_a_sweep_stores_its_description_and_a_command_that_reproduces_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = tiny_sweep([0.001, 0.01], seeds=2)
    outcome = run_sweep(sweep, out_root=tmp_path, executor=SequentialExecutor())
    meta = read_meta(outcome.store_path, "sweep:")
    assert list(meta) == [f"sweep:{sweep_id(sweep)}"]
    entry = meta[f"sweep:{sweep_id(sweep)}"]
    assert entry["runs"] == [s.run_id for s in expand(sweep)], "run ids in grid order"
    assert (entry["experiment"], entry["seeds"], entry["seed"], entry["quick"]) == (
        "bias-correction",
        2,
        0,
        True,
    )
    assert entry["grid"] == [[k, v] for k, v in sweep.grid.items()], "in the sweep's order"
    command = entry["command"]
    assert command.startswith("dltricks sweep bias-correction --quick --grid ")

    # The stored command, run as it is (plus where and how), finds every run already done.
    argv = shlex.split(command)[1:]
    assert main([*argv, "--out", str(tmp_path), "--executor", "sequential", "--quiet"]) == 0
    assert "4 runs: 4 done (4 already in the store)" in capsys.readouterr().out
    assert list(read_meta(outcome.store_path, "sweep:")) == [f"sweep:{sweep_id(sweep)}"]

    # Another grid in the same store is another sweep entry; rows are shared where equal.
    other = tiny_sweep([0.01], seeds=1)
    run_sweep(other, out_root=tmp_path, executor=SequentialExecutor())
    meta = read_meta(outcome.store_path, "sweep:")
    assert sorted(meta) == sorted([f"sweep:{sweep_id(sweep)}", f"sweep:{sweep_id(other)}"])
    assert len(read_rows(outcome.store_path)) == 4


TRICKY: dict[str, list[Any]] = {
    "act": ["relu", "leaky relu", "1", "", " padded ", "a,b", 'say "hi"', "back\\slash"],
    "lr": [0.1, 1e-4, 3],
    "flags": [True, False, None],
    "nested": [[1, 2], {"b": [3, 4], "a": "x,y"}, []],
}


def test_the_command_reads_back_every_grid_value_unchanged() -> None:
    sweep = SweepSpec("bias-correction", TRICKY, seeds=3, seed=5, quick=False)
    args = build_parser().parse_args(shlex.split(sweep_command(sweep))[1:])
    assert dict(parse_grid_item(item) for item in args.grid) == TRICKY
    assert (args.name, args.seeds, args.seed, args.quick) == ("bias-correction", 3, 5, False)


def test_a_store_without_meta_reads_as_no_meta(tmp_path: Path) -> None:
    # A store written before meta entries existed has only the runs table.
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE runs (id TEXT PRIMARY KEY)")
    db.commit()
    db.close()
    assert read_meta(path) == {}
    with pytest.raises(FileNotFoundError):
        read_meta(tmp_path / "missing.sqlite")


def test_unit_groups_share_a_store_and_fail_without_partial_rows(tmp_path: Path) -> None:
    path = tmp_path / "units.sqlite"
    first, second = store_unit(path, name="a"), store_unit(path, name="b")
    assert first({"x": 1}, lambda: {"y": float("nan"), "z": (1, 2)}) == {
        "x": 1,
        "y": None,
        "z": [1, 2],
    }, "the first record is already what the store reads back"
    assert second({"x": 1}, lambda: {"y": 2.0}) == {"x": 1, "y": 2.0}

    def boom() -> dict[str, Any]:
        raise ValueError("no luck")

    with pytest.raises(ValueError, match="no luck"):
        first({"x": 2}, boom)
    rows = {(r.spec["unit"], r.spec["key"]["x"]): r for r in read_rows(path)}
    assert {k: r.status for k, r in rows.items()} == {
        ("a", 1): "done",
        ("b", 1): "done",
        ("a", 2): "failed",
    }
    assert rows["a", 2].metrics is None
    assert "ValueError: no luck" in (rows["a", 2].error or "")

    # Read back without computing: the stored record, whatever compute would say now.
    again = store_unit(path, name="a")
    assert again({"x": 1}, lambda: {"y": 99.0}) == {"x": 1, "y": None, "z": [1, 2]}
    assert again.ran == []
    again.describe({"what": "test"})
    info, records = read_units(path, name="a")
    assert info == {"what": "test"}
    assert records == [{"x": 1, "y": None, "z": [1, 2]}]
    with pytest.raises(ValueError, match="no finished unit group 'b'"):
        read_units(path, name="b")


def test_the_report_shows_stores_without_descriptions_and_unreadable_ones(tmp_path: Path) -> None:
    from dltricks.lab.report.sweeps import sweep_views
    from dltricks.sweep import SweepStore

    spec = {"experiment": "depth", "quick": True, "overrides": {"lr": 0.1}, "seed": 0}
    with SweepStore(tmp_path / "sweep-depth.sqlite") as store:
        store.add_pending([("abc", "depth", spec, str(tmp_path))])  # no meta: an older driver
    (tmp_path / "sweep-broken.sqlite").write_bytes(b"not a database" * 100)
    views = {v.experiment: v for v in sweep_views(tmp_path)}
    assert set(views) == {"depth", "broken"}
    old = views["depth"]
    assert (old.counts, old.reproduce, old.error) == ("1 run: 1 pending", None, None)
    assert old.settings == {"grid: lr": "0.1"}
    assert old.table.rows == [["abc", "0", "pending", "—"]]
    assert "cannot read sweep-broken.sqlite" in (views["broken"].error or "")
