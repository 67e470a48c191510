"""``dltricks sweep``: bad invocations get one line and exit 2 before anything is written."""

from __future__ import annotations

import socket
import sys
import time
import types
from pathlib import Path

import pytest

from dltricks.cli import main
from dltricks.sweep import expand, read_rows
from tests.sweep.helpers import tiny_grid_args, tiny_sweep

BAD: list[tuple[list[str], str]] = [
    (["sweep"], "the following arguments are required: name"),
    (["sweep", "no-such", "--grid", "lr=1"], "unknown experiment 'no-such'"),
    (["sweep", "bias-correction", "--grid", "lr"], "expected KEY=V1,V2,..., got 'lr'"),
    (["sweep", "bias-correction", "--grid", "=1,2"], "expected KEY=V1,V2,..., got '=1,2'"),
    (["sweep", "bias-correction", "--grid", "lr=1,,2"], "grid setting 'lr': empty value"),
    (["sweep", "bias-correction", "--grid", "lr=[1,2"], "grid setting 'lr': unbalanced"),
    (["sweep", "bias-correction", "--grid", "lrr=0.1,0.2"], "has no setting 'lrr'"),
    (["sweep", "bias-correction", "--grid", "seeds=1,2"], "use --seeds K"),
    # Grid values meet the typed settings (an infinite rate is not silently stored as null).
    (["sweep", "depth", "--grid", "lr=0.1,1e999"], "setting 'lr': expected a finite number"),
    (["sweep", "depth", "--grid", "lr=NaN"], "setting 'lr': expected a finite number"),
    (["sweep", "depth", "--grid", "epochs=abc"], "setting 'epochs': expected an integer"),
    (["sweep", "depth", "--seed", "99999999999999999999"], "--seed: expected an integer from 0"),
    (["sweep", "bias-correction", "--grid", "lr=1", "--grid", "lr=2"], "--grid lr given twice"),
    (["sweep", "bias-correction", "--workers", "0"], "--workers: expected a positive integer"),
    (["sweep", "bias-correction", "--seeds", "0"], "--seeds: expected a positive integer"),
    (["sweep", "bias-correction", "--retries", "-1"], "--retries: expected an integer >= 0"),
    (["sweep", "bias-correction", "--executor", "bogus"], "invalid choice: 'bogus'"),
    (["sweep", "bias-correction", "--ray-address", "h:1"], "--ray-address needs --executor ray"),
    (["sweep", "bias-correction", "--executor", "sequential", "--workers", "2"], "drop --workers"),
    (["sweep", "bias-correction", "--out", "{file}"], "is not a folder"),
]


@pytest.mark.parametrize(("argv", "message"), BAD, ids=[" ".join(a[1:]) for a, _ in BAD])
def test_bad_invocation_is_one_line_exit_2_and_writes_nothing(
    argv: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    afile = tmp_path / "afile.txt"
    afile.write_text("x")
    monkeypatch.chdir(tmp_path)
    argv = [a.replace("{file}", str(afile)) for a in argv]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("dltricks: error: ")
    assert message in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile.txt"], "nothing written"


def test_ray_asked_for_without_ray_names_the_extra(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A None entry in sys.modules makes `import ray` raise ImportError, as if not installed.
    monkeypatch.setitem(sys.modules, "ray", None)
    out = tmp_path / "runs"
    argv = ["sweep", "bias-correction", "--executor", "ray", "--out", str(out)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines() == [
        "dltricks: error: --executor ray needs Ray, which is not installed: "
        "pip install dltricks[ray]"
    ]
    assert not out.exists()


def test_a_sweep_prints_one_row_per_run_and_refuses_a_bad_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "sweep",
        *tiny_grid_args("0.001,0.01"),
        "--seeds",
        "1",
        "--executor",
        "sequential",
        "--retries",
        "0",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    ids = [s.run_id for s in expand(tiny_sweep([0.001, 0.01], seeds=1))]
    header, *rows, total, store = out
    # The summary's first numeric field (by name) is the headline column.
    assert header.split()[:6] == [
        "run",
        "id",
        "settings",
        "status",
        "max_step_over_lr_corrected",
        "seconds",
    ]
    assert [r.split()[0] for r in rows] == ids
    assert all(" done " in r for r in rows)
    assert total.startswith("2 runs: 2 done (0 already in the store), 0 failed")
    assert store == f"store: {tmp_path.resolve() / 'sweep-bias-correction.sqlite'}"
    assert [r.status for r in read_rows(tmp_path / "sweep-bias-correction.sqlite", ids)] == [
        "done",
        "done",
    ]

    # The same grid plus a value the typed settings refuse: exit 2, nothing run.
    assert main(_with_bogus(argv)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "dltricks: error: bias-correction: setting 'problems[0]': expected one of constant, "
        "noisy, got 'bogus'"
    ]


def _with_bogus(argv: list[str]) -> list[str]:
    """``argv`` with the problems grid extended by a value that is not a problem."""
    i = argv.index('problems=["noisy"]')
    return [*argv[:i], 'problems=["noisy"],["bogus"]', *argv[i + 1 :]]


def test_a_ray_cluster_that_cannot_be_joined_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(**options: object) -> None:
        raise ConnectionError("Could not find any running Ray instance at h:1.\nmore text")

    fake = types.SimpleNamespace(is_initialized=lambda: False, init=refuse)
    monkeypatch.setitem(sys.modules, "ray", fake)
    # Something listens on the port (Ray's own error comes after the connection probe).
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"127.0.0.1:{server.getsockname()[1]}"
        argv = [
            "sweep",
            *tiny_grid_args("0.001"),
            "--executor",
            "ray",
            "--ray-address",
            address,
            "--out",
            str(tmp_path),
        ]
        assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [
        f"dltricks: error: cannot join the Ray cluster at {address}: "
        "Could not find any running Ray instance at h:1."
    ]


def test_a_ray_host_that_does_not_resolve_fails_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = types.SimpleNamespace(is_initialized=lambda: False)
    monkeypatch.setitem(sys.modules, "ray", fake)
    argv = ["sweep", *tiny_grid_args("0.001"), "--executor", "ray", "--out", str(tmp_path)]
    started = time.monotonic()
    assert main([*argv, "--ray-address", "no-such-host.invalid:6379"]) == 2
    # Not the 30 s bound: a name that does not resolve is not waited for (only the resolver is).
    assert time.monotonic() - started < 25
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        "dltricks: error: cannot join the Ray cluster at no-such-host.invalid:6379: host "
        "'no-such-host.invalid' not found"
    )


def test_diverging_rates_are_done_in_one_attempt_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The acceptance case `dltricks sweep depth --quick --grid lr=50`, at a tiny size."""
    argv = [
        "sweep",
        "depth",
        "--quick",
        "--grid",
        "lr=50",
        "--grid",
        'activations=["relu"],["selu"]',
        "--grid",
        "depths=[2]",
        "--grid",
        "width=16",
        "--grid",
        "epochs=3",
        "--executor",
        "sequential",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()
    header = captured.out.splitlines()[0].split()
    # A measured headline, not the constant chance level.
    assert header[header.index("status") + 1] == "mean_train_accuracy"
    assert "2 runs: 2 done (0 already in the store), 0 failed" in captured.out
    rows = read_rows(tmp_path / "sweep-depth.sqlite")
    assert [(r.status, r.attempts) for r in rows] == [("done", 1), ("done", 1)]
    for row in rows:
        assert row.metrics is not None
        assert row.metrics["summary"]["diverged_runs"] == 1
        (record,) = row.metrics["records"]
        assert record["diverged"] is True
        assert 1 <= record["diverged_epoch"] <= 3
