"""Start-up time of ``dltricks serve`` and the response time of a 500-step surface run.

Starts ``python -m dltricks.cli serve`` on a free port and measures, from the process's
start: the first ``GET /api/health`` answered (the server is up); the page and what it reads
when it loads (``/``, its scripts, ``/api/surfaces``, ``/api/optimizers``,
``/api/train/options``, ``/api/report``: the controls can be drawn); the first contour grid
answered (torch and the surfaces imported, in the background); and the first 500-step surface
run answered (the optimizers warmed up). Then times ``POST /api/surfaces/run`` with 500 steps
for SGD, Momentum and Adam on the Rosenbrock surface, ``--rounds`` times each, interleaved,
and reports the median and the largest per optimizer (client-side wall time over loopback
HTTP), and the page's default comparison (the three, one after another, as the page sends
them). The same runs are then timed in this process without HTTP (``run_surface``), in wall
time and in this thread's CPU time (which leaves out the time other processes hold the core,
the main noise on a shared machine), next to the surface runner alone with an optimizer that
does nothing (a ``torch.optim.Optimizer`` whose step returns): the runner's own cost.
``--profile`` prints where an Adam run's time goes (cProfile, by own time).

Usage: python benchmarks/serve_latency.py [--rounds 10] [--output PATH] [--profile]
Writes benchmarks/results/serve_latency.md (or ``--output``). Machines here are shared: the
load average at the start is printed with the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

OPTIMIZERS = ("SGD", "Momentum", "Adam")
#: Where the time goes (from ``--profile`` and the table above), written under the numbers.
NOTES = (
    "Where a run's time goes. Before: about 0.5 ms per step, half of it the surface's loss and",
    "gradient as a dozen tensor operations each on 0-dim slices (3-5 us of dispatch apiece on",
    "this machine), the rest the optimizer's eager step and the runner's per-step numpy and",
    "norm calls. Now the runner reads each point once (`tolist`) and computes the loss and",
    "gradient on Python floats (`Surface.value_and_grad`, bit for bit `fn` and `grad`), so the",
    "runner alone is ~20-30 us per step and what remains is the optimizer's own eager step on a",
    "2-vector: ~12 tensor operations and the adapter's Python, 70-200 us by optimizer and load.",
    "Surface runs build their optimizers with `fast=False` (a 2-vector stays eager anyway).",
    "Over HTTP the median sits 50-60 ms above the in-process wall time at load 4: the handler",
    "adds JSON encoding (a few ms); we attribute the rest to waiting for a core at each hand-over",
    "(client, event loop, worker thread and back) on an oversubscribed machine.",
    "Start-up: the server answers before torch is imported; the page's",
    "catalogue is shipped (`serve/catalogue.json`); the first grid waits for torch and",
    "`dltricks.surfaces` (matplotlib), the first run also for `torch._dynamo`, which torch.optim",
    "imports when the first optimizer of a process is built (3-4 s here, unavoidable).",
)
#: What the page reads when it loads, besides the contour grid.
PAGE = (
    "/",
    "/static/app.js",
    "/static/chart.umd.min.js",
    "/api/surfaces",
    "/api/optimizers",
    "/api/train/options",
    "/api/report",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            body: bytes = response.read()
            return body
    except (urllib.error.URLError, ConnectionError):
        return None


def _post(url: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        data: dict[str, object] = json.loads(response.read())
        return data


def _wait_for(url: str, started: float, limit: float = 120.0) -> float:
    while time.perf_counter() - started < limit:
        if _get(url) is not None:
            return time.perf_counter() - started
        time.sleep(0.02)
    raise TimeoutError(f"{url} did not answer within {limit} s")


def _profile() -> None:
    import cProfile
    import pstats

    from dltricks.serve.surfaces import run_surface

    body = {"surface": "rosenbrock", "optimizer": "Adam", "lr": 1e-3, "steps": 500}
    run_surface(body)
    profile = cProfile.Profile()
    profile.enable()
    run_surface(body)
    profile.disable()
    pstats.Stats(profile).sort_stats("tottime").print_stats(20)


def _in_process(rounds: int) -> dict[str, tuple[float, float]]:
    import torch

    from dltricks.serve.surfaces import run_surface
    from dltricks.surfaces import get_surface, run_trajectory

    surface = get_surface("rosenbrock")

    class Idle(torch.optim.Optimizer):
        def __init__(self, params: list[torch.nn.Parameter]) -> None:
            super().__init__(params, {})

        def step(self, closure: object = None) -> None:  # type: ignore[override]
            return None

    def idle(params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        return Idle(params)

    cases = {
        name: (
            lambda n=name: run_surface(
                {"surface": "rosenbrock", "optimizer": n, "lr": 1e-3, "steps": 500}
            )
        )
        for name in OPTIMIZERS
    }
    cases["runner alone (no-op optimizer)"] = lambda: run_trajectory(surface, idle, None, 500)
    for case in cases.values():
        case()  # the first optimizer of a process imports torch's compiler
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, case in cases.items():
            w0, c0 = time.perf_counter(), time.thread_time()
            case()
            times[name].append((time.perf_counter() - w0, time.thread_time() - c0))
    return {
        name: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
        for name, v in times.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--profile", action="store_true", help="print a profile of a run")
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).parent / "results" / "serve_latency.md"
    )
    args = parser.parse_args()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    load = os.getloadavg()[0]
    started = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "dltricks.cli", "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    try:
        up = _wait_for(f"{base}/api/health", started)
        for path in PAGE:
            assert _get(base + path) is not None, path
        page = time.perf_counter() - started
        assert _get(f"{base}/api/surfaces/rosenbrock/grid?n=120") is not None
        grid = time.perf_counter() - started
        body = {"surface": "rosenbrock", "optimizer": "SGD", "lr": 1e-3, "steps": 500}
        _post(f"{base}/api/surfaces/run", body)
        first_run = time.perf_counter() - started
        times: dict[str, list[float]] = {name: [] for name in OPTIMIZERS}
        comparison: list[float] = []
        for _ in range(args.rounds):
            t_all = time.perf_counter()
            for name in OPTIMIZERS:
                body = {"surface": "rosenbrock", "optimizer": name, "lr": 1e-3, "steps": 500}
                t0 = time.perf_counter()
                result = _post(f"{base}/api/surfaces/run", body)
                times[name].append(time.perf_counter() - t0)
                assert len(result["losses"]) == 501, result  # type: ignore[arg-type]
            comparison.append(time.perf_counter() - t_all)
    finally:
        server.terminate()
        server.wait(30)
    local = _in_process(args.rounds)
    lines = [
        "# `dltricks serve`: start-up and surface-run latency",
        "",
        f"Command: `python benchmarks/serve_latency.py --rounds {args.rounds}`; "
        f"load average at start {load:.2f}, {os.cpu_count()} CPUs.",
        "",
        f"- server answers `/api/health`: {up:.2f} s after the process starts",
        f"- the page and what it reads to draw its controls answered: {page:.2f} s",
        f"- the first contour grid answered (torch and the surfaces imported): {grid:.2f} s",
        f"- the first 500-step surface run answered (optimizers warmed up): {first_run:.2f} s",
        "",
        "| optimizer | 500-step run, median | max |",
        "|---|---|---|",
    ]
    for name, values in times.items():
        lines.append(
            f"| {name} | {1000 * statistics.median(values):.0f} ms | {1000 * max(values):.0f} ms |"
        )
    lines.append(
        f"| the three, one after another (the page's comparison) | "
        f"{1000 * statistics.median(comparison):.0f} ms | {1000 * max(comparison):.0f} ms |"
    )
    lines += [
        "",
        "In this process, without HTTP (median over rounds):",
        "",
        "| 500 steps of | wall | thread CPU |",
        "|---|---|---|",
    ]
    for name, (wall, cpu) in local.items():
        lines.append(f"| {name} | {1000 * wall:.0f} ms | {1000 * cpu:.0f} ms |")
    lines += ["", *NOTES]
    text = "\n".join(lines) + "\n"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text)
    if args.profile:
        _profile()


if __name__ == "__main__":
    main()
