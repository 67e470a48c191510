"""Joining a Ray cluster is bounded: an address that cannot be joined fails in time, in one line.

Only loopback addresses are used, and small bounds keep the tests short.
"""

from __future__ import annotations

import socket
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from dltricks.cli import main
from dltricks.sweep.executors import DEFAULT_RAY_TIMEOUT, ExecutorError, resolve_ray_timeout
from tests.sweep.helpers import tiny_grid_args


def _sweep(out: Path, *extra: str) -> list[str]:
    return ["sweep", *tiny_grid_args("0.001"), "--executor", "ray", "--out", str(out), *extra]


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_the_default_bound_is_at_most_30_s_and_the_environment_changes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DLTRICKS_RAY_TIMEOUT", raising=False)
    assert resolve_ray_timeout() == DEFAULT_RAY_TIMEOUT <= 30
    monkeypatch.setenv("DLTRICKS_RAY_TIMEOUT", "7.5")
    assert resolve_ray_timeout() == 7.5
    assert resolve_ray_timeout(2) == 2, "an explicit bound wins over the environment"
    for bad in ("abc", "0", "-1", "inf", "nan"):
        monkeypatch.setenv("DLTRICKS_RAY_TIMEOUT", bad)
        with pytest.raises(ExecutorError, match=r"DLTRICKS_RAY_TIMEOUT|positive number"):
            resolve_ray_timeout()


def test_an_unreachable_address_fails_within_the_bound(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("ray")
    bound = 1.5
    started = time.monotonic()
    status = main(_sweep(tmp_path, "--ray-address", "127.0.0.1:1", "--ray-timeout", str(bound)))
    elapsed = time.monotonic() - started
    assert status == 2
    line = _one_line(capsys)
    assert line.startswith(
        "dltricks: error: cannot join the Ray cluster at 127.0.0.1:1: no connection within 1.5 s"
    )
    assert "--ray-timeout" in line
    # It tried for the whole bound (a cluster may be starting), and gave up soon after.
    assert bound <= elapsed < bound + 10


@pytest.fixture
def silent_port() -> Iterator[str]:
    """A loopback port that accepts connections and never says anything."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()


def test_a_port_that_answers_without_a_cluster_fails_within_the_bound(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    silent_port: str,
) -> None:
    # A stand-in for Ray whose init waits as Ray's does for a cluster that never answers.
    calls: list[str] = []

    def init(address: str, **options: object) -> None:
        calls.append(address)
        time.sleep(60)

    fake = types.SimpleNamespace(
        is_initialized=lambda: False, init=init, shutdown=lambda: calls.append("shutdown")
    )
    monkeypatch.setitem(sys.modules, "ray", fake)
    started = time.monotonic()
    status = main(_sweep(tmp_path, "--ray-address", silent_port, "--ray-timeout", "1"))
    elapsed = time.monotonic() - started
    assert status == 2
    assert calls == [silent_port, "shutdown"], "Ray was asked to join, then cleaned up"
    assert _one_line(capsys) == (
        f"dltricks: error: cannot join the Ray cluster at {silent_port}: something answers "
        "there but no Ray cluster joined within 1 s (set the bound with --ray-timeout or "
        "DLTRICKS_RAY_TIMEOUT)"
    )
    assert elapsed < 10


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--ray-timeout", "5"], "--ray-timeout bounds joining a cluster: it needs --ray-address"),
        (["--ray-address", "h:1", "--ray-timeout", "0"], "positive number of seconds, got 0.0"),
        (["--ray-address", "h:1", "--ray-timeout", "x"], "--ray-timeout: invalid float value"),
    ],
    ids=["without-address", "zero", "not-a-number"],
)
def test_a_bad_ray_timeout_is_one_line_exit_2(
    extra: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "ray", types.SimpleNamespace(is_initialized=lambda: False))
    assert main(_sweep(tmp_path, *extra)) == 2
    assert message in _one_line(capsys)
    assert list(tmp_path.iterdir()) == [], "nothing written"


def test_a_name_resolver_that_does_not_answer_is_bounded_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from dltricks.sweep import executors

    release = threading.Event()

    def stuck(*args: object, **kwargs: object) -> list[object]:
        release.wait(60)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setitem(sys.modules, "ray", types.SimpleNamespace(is_initialized=lambda: False))
    monkeypatch.setattr(executors.socket, "getaddrinfo", stuck)
    argv = _sweep(tmp_path, "--ray-address", "cluster.example:6379", "--ray-timeout", "1")
    started = time.monotonic()
    try:
        status = main(argv)
    finally:
        release.set()
    assert status == 2
    assert time.monotonic() - started < 10
    assert _one_line(capsys) == (
        "dltricks: error: cannot join the Ray cluster at cluster.example:6379: no answer from the "
        "name resolver for 'cluster.example' within 1 s (set the bound with --ray-timeout or "
        "DLTRICKS_RAY_TIMEOUT)"
    )
