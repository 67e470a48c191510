"""File system failures at the command line: one line naming the file and the cause, exit 1.

A full disk, a folder that refuses writes (permissions, an immutable or read-only folder) or a
virtual file system must not end in a traceback, and what finished before the failure stays.
Failures are injected where bytes reach the disk (the atomic writer's temporary file), so
every layer above (results, units, run files) goes through its real path.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dltricks.cli import main
from dltricks.data import safe_io
from dltricks.lab.results import read_json

# Fast settings of the bias-correction experiment: a run takes a fraction of a second.
TINY = [
    "run", "bias-correction", "--quick", "--quiet",
    "--set", "steps=5", "--set", "dim=4", "--set", 'problems=["noisy"]',
    "--set", "beta2s=[0.99,0.999]",
]  # fmt: skip


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("dltricks: error: "), err
    return lines[0]


def _fail_writes_of(monkeypatch: pytest.MonkeyPatch, marker: bytes, error: OSError) -> list[bytes]:
    """Make the atomic writer's ``write`` raise ``error`` for payloads containing ``marker``
    (as a full disk does: the file opened, its bytes did not fit). Returns what was refused."""
    real_fdopen = os.fdopen
    refused: list[bytes] = []

    class Refusing:
        def __init__(self, handle: Any) -> None:
            self.handle = handle

        def __enter__(self) -> Refusing:
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()

        def write(self, data: bytes) -> int:
            if marker in data:
                refused.append(data)
                raise error
            return int(self.handle.write(data))

        def __getattr__(self, name: str) -> Any:
            return getattr(self.handle, name)

    def fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
        return Refusing(real_fdopen(fd, *args, **kwargs))

    monkeypatch.setattr(safe_io.os, "fdopen", fdopen)
    return refused


ERRORS: list[tuple[int, str, str]] = [
    (errno.ENOSPC, "No space left on device", "free some space"),
    (errno.EPERM, "Operation not permitted", "choose a folder you can write to"),  # immutable
    (errno.EACCES, "Permission denied", "choose a folder you can write to"),
    (errno.EROFS, "Read-only file system", "choose a folder you can write to"),
]


@pytest.mark.parametrize(("code", "cause", "advice"), ERRORS, ids=[e[1] for e in ERRORS])
def test_a_failed_results_write_is_one_line_exit_1_and_keeps_the_finished_units(
    code: int,
    cause: str,
    advice: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The write of results.json fails (only it holds the experiment's "claim"); the error is
    # path-less, as write(2) on a full disk is.
    refused = _fail_writes_of(monkeypatch, b'"claim"', OSError(code, os.strerror(code)))
    assert main([*TINY, "--out", str(tmp_path)]) == 1
    assert refused, "the injected failure was reached"
    line = _one_error_line(capsys)
    folder = tmp_path / "bias-correction"
    assert f"{folder / 'results.json'}: {cause}" in line
    assert advice in line
    units = sorted((folder / "units").glob("*.json"))
    assert len(units) >= 2, "every finished unit is kept"
    for unit in units:
        read_json(unit)  # sound, checksum verified
    assert not (folder / "results.json").exists()
    assert not list(folder.glob(".*.tmp")), "no temporary file is left"
    # Once the disk has room again the run continues from its units.
    monkeypatch.undo()
    inodes = {u.name: u.stat().st_ino for u in units}
    assert main([*TINY, "--out", str(tmp_path), "--resume"]) == 0
    assert {u.name: u.stat().st_ino for u in (folder / "units").glob("*.json")} == inodes
    assert read_json(folder / "results.json")["experiment"] == "bias-correction"


def test_an_error_that_names_no_file_names_the_output_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    # A failure outside the atomic writer (here: creating the run's lock) has no file name.
    import dltricks.lab.runner as runner

    monkeypatch.setattr(runner.fcntl, "flock", refuse)
    assert main([*TINY, "--out", str(tmp_path)]) == 1
    assert _one_error_line(capsys) == (
        f"dltricks: error: writing under {tmp_path}: Input/output error"
    )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's /proc and /sys")
@pytest.mark.parametrize("out", ["/proc/dltricks-test", "/sys/kernel/dltricks-test"])
def test_an_out_folder_in_a_virtual_file_system_is_one_line(
    out: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # As root the folder passes the up-front check and fails when made (exit 1); otherwise the
    # check refuses it (exit 2). Either way: one line naming it, nothing written.
    assert main([*TINY, "--out", out]) in (1, 2)
    line = _one_error_line(capsys)
    assert out in line
    assert not Path(out).exists()


def test_report_names_runs_not_out_for_a_bad_runs_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "passwd"
    afile.write_text("x")
    argv = ["report", "--quick", "--runs", str(afile), "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    assert _one_error_line(capsys) == f"dltricks: error: --runs {afile}: {afile} is not a folder"


TOO_MANY_WORKERS = [
    ["report", "--quick", "--workers", "100000"],
    ["sweep", "bias-correction", "--grid", "lr=0.1", "--workers", "100000"],
    ["sweep", "bias-correction", "--grid", "lr=0.1", "--executor", "ray", "--workers", "100000"],
]


@pytest.mark.parametrize("argv", TOO_MANY_WORKERS, ids=["report", "sweep-local", "sweep-ray"])
def test_workers_have_an_upper_bound(
    argv: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    if "ray" in argv:
        pytest.importorskip("ray")
    assert main(argv) == 2
    line = _one_error_line(capsys)
    assert "--workers 100000: at most" in line
    assert list(tmp_path.iterdir()) == [], "nothing written"


def _interrupting(exception: type[BaseException]) -> Callable[..., Any]:
    def interrupt(*args: Any, **kwargs: Any) -> Any:
        raise exception()

    return interrupt


@pytest.mark.parametrize(
    ("argv", "patch", "advice"),
    [
        (TINY, "dltricks.lab.runner.run_experiment", "continue with the same command and --resume"),
        (
            ["report", "--quick", "--quiet", "--only", "bias-correction"],
            "dltricks.lab.report.build_report",
            "run the same command to continue (finished experiments and units are kept)",
        ),
    ],
    ids=["run", "report"],
)
def test_ctrl_c_and_sigterm_advise_what_the_command_accepts(
    argv: list[str],
    patch: str,
    advice: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dltricks.cli import Terminated, build_parser

    monkeypatch.chdir(tmp_path)
    stops = [(KeyboardInterrupt, 130, "interrupted"), (Terminated, 143, "terminated")]
    for exception, status, word in stops:
        monkeypatch.setattr(patch, _interrupting(exception))
        assert main(argv) == status
        err = capsys.readouterr().err
        assert err.strip().splitlines() == [f"dltricks: {word}; {advice}"]
    # The advice is accepted by the command it names.
    accepted = build_parser().parse_args([*argv, *(["--resume"] if "--resume" in advice else [])])
    assert accepted.command == argv[0]
