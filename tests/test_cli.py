"""The dltricks command: bad invocations get one line, exit status 2, and write nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dltricks.cli import main

BAD_INVOCATIONS: list[tuple[list[str], str]] = [
    ([], "no command given"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["run"], "the following arguments are required: name"),
    (["run", "no-such-experiment", "--quick"], "unknown experiment 'no-such-experiment'"),
    (["run", "Depth", "--quick"], "unknown experiment 'Depth'"),
    (["run", "depth", "--seeds", "0"], "--seeds: expected a positive integer, got 0"),
    (["run", "depth", "--seeds", "-3"], "--seeds: expected a positive integer, got -3"),
    (["run", "depth", "--seeds", "two"], "--seeds: expected a positive integer, got 'two'"),
    (["run", "depth", "--seeds", "1.5"], "--seeds: expected a positive integer, got '1.5'"),
    (["run", "depth", "--seed", "-1"], "--seed: expected an integer from 0 to 4294967295, got -1"),
    (
        ["run", "depth", "--seed", "abc"],
        "--seed: expected an integer from 0 to 4294967295, got 'abc'",
    ),
    (["run", "depth", "--seed"], "--seed: expected one argument"),
    (["run", "depth", "--threads", "0"], "--threads: expected an integer from 1 to 256, got 0"),
    (["run", "depth", "--device", "tpu", "--quick"], "unknown device 'tpu'"),
    (["run", "depth", "--device", "", "--quick"], "unknown device ''"),
    (["run", "depth", "--set", "widht=3", "--quick"], "has no setting 'widht'"),
    (["run", "depth", "--set", "noequals", "--quick"], "expected KEY=VALUE, got 'noequals'"),
    (["run", "depth", "--set", "=3", "--quick"], "expected KEY=VALUE, got '=3'"),
    (["run", "depth", "--quick", "--data-dir", "{missing}"], "is not a folder"),
    (["run", "depth", "--quick", "--data-dir", "{file}"], "is not a folder"),
    (["run", "depth", "--quick", "--out", "{file}"], "is not a folder"),
    (["run", "depth", "--quick", "--out", "{file}/sub"], "is not a folder"),
    (["run", "depth", "--quick", "--bogus"], "unrecognized arguments: --bogus"),
    (["run", "depth", "extra", "--quick"], "unrecognized arguments: extra"),
    (["list", "--quick"], "unrecognized arguments: --quick"),
    (["list", "depth"], "unrecognized arguments: depth"),
    (["demo", "--epochs", "0"], "--epochs: expected a positive integer, got 0"),
    (["demo", "--epochs", "ten"], "--epochs: expected a positive integer, got 'ten'"),
    (["demo", "--seed", "-2"], "--seed: expected an integer from 0 to 4294967295, got -2"),
    (["--verison"], "unrecognized arguments: --verison"),
    # Typed settings: every bad value is refused before anything runs, naming the setting.
    (
        ["run", "bias-correction", "--set", "steps=abc"],
        "bias-correction: setting 'steps': expected an integer from 1 to 1000000, got 'abc'",
    ),
    (
        ["run", "bias-correction", "--set", "steps=-5"],
        "setting 'steps': expected an integer from 1 to 1000000, got -5",
    ),
    (
        ["run", "bias-correction", "--set", "steps=2.5"],
        "setting 'steps': expected an integer from 1 to 1000000, got 2.5",
    ),
    (["run", "depth", "--set", "lr="], "setting 'lr': expected a finite number in (0, 10000]"),
    (["run", "depth", "--set", "lr=NaN"], "setting 'lr': expected a finite number"),
    (["run", "depth", "--set", "lr=1e999"], "setting 'lr': expected a finite number"),
    (["run", "depth", "--set", "lr=-0.1"], "setting 'lr': expected a finite number"),
    (["run", "depth", "--set", "lr=true"], "setting 'lr': expected a finite number"),
    (["run", "bias-correction", "--set", "beta2s=[]"], "setting 'beta2s': expected a list of 1"),
    (
        ["run", "bias-correction", "--set", "beta2s=[0.9,1.0]"],
        "setting 'beta2s[1]': expected a finite number in [0, 1), got 1.0",
    ),
    (
        ["run", "bias-correction", "--set", "dim=100000000000"],
        "setting 'dim': expected an integer from 1 to 10000000, got 100000000000",
    ),
    (["run", "depth", "--seed", "99999999999999999999"], "--seed: expected an integer from 0"),
    (["run", "depth", "--seed", "4294967295", "--seeds", "2"], "passes the largest seed"),
    (["run", "depth", "--seeds", "100000"], "--seeds must be an integer from 1 to 1000"),
    (["run", "depth", "--threads", "100000"], "--threads: expected an integer from 1 to 256"),
    (["run", "depth", "--set", "optimizer=Adamm"], "setting 'optimizer': expected one of SGD,"),
    (["run", "depth", "--set", 'activations=["relu","relu"]'], "is listed twice"),
    (["run", "depth", "--set", "width=0"], "setting 'width': expected an integer from 1 to 4096"),
    (
        ["run", "optimizers", "--set", 'grids={"SGD":[0.1]}'],
        "optimizers: setting 'grids': no learning-rate grid for Momentum,",
    ),
    (["run", "optimizers", "--set", 'grids={"SGD":[]}'], "setting 'grids.SGD': expected a list"),
    (
        ["run", "generalization", "--set", 'tricks={"l2":{"l2":0.1}}'],
        "setting 'tricks': must include 'plain'",
    ),
    (
        ["run", "generalization", "--set", 'tricks={"plain":{},"x":{"l3":1}}'],
        "setting 'tricks.x': expected a mapping with optionally early_stopping",
    ),
    (["run", "amsgrad", "--set", "variants=[{}]"], "setting 'variants[0]': expected a mapping"),
    (["run", "depth", "--quick", "--quick-ish"], "unrecognized arguments: --quick-ish"),
]


@pytest.mark.parametrize(
    ("argv", "message"), BAD_INVOCATIONS, ids=[" ".join(a) or "empty" for a, _ in BAD_INVOCATIONS]
)
def test_bad_invocation_is_one_line_exit_2_and_writes_nothing(
    argv: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    afile = tmp_path / "afile.txt"
    afile.write_text("x")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = [
        a.replace("{missing}", str(tmp_path / "missing")).replace("{file}", str(afile))
        for a in argv
    ]
    status = main(argv)
    captured = capsys.readouterr()
    assert status == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("dltricks: error: ")
    assert message in lines[0]
    assert "Traceback" not in captured.err
    assert captured.out == ""
    assert list(work.iterdir()) == []


def test_unwritable_out_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    real_access = os.access
    # CI runs as root, which permission bits do not bind: report the folder as read-only.
    monkeypatch.setattr(
        os, "access", lambda path, mode: False if Path(path) == locked else real_access(path, mode)
    )
    assert main(["run", "depth", "--quick", "--out", str(locked / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"dltricks: error: --out {locked / 'runs'}: {locked} is not writable"
    assert list(locked.iterdir()) == []


def test_console_script_reports_errors_without_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dltricks.cli", "run", "nope"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("dltricks: error: unknown experiment 'nope'")
    assert "Traceback" not in result.stderr


def test_version_and_list(capsys: pytest.CaptureFixture[str]) -> None:
    from dltricks import __version__

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"dltricks {__version__}"
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "depth" in listing
    assert "surfaces" in listing
