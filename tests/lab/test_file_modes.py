"""Every file the lab writes gets the user's umask, as a plain ``open`` would give it.

Atomic writes go through ``mkstemp``, which makes ``0600`` files; a shared report, run folder or
cache must stay readable by a colleague or a web server. Two umasks are checked so that a fixed
``chmod 0644`` could not pass.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from dltricks.cli import main
from dltricks.data.mnist1d import mnist1d_arrays
from dltricks.data.safe_io import atomic_write_bytes, new_file_mode, write_checked
from dltricks.lab.figures import save_figure
from dltricks.train.checkpoint import save_checkpoint

UMASKS = [0o022, 0o027]


@pytest.fixture(params=UMASKS, ids=lambda m: f"umask{m:03o}")
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): _mode(p) for p in sorted(root.rglob("*")) if p.is_file()}


def test_new_file_mode_is_666_less_the_umask(umask: int) -> None:
    assert new_file_mode() == 0o666 & ~umask


def test_atomic_and_checked_writes_follow_the_umask(tmp_path: Path, umask: int) -> None:
    expected = 0o666 & ~umask
    atomic_write_bytes(tmp_path / "plain.bin", b"x")
    write_checked(tmp_path / "checked.bin", b"y", kind="test")
    # Replacing a file gives the new one the umask's mode too.
    atomic_write_bytes(tmp_path / "plain.bin", b"z")
    # A reference file made by open() itself: what the user's tools would create.
    (tmp_path / "reference.txt").write_text("r")
    assert _modes(tmp_path) == {
        "checked.bin": expected,
        "plain.bin": expected,
        "reference.txt": expected,
    }


def test_checkpoint_mnist1d_cache_and_figure_follow_the_umask(tmp_path: Path, umask: int) -> None:
    from matplotlib.figure import Figure

    expected = 0o666 & ~umask
    save_checkpoint(tmp_path / "model.ckpt", {"weights": torch.zeros(3)})
    mnist1d_arrays(num_samples=20, cache_dir=tmp_path / "cache")
    fig = Figure()
    fig.add_subplot().plot([0, 1], [1, 0])
    save_figure(fig, tmp_path / "figure.png")
    modes = _modes(tmp_path)
    assert set(modes) == {"model.ckpt", "figure.png"} | {
        f"cache/{p.name}" for p in (tmp_path / "cache").iterdir()
    }
    assert len(modes) == 3, modes
    assert set(modes.values()) == {expected}, modes
    assert (tmp_path / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_run_and_its_report_follow_the_umask(
    tmp_path: Path, umask: int, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = 0o666 & ~umask
    runs, report = tmp_path / "runs", tmp_path / "report"
    argv = ["--quick", "--quiet", "--seed", "0"]
    assert main(["run", "bias-correction", *argv, "--out", str(runs)]) == 0
    # The report reuses that run (same configuration) and writes the page and figure copies.
    assert main(["report", "--only", "bias-correction", *argv, "--runs", str(runs), "--out",
                 str(report)]) == 0  # fmt: skip
    assert "reused 1" in capsys.readouterr().out
    modes = {**_modes(runs), **{f"report/{k}": v for k, v in _modes(report).items()}}
    names = set(modes)
    for written in (
        "bias-correction/results.json",
        "bias-correction/run.json",
        "bias-correction/timing.json",
        "report/index.html",
    ):
        assert written in names
    assert any(n.startswith("bias-correction/units/") for n in names)
    assert sum(n.endswith(".png") for n in names) >= 4, "figures and their copies"
    wrong = {name: f"{mode:o}" for name, mode in modes.items() if mode != expected}
    assert not wrong, f"expected {expected:o}"
    assert not any(n.endswith(".tmp") for n in names), "no temporary file left"
