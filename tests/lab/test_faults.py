"""Faults during a lab run: SIGKILL and Ctrl-C leave a state that resumes to identical results."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SETTINGS = [
    "--set", "depths=[1,2,3]",
    "--set", 'activations=["relu","tanh"]',
    "--set", "epochs=4",
]  # fmt: skip
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _command(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "dltricks.cli", "run", "depth", "--quick", "--seeds", "2",
        "--quiet", "--out", str(out), *SETTINGS, *extra,
    ]  # fmt: skip


def _run(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _command(out, *extra), capture_output=True, text=True, env=ENV, timeout=300
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    out = tmp_path_factory.mktemp("uninterrupted")
    result = _run(out)
    assert result.returncode == 0, result.stderr
    return (out / "depth" / "results.json").read_bytes()


def _start_and_wait_for_units(out: Path, minimum: int) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        _command(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
    )
    units = out / "depth" / "units"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if units.is_dir() and len(list(units.glob("*.json"))) >= minimum:
            break
        time.sleep(0.05)
    return process


def test_sigkill_at_a_random_moment_then_resume_gives_identical_results(
    tmp_path: Path, uninterrupted: bytes
) -> None:
    rng = random.Random()
    wait_for = rng.randint(1, 10)
    delay = rng.uniform(0.0, 0.5)
    process = _start_and_wait_for_units(tmp_path, wait_for)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    note = f"killed after {wait_for} units + {delay:.2f} s"
    resumed = _run(tmp_path, "--resume")
    assert resumed.returncode == 0, f"{note}: {resumed.stderr}"
    assert (tmp_path / "depth" / "results.json").read_bytes() == uninterrupted, note


def test_ctrl_c_stops_cleanly_and_resumes(tmp_path: Path, uninterrupted: bytes) -> None:
    process = _start_and_wait_for_units(tmp_path, 3)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    if process.returncode == 0:
        pytest.skip("the run finished before the interrupt arrived")
    assert process.returncode == 130
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("dltricks: interrupted")
    assert not (tmp_path / "depth" / "results.json").exists()
    resumed = _run(tmp_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "depth" / "results.json").read_bytes() == uninterrupted
