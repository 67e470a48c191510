"""Step time of the README's "Muon for the hidden matrices, AdamW for the rest" recipe.

One :class:`~dltricks.optim.ChainOptimizer` with ``partition(group_labels(groups), {"muon":
muon_update(), "adamw": adamw})`` against what a user would otherwise run: ``torch.optim.Muon``
on the hidden matrices beside ``torch.optim.AdamW`` (foreach, and fused) on the rest, stepped
one after the other. The parameters look like a small transformer's: ``--hidden`` 2-D hidden
matrices of ``--rows`` rows (Newton-Schulz in bfloat16 is slow on a CPU without bfloat16
matrix units, so few rows keep it from hiding everything else) and ``--rest`` parameters in
embeddings, norms and biases. dltricks runs with ``nonfinite="ignore"`` (torch's work, no
finite check), on its fast path (each label's chain in buckets of its own) and on its eager
path. Modes interleaved in a shuffled order each round; medians.

Usage: ``python benchmarks/partition_recipe.py [--rounds 7] [--out FILE]``
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import dltricks.optim as ours
from dltricks.optim import blocks as b
from optim_step import _interleaved_medians, _timed


def _parameters(hidden: int, rows: int, cols: int, rest: int) -> list[torch.nn.Parameter]:
    """``hidden`` matrices of ``rows x cols``, then ``rest`` elements in an embedding
    (a quarter), a head (a quarter) and 1-D norms and biases of ``cols`` (the rest)."""
    generator = torch.Generator().manual_seed(0)
    shapes: list[tuple[int, ...]] = [(rows, cols)] * hidden
    quarter = rest // 4 // cols * cols
    shapes += [(quarter // cols, cols), (quarter // cols, cols)]
    shapes += [(cols,)] * ((rest - 2 * quarter) // cols)
    params = []
    for shape in shapes:
        p = torch.nn.Parameter(torch.randn(shape, generator=generator))
        p.grad = torch.randn(shape, generator=generator)
        params.append(p)
    return params


def _clone(params: list[torch.nn.Parameter]) -> list[torch.nn.Parameter]:
    out = []
    for p in params:
        q = torch.nn.Parameter(p.detach().clone())
        q.grad = p.grad.clone()  # type: ignore[union-attr]
        out.append(q)
    return out


def _recipe(
    params: list[torch.nn.Parameter], hidden: int, fast: bool, ns_steps: int = 5
) -> ours.ChainOptimizer:
    groups = [
        {"params": params[:hidden], "label": "muon", "lr": 0.02, "weight_decay": 0.1},
        {"params": params[hidden:], "label": "adamw", "lr": 3e-4, "weight_decay": 0.01},
    ]
    adamw = ours.chain(ours.adam_direction(), b.add_decayed_weights(), b.scale_by_learning_rate())
    transform = ours.partition(
        ours.group_labels(groups), {"muon": ours.muon_update(ns_steps=ns_steps), "adamw": adamw}
    )
    return ours.ChainOptimizer(
        groups,
        transform,
        fast=fast,
        nonfinite="ignore",
        momentum=0.95,
        betas=(0.9, 0.999),
        eps=1e-8,
    )


def _torch_pair(
    params: list[torch.nn.Parameter], hidden: int, fused: bool, ns_steps: int = 5
) -> Callable[[], Any]:
    muon = torch.optim.Muon(
        params[:hidden], lr=0.02, weight_decay=0.1, momentum=0.95, ns_steps=ns_steps
    )
    adamw = torch.optim.AdamW(
        params[hidden:], lr=3e-4, weight_decay=0.01, fused=fused, foreach=not fused
    )

    def step() -> None:
        muon.step()
        adamw.step()

    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden", type=int, default=8, help="hidden matrices")
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--cols", type=int, default=250_000)
    parser.add_argument("--rest", type=int, default=10_000_000, help="AdamW's elements")
    parser.add_argument(
        "--ns-steps",
        type=int,
        default=5,
        help="Newton-Schulz iterations on both sides (fewer: less of the step is the bfloat16 "
        "matrix products both run alike)",
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", default=None, help="write the report here too")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = _parameters(args.hidden, args.rows, args.cols, args.rest)
    modes: dict[str, Callable[[], Any]] = {}
    first: dict[str, float] = {}
    ns = args.ns_steps
    for name, make in (
        ("dltricks recipe, fast", lambda ps: _recipe(ps, args.hidden, True, ns).step),
        ("dltricks recipe, eager", lambda ps: _recipe(ps, args.hidden, False, ns).step),
        ("torch Muon + AdamW foreach", lambda ps: _torch_pair(ps, args.hidden, False, ns)),
        ("torch Muon + AdamW fused", lambda ps: _torch_pair(ps, args.hidden, True, ns)),
    ):
        step = make(_clone(base))
        first[name] = _timed(step)  # compilation, buffers, state
        step()
        modes[name] = step
    medians = _interleaved_medians(modes, args.rounds)
    best = min(medians["torch Muon + AdamW foreach"], medians["torch Muon + AdamW fused"])
    muon_numel = args.hidden * args.rows * args.cols
    rest_numel = sum(p.numel() for p in base[args.hidden :])
    command = "python benchmarks/partition_recipe.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    lines = [
        "# The Muon + AdamW partition recipe against torch's Muon and AdamW side by side",
        "",
        f"- command: `{command.strip()}`",
        f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch threads {torch.get_num_threads()}",
        f"- torch {torch.__version__}, Python {platform.python_version()}",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {args.rounds} rounds",
        f"- Muon: {args.hidden} matrices of {args.rows} x {args.cols:,} ({muon_numel:,} "
        f"elements, {ns} Newton-Schulz steps); AdamW: {len(base) - args.hidden} tensors, "
        f"{rest_numel:,} elements",
        "",
        "| mode | step ms | / fastest torch pair | first step s |",
        "|---|---|---|---|",
    ]
    for name, median in medians.items():
        lines.append(f"| {name} | {median * 1e3:.3g} | {median / best:.2f} | {first[name]:.2f} |")
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        Path(args.out).write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
