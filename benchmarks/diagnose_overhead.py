"""Overhead of the dltricks.diagnose monitors on one training step of the lab's MLP.

MLP(64 -> 10, width 256, depth 10), batch 128, Adam, cross-entropy: the time of
zero_grad + forward + backward + step, with each set of monitors attached, against the
same step with nothing attached. Configurations are interleaved round by round (machines
here are shared and noisy) and the overhead is the median over rounds of the per-round
ratio attached / detached, both in wall-clock time and in the CPU time of the training
thread (with ``--threads 1`` all of the step runs on that thread, and its CPU time leaves
out the time other processes hold the core, the main noise on a shared machine). Minor page
faults per step are reported too: small tensors kept alive across a step were found to make
glibc return and re-fault heap pages, a cost that shows in no profile of the hooks
themselves. The garbage collector runs (untimed) after each configuration's turn, so that the
collections set off by reading the records do not land in another configuration's timing.
"detached after use" attaches and detaches everything first: it checks that detaching leaves
nothing behind.

Usage: python benchmarks/diagnose_overhead.py [--rounds 30] [--steps 10] [--threads N]
                                              [--output PATH]
On a small shared machine, ``--threads 1`` avoids OpenMP threads spinning against other
processes, which otherwise makes step times swing by 10x or more.
Writes benchmarks/results/diagnose_overhead.md (or ``--output``).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import resource
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812 (torch convention)

from dltricks.diagnose import ActivationStats, Diagnostics, GradientNorms, UpdateRatios
from dltricks.nn import MLP

RESULTS = Path(__file__).resolve().parent / "results" / "diagnose_overhead.md"


def _configs(model: MLP, opt: torch.optim.Optimizer) -> dict[str, Callable[[], Diagnostics | None]]:
    # every= spelled out in each row, so that the rows mean the same on any version of the
    # code (the before/after comparisons run this script on older commits too); the defaults
    # are checked against the labels in main().
    return {
        "detached": lambda: None,
        "detached after use": lambda: None,
        "GradientNorms, every=10 (default)": lambda: Diagnostics(GradientNorms(model, every=10)),
        "GradientNorms, every=1": lambda: Diagnostics(GradientNorms(model, every=1)),
        "ActivationStats, every=10 (default)": lambda: Diagnostics(
            ActivationStats(model, every=10)
        ),
        "ActivationStats, every=1": lambda: Diagnostics(ActivationStats(model, every=1)),
        "UpdateRatios, every=10 (default)": lambda: Diagnostics(UpdateRatios(model, opt, every=10)),
        "UpdateRatios, every=1": lambda: Diagnostics(UpdateRatios(model, opt, every=1)),
        "for_model(model), every=10 (default)": lambda: Diagnostics.for_model(model, every=10),
        "for_model(model), every=1": lambda: Diagnostics.for_model(model, every=1),
        "for_model(model, opt), every=10 (default)": lambda: Diagnostics.for_model(
            model, opt, every=10, update_every=10
        ),
        "for_model(model, opt), every=1": lambda: Diagnostics.for_model(
            model, opt, every=1, update_every=1
        ),
    }


def _check_default_labels() -> None:
    """The rows labelled "(default)" use every=10: fail loudly if the defaults change."""
    model = MLP(4, 2, 8, 2, "relu")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    defaults = [m.every for m in Diagnostics.for_model(model, opt).monitors]
    defaults += [GradientNorms(model).every, ActivationStats(model).every]
    defaults.append(UpdateRatios(model, opt).every)
    if defaults != [10] * 6:
        raise SystemExit(f"the defaults are no longer every=10 ({defaults}): relabel the rows")


class Timings:
    """Per-configuration, per-round step times (wall and thread CPU) and page faults."""

    def __init__(self, names: list[str]) -> None:
        self.wall: dict[str, list[float]] = {name: [] for name in names}
        self.cpu: dict[str, list[float]] = {name: [] for name in names}
        self.faults: dict[str, list[float]] = {name: [] for name in names}


def measure(activation: str, rounds: int, steps: int) -> Timings:
    gen = torch.Generator().manual_seed(0)
    model = MLP(64, 10, 256, 10, activation, generator=gen)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(128, 64, generator=gen)
    y = torch.randint(0, 10, (128,), generator=gen)

    def step() -> None:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    # Each configuration's monitors are built once and attached for its turn in each round,
    # in a shuffled order: the order within a round and the allocation of new monitors
    # (UpdateRatios' weight snapshot) otherwise shift the heap and the timings.
    monitors = {name: build() for name, build in _configs(model, opt).items()}
    out = Timings(list(monitors))
    order = list(monitors)
    shuffle = random.Random(0).shuffle
    for _ in range(10):
        step()
    for _ in range(rounds):
        shuffle(order)
        for name in order:
            diag = monitors[name]
            if name == "detached after use":
                Diagnostics.for_model(model, opt).attach().detach()
            if diag is not None:
                diag.attach()
            for _ in range(2):
                step()
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            cpu = time.thread_time()
            start = time.perf_counter()
            for _ in range(steps):
                step()
            out.wall[name].append((time.perf_counter() - start) / steps)
            out.cpu[name].append((time.thread_time() - cpu) / steps)
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
            out.faults[name].append(faults / steps)
            if diag is not None:
                # Reading the records is part of the cost of using the monitors (untimed).
                for monitor in diag.monitors:
                    monitor.records()
                diag.detach()
            # The read builds thousands of dicts; the full garbage collections that this
            # sets off (about 150 ms each with torch loaded) would otherwise land in some
            # later configuration's timed steps, at random. Collect here, for every
            # configuration alike, so each timed window carries only the collections that
            # its own steps cause.
            gc.collect()
    return out


def _overhead(values: list[float], base: list[float]) -> float:
    return statistics.median(v / b for v, b in zip(values, base, strict=True)) - 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--activations", nargs="+", default=["relu", "sigmoid"])
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the table goes")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    _check_default_labels()

    lines = [
        "# Overhead of dltricks.diagnose on a training step",
        "",
        "MLP(64 -> 10, width 256, depth 10), batch 128, Adam; step = zero_grad + forward + "
        "backward + step. Overhead = median over rounds of (step time attached / step time "
        "detached) - 1, configurations interleaved in a shuffled order within each round; "
        "thread CPU time leaves out the time other processes hold the core.",
        "",
        f"- command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`",
        f"- machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} intra-op threads, Python {platform.python_version()}",
        f"- {args.rounds} rounds x {args.steps} timed steps per configuration; "
        f"load average (1 min) {os.getloadavg()[0]:.1f} at start, END_LOAD at the end",
        "",
        "| activation | monitors | median step, wall (ms) | overhead, wall | "
        "overhead, thread CPU time | minor page faults per step |",
        "|---|---|---|---|---|---|",
    ]
    for activation in args.activations:
        t = measure(activation, args.rounds, args.steps)
        for name in t.wall:
            if name == "detached":
                wall = cpu = "(baseline)"
            else:
                wall = f"{100 * _overhead(t.wall[name], t.wall['detached']):+.1f}%"
                cpu = f"{100 * _overhead(t.cpu[name], t.cpu['detached']):+.1f}%"
            lines.append(
                f"| {activation} | {name} | {1e3 * statistics.median(t.wall[name]):.2f} | "
                f"{wall} | {cpu} | {statistics.median(t.faults[name]):.0f} |"
            )
    lines = [line.replace("END_LOAD", f"{os.getloadavg()[0]:.1f}") for line in lines]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
