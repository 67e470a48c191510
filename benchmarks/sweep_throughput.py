"""Sweep throughput and per-run scheduling overhead: sequential vs local process pool vs Ray.

Two measurements per executor, on the same machine in one process:

1. A real sweep: ``bias-correction --quick`` over lr x dim x seeds (24 runs by default), run
   twice on the same executor into fresh folders: *cold* (starting the executor and warming its
   workers: imports, first matplotlib figure) and *warm* (steady state).
2. A no-op sweep: the same driver (expansion, store transactions, dispatch, result collection)
   with a worker function that returns at once, after a small warm-up. Its wall time per run is
   the scheduling overhead a run pays on top of its own compute: the driver's serial cost per
   run, or the executor's dispatch cost divided among the workers, whichever is larger.

Writes ``benchmarks/results/sweep_throughput.md``. Shared machines are noisy: compare rows of
one run, and read the load average printed with them.

    .venv/bin/python benchmarks/sweep_throughput.py [--workers 2] [--seeds 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from dltricks.sweep import RunResult, RunTask, SweepSpec, expand, make_executor, run_sweep
from dltricks.sweep.executors import Executor

RESULTS = Path(__file__).parent / "results" / "sweep_throughput.md"


def _noop(task: RunTask) -> RunResult:
    """A run that does nothing: what is left is the cost of scheduling it."""
    now = time.time()
    return RunResult(task.run_id, True, {"summary": {}, "records": []}, None, now, now, 0.0, "")


def _grid(seeds: int) -> SweepSpec:
    # 3 x 2 grid points x seeds; each run ~0.4 s of CPU (50 Adam steps on 100-200 coordinates,
    # two figures).
    return SweepSpec(
        "bias-correction",
        {"lr": [1e-3, 3e-3, 1e-2], "dim": [100, 200]},
        seeds=seeds,
        quick=True,
    )


def _noop_grid(runs: int, offset: int) -> SweepSpec:
    # Distinct ids (one lr each); the runs never execute the experiment.
    return SweepSpec("bias-correction", {"lr": [offset + i for i in range(runs)]}, quick=True)


def _sweep(sweep: SweepSpec, out: Path, executor: Executor) -> tuple[float, float, list[float]]:
    outcome = run_sweep(sweep, out_root=out, executor=executor, retries=0)
    bad = [r for r in outcome.rows if r.status != "done"]
    if bad:
        raise RuntimeError(f"{len(bad)} runs failed; first error:\n{bad[0].error}")
    durations = [r.duration or 0.0 for r in outcome.rows]
    return outcome.seconds, outcome.startup_seconds, durations


def _measure(
    names: list[str], workers: int, seeds: int, rounds: int, noop_runs: int, root: Path
) -> list[dict[str, Any]]:
    """Cold sweeps in turn, then ``rounds`` of warm sweeps interleaved across executors (the
    fastest round counts: the least disturbed by other users), then the no-op sweeps."""
    sweep = _grid(seeds)
    runs = len(expand(sweep))
    size = {n: None if n == "sequential" else workers for n in names}
    executors = {n: make_executor(n, workers=size[n]) for n in names}
    rows = {n: {"executor": n, "runs": runs, "warm": float("inf")} for n in names}
    try:
        for name in names:
            print(f"{name}: cold sweep", file=sys.stderr, flush=True)
            cold, startup, _ = _sweep(sweep, root / name / "cold", executors[name])
            rows[name].update(cold=cold, startup=startup, workers=executors[name].workers)
        for i in range(rounds):
            for name in names:
                print(f"{name}: warm sweep {i + 1}/{rounds}", file=sys.stderr, flush=True)
                warm, _, durations = _sweep(sweep, root / name / f"warm{i}", executors[name])
                if warm < rows[name]["warm"]:
                    rows[name].update(warm=warm, run_seconds=statistics.mean(durations))
        for name in names:
            print(f"{name}: no-op sweep", file=sys.stderr, flush=True)
            # A Ray no-op executor joins the instance the first one started.
            with make_executor(name, workers=size[name], function=_noop) as noop:
                # Warm its workers (process start, imports), then time it.
                _sweep(_noop_grid(4 * noop.workers, 10_000), root / name / "noop-warmup", noop)
                seconds, _, _ = _sweep(_noop_grid(noop_runs, 0), root / name / "noop", noop)
            rows[name]["noop_ms"] = 1000 * seconds / noop_runs
    finally:
        for executor in executors.values():
            executor.close()
    return [rows[n] for n in names]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _table(rows: list[dict[str, Any]]) -> list[str]:
    base = next(r for r in rows if r["executor"] == "sequential")
    lines = [
        "| executor | workers | startup (s) | cold sweep (s) | warm sweep (s) | warm runs/s "
        "| warm speedup vs sequential | mean run (s, in worker) | overhead per run, no-op (ms) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['executor']} | {r['workers']} | {r['startup']:.2f} | {r['cold']:.1f} "
            f"| {r['warm']:.1f} | {r['runs'] / r['warm']:.2f} | {base['warm'] / r['warm']:.2f}x "
            f"| {r['run_seconds']:.2f} | {r['noop_ms']:.1f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=4, help="seeds per grid point (6 points)")
    parser.add_argument("--rounds", type=int, default=2, help="warm sweeps per executor")
    parser.add_argument("--noop-runs", type=int, default=200)
    parser.add_argument("--executors", default="sequential,local,ray")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.environ.setdefault("MPLBACKEND", "Agg")
    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="sweep-bench-"))
    try:
        rows = _measure(
            args.executors.split(","), args.workers, args.seeds, args.rounds, args.noop_runs, root
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    load_after = os.getloadavg()
    try:
        import ray

        ray_version = ray.__version__
    except ImportError:
        ray_version = "not installed"
    command = "python benchmarks/sweep_throughput.py " + " ".join(sys.argv[1:])
    text = [
        "# Sweep throughput: sequential vs local process pool vs Ray",
        "",
        f"Machine: {_cpu_model()}, {os.cpu_count()} cores ({socket.gethostname()}), "
        f"{platform.platform()}; Python {platform.python_version()}, torch {torch.__version__}, "
        f"ray {ray_version}.",
        f"Load average (1 min) before/after: {load_before[0]:.1f} / {load_after[0]:.1f} "
        "(a shared machine: wall times include other users' load).",
        f"Command: `{command.strip()}`",
        "",
        f"Sweep: `bias-correction --quick`, grid lr x dim = 3 x 2, {args.seeds} seeds: "
        f"{rows[0]['runs']} runs, one torch thread each. *Cold*: a fresh executor (Ray instance "
        "start, worker processes, imports) and a fresh store; *warm*: the same executor again "
        f"into a fresh store, fastest of {args.rounds} rounds interleaved across executors. "
        "*Overhead per run*: wall time per run of a "
        f"{args.noop_runs}-run sweep whose runs return at once (store transactions, dispatch, "
        "result collection), after a warm-up.",
        "",
        *_table(rows),
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
