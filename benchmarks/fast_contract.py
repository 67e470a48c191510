"""Speed of what the fast path added for the contract: bf16 parameters and torch.compile.

Two same-run ratios, modes interleaved round by round, medians (20M parameters in 50 CPU
tensors by default, fixed random gradients, so only the optimizer step is timed):

* **bf16 AdamW**: dltricks ``AdamW`` on bfloat16 parameters (fast path, float32 math inside
  the kernel) against ``torch.optim.AdamW(fused=True)`` on the same bfloat16 parameters;
  target <= 1.3.
* **torch.compile(opt.step)**: dltricks ``AdamW`` (float32) stepped through
  ``torch.compile(opt.step)`` against the plain fast step; target <= 1.5.

Both use ``nonfinite="ignore"`` where torch's modes skip the check too (bf16 row), and the
default policy on both sides of the compile row.

Usage::

    python benchmarks/fast_contract.py                    # 20M parameters, 9 rounds
    python benchmarks/fast_contract.py --numel 2000000 --rounds 5

Writes ``benchmarks/results/fast_contract_cpu.md`` (or ``--out``) and prints it.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import dltricks.optim as ours


def _params(numel: int, tensors: int, dtype: torch.dtype) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(0)
    each = numel // tensors
    params = []
    for _ in range(tensors):
        p = torch.nn.Parameter(torch.randn(each, generator=gen).to(dtype))
        p.grad = (torch.randn(each, generator=gen) * 1e-2).to(dtype)
        params.append(p)
    return params


def _medians(modes: dict[str, Callable[[], Any]], rounds: int, repeats: int) -> dict[str, float]:
    for step in modes.values():  # warm-up: compilation, buffer layout
        step()
        step()
    times: dict[str, list[float]] = {name: [] for name in modes}
    names = list(modes)
    for _ in range(rounds):
        random.shuffle(names)
        for name in names:
            start = time.perf_counter()
            for _ in range(repeats):
                modes[name]()
            times[name].append((time.perf_counter() - start) / repeats)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--numel", type=int, default=20_000_000)
    parser.add_argument("--tensors", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--repeats", type=int, default=3, help="steps timed together")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: default)")
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "fast_contract_cpu.md")
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    kwargs = {"lr": 1e-3, "weight_decay": 1e-2}

    ours_bf16 = ours.AdamW(
        _params(args.numel, args.tensors, torch.bfloat16), nonfinite="ignore", **kwargs
    )
    torch_bf16 = torch.optim.AdamW(
        _params(args.numel, args.tensors, torch.bfloat16), fused=True, **kwargs
    )
    bf16 = _medians(
        {"dltricks fast": ours_bf16.step, "torch fused": torch_bf16.step},
        args.rounds,
        args.repeats,
    )
    flat = ours_bf16._flat
    assert flat is not None
    assert flat.plans[0] is not None
    assert flat.plans[0].buckets, "bf16 parameters were not fused"
    del ours_bf16, torch_bf16

    plain = ours.AdamW(_params(args.numel, args.tensors, torch.float32), **kwargs)
    compiled_opt = ours.AdamW(_params(args.numel, args.tensors, torch.float32), **kwargs)
    compiled = torch.compile(compiled_opt.step, fullgraph=True)
    compile_row = _medians(
        {"plain fast step": plain.step, "torch.compile(opt.step)": compiled},
        args.rounds,
        args.repeats,
    )

    command = "python benchmarks/fast_contract.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    ratio_bf16 = bf16["dltricks fast"] / bf16["torch fused"]
    ratio_compile = compile_row["torch.compile(opt.step)"] / compile_row["plain fast step"]
    lines = [
        "# Fast path: bf16 parameters and torch.compile(opt.step), CPU",
        "",
        f"- command: `{command.strip()}`",
        f"- machine: {cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}",
        f"- torch {torch.__version__}, Python {platform.python_version()}",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; whole run "
        f"{time.perf_counter() - started:.0f} s",
        f"- {args.numel:,} parameters in {args.tensors} tensors; median of {args.rounds} "
        f"rounds of {args.repeats} steps, modes shuffled each round",
        "",
        "| comparison | dltricks | reference | ratio | target |",
        "|---|---|---|---|---|",
        f"| AdamW bf16: dltricks fast / torch fused bf16 | {bf16['dltricks fast'] * 1e3:.1f} ms "
        f"| {bf16['torch fused'] * 1e3:.1f} ms | {ratio_bf16:.2f} | <= 1.3 "
        f"({'met' if ratio_bf16 <= 1.3 else 'missed'}) |",
        f"| AdamW fp32: torch.compile(opt.step) / plain fast step "
        f"| {compile_row['torch.compile(opt.step)'] * 1e3:.1f} ms "
        f"| {compile_row['plain fast step'] * 1e3:.1f} ms | {ratio_compile:.2f} | <= 1.5 "
        f"({'met' if ratio_compile <= 1.5 else 'missed'}) |",
        "",
        "Shared machine: absolute times drift between runs; trust the same-run ratios.",
    ]
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
