"""Optimizer step time: dltricks (fast and eager paths) against torch.optim and the reference
packages (pytorch-optimizer, schedulefree).

For each size (parameters split evenly over a number of float32 CPU tensors), each optimizer is
stepped in every mode, interleaved round by round, and the median step time is reported with:

* the bandwidth bound: bytes moved per parameter (e.g. Adam reads p, g, m, v and writes p, m, v:
  28 B) divided by the in-place streaming bandwidth ``a.add_(b)`` measured in the same run;
* ratios against torch's fused mode (or its fastest mode where it has no fused one);
* the first fast step (compilation, when the inductor cache is cold, plus laying out the flat
  buffers) and the peak extra memory of a fast step after warm-up (growth of the process's
  peak resident set, ``VmHWM``, reset through ``/proc/self/clear_refs``).

Gradients are fixed random tensors (no backward), so only the optimizer step is timed.
``nonfinite="ignore"`` skips the finite check, as torch does; the default policy ("raise")
reads the gradients once more, and both are reported.

Usage::

    python benchmarks/optim_step.py                       # 100K, 1M and 50M; all optimizers
    python benchmarks/optim_step.py --sizes 100k,1m --optimizers Adam,SGD --rounds 5

Writes ``benchmarks/results/optim_step_cpu.md`` (or ``--out``) and prints it.
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import dltricks.optim as ours

SIZES = {"100k": (100_000, 10), "1m": (1_000_000, 50), "50m": (50_000_000, 200)}
SIZES["20m"] = (20_000_000, 8)
MATRIX_ROWS = 4
"""Rows of the 2-D tensors of a per-tensor optimizer (Muon). Newton-Schulz runs in bfloat16,
which CPUs without native bfloat16 matmuls compute at about 0.5 GFLOP/s: four rows keep a 20M
step near ten seconds, in torch's implementation as in ours (the same operations)."""


@dataclass(frozen=True)
class Spec:
    """One optimizer under test: how to build each mode, and the bytes it moves per parameter."""

    name: str
    ours: Callable[..., torch.optim.Optimizer]
    torch_cls: Callable[..., torch.optim.Optimizer] | None
    kwargs: dict[str, Any]
    bytes_per_param: int
    torch_fused: bool
    third_party: str | None = None
    torch_kwargs: dict[str, Any] = field(default_factory=dict)
    matrices: bool = False
    """Parameters as 2-D tensors of :data:`MATRIX_ROWS` rows (Muon takes nothing else)."""
    torch_modes: tuple[str, ...] = ("for-loop", "foreach")
    """torch's modes for this optimizer besides fused (Muon has only its for-loop)."""
    per_tensor: bool = False
    """A chain with per-tensor blocks: seconds per step in Newton-Schulz or the factored
    statistics whichever path runs them, so no separate eager row (the fast path fuses the
    elementwise stretches around those blocks)."""


SPECS = [
    Spec("SGD", ours.SGD, torch.optim.SGD, {"lr": 1e-3}, 12, True),
    Spec(
        "Momentum", ours.Momentum, torch.optim.SGD, {"lr": 1e-3}, 20, True, None, {"momentum": 0.9}
    ),
    Spec("Adagrad", ours.Adagrad, torch.optim.Adagrad, {"lr": 1e-3}, 20, True),
    Spec("RMSprop", ours.RMSprop, torch.optim.RMSprop, {"lr": 1e-3}, 20, False),
    Spec("Adam", ours.Adam, torch.optim.Adam, {"lr": 1e-3}, 28, True),
    Spec("AdamW", ours.AdamW, torch.optim.AdamW, {"lr": 1e-3}, 28, True),
    Spec("Adamax", ours.Adamax, torch.optim.Adamax, {"lr": 1e-3}, 28, False),
    Spec("NAdam", ours.NAdam, torch.optim.NAdam, {"lr": 1e-3}, 28, False),
    Spec("Adadelta", ours.Adadelta, torch.optim.Adadelta, {"lr": 1.0}, 28, False),
    Spec("Lion", ours.Lion, None, {"lr": 1e-4}, 20, False, "Lion"),
    # RAdam, Rprop, ASGD against torch's fastest mode; AdaBelief against pytorch-optimizer's,
    # Schedule-Free AdamW against schedulefree's (both in train mode).
    Spec("RAdam", ours.RAdam, torch.optim.RAdam, {"lr": 1e-3}, 28, False),
    Spec("Rprop", ours.Rprop, torch.optim.Rprop, {"lr": 1e-3}, 28, False),
    # ASGD: reads theta, g and ax, writes theta and ax. Before averaging starts (every
    # benchmarked step: t0 = 1e6) the fast path's kernel for mu = 1 does not read ax, but
    # writing a cache line still reads it for ownership: 20 bytes of traffic either way.
    Spec("ASGD", ours.ASGD, torch.optim.ASGD, {"lr": 1e-3}, 20, False),
    Spec("AdaBelief", ours.AdaBelief, None, {"lr": 1e-3}, 28, False, "AdaBelief"),
    Spec(
        "ScheduleFreeAdamW",
        lambda params, **kw: _in_train_mode(ours.ScheduleFreeAdamW(params, **kw)),
        None,
        {"lr": 1e-3},
        28,
        False,
        "schedulefree.AdamWScheduleFree",
    ),
]
SPECS += [
    # Per-tensor chains. Muon: p, g, buffer read, p and buffer written (20 B) plus Newton-Schulz
    # (compute-bound); Adafactor: p read for its RMS, g read twice (row and column means, then
    # the update), p written (16 B) plus full-size temporaries of the variance estimate.
    Spec(
        "Muon",
        ours.Muon,
        torch.optim.Muon,
        {"lr": 0.02},
        20,
        False,
        matrices=True,
        torch_modes=("for-loop",),
        per_tensor=True,
    ),
    Spec(
        "Adafactor",
        ours.Adafactor,
        torch.optim.Adafactor,
        {"lr": 1e-2},
        16,
        False,
        matrices=True,
        per_tensor=True,
    ),
]


def _in_train_mode(optimizer: Any) -> torch.optim.Optimizer:
    """A Schedule-Free optimizer, switched to train mode (a new one is in eval mode)."""
    optimizer.train()
    return optimizer  # type: ignore[no-any-return]


def _third_party(name: str) -> Callable[..., torch.optim.Optimizer] | None:
    """pytorch-optimizer's class ``name``, or ``module.Class`` of another package; None when
    the package is not installed."""
    if "." in name:
        module_name, _, class_name = name.rpartition(".")
        try:
            module = __import__(module_name)
        except ImportError:
            return None
        cls = getattr(module, class_name, None)
        if cls is None:
            return None
        return lambda params, **kw: _in_train_mode(cls(params, **kw))
    try:
        import pytorch_optimizer  # type: ignore[import-not-found]
    except ImportError:
        return None
    return getattr(pytorch_optimizer, name, None)  # type: ignore[no-any-return]


def _params(
    numel: int, tensors: int, seed: int, matrices: bool = False
) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    each = numel // tensors
    shape = (MATRIX_ROWS, each // MATRIX_ROWS) if matrices else (each,)
    params = []
    for _ in range(tensors):
        p = torch.nn.Parameter(torch.randn(shape, generator=gen))
        p.grad = torch.randn(shape, generator=gen) * 1e-2
        params.append(p)
    return params


def _rss_kib(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


def _peak_extra_bytes(step: Callable[[], Any]) -> int | None:
    """Growth of the peak resident set during ``step`` (Linux), in bytes."""
    clear = Path("/proc/self/clear_refs")
    if not clear.exists():
        return None
    gc.collect()
    try:
        clear.write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        return None
    before = _rss_kib("VmRSS")
    step()
    return max(0, _rss_kib("VmHWM") - before) * 1024


def _timed(step: Callable[[], Any]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def _interleaved_medians(modes: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    """The median time of each mode over ``rounds`` rounds, every mode once a round.

    Interleaved in a fresh order each round: what ran just before a mode (and what it left in
    the caches) changes from round to round instead of biasing one mode.
    """
    times: dict[str, list[float]] = {name: [] for name in modes}
    shuffle = random.Random(len(times))
    for _ in range(rounds):
        order = list(modes.items())
        shuffle.shuffle(order)
        for name, step in order:
            times[name].append(_timed(step))
    return {name: statistics.median(values) for name, values in times.items()}


@dataclass
class Row:
    spec: Spec
    size: str
    numel: int
    times: dict[str, float]
    bound_s: float
    first_step_s: float
    peak_extra: int | None
    param_bytes: int
    bandwidth: float


def _bench(spec: Spec, size: str, rounds: int, with_eager: bool) -> Row:
    numel, tensors = SIZES[size]
    stream_a, stream_b = torch.randn(numel), torch.randn(numel)
    # torch's modes take turns on one set of params
    shared = _params(numel, tensors, seed=0, matrices=spec.matrices)
    fast_params = _params(numel, tensors, seed=0, matrices=spec.matrices)
    fast = spec.ours(fast_params, **spec.kwargs, **spec.torch_kwargs)
    first = _timed(fast.step)
    modes: dict[str, Callable[[], Any]] = {}

    def policy(name: str) -> Callable[[], Any]:
        def step() -> Any:
            fast.nonfinite = name  # type: ignore[attr-defined]
            return fast.step()

        return step

    modes["dltricks fast"] = policy("raise")
    modes["fast, no finite check"] = policy("ignore")
    if with_eager and not spec.per_tensor:  # seconds per step at 50M: smaller sizes only
        eager_params = _params(numel, tensors, seed=0, matrices=spec.matrices)
        eager = spec.ours(eager_params, fast=False, **spec.kwargs, **spec.torch_kwargs)
        modes["dltricks eager"] = eager.step
    if spec.torch_cls is not None:
        kw = {**spec.kwargs, **spec.torch_kwargs}
        if spec.torch_modes == ("for-loop",):  # no foreach keyword at all (Muon)
            modes["torch for-loop"] = spec.torch_cls(shared, **kw).step
        else:
            modes["torch for-loop"] = spec.torch_cls(shared, foreach=False, **kw).step
            modes["torch foreach"] = spec.torch_cls(shared, foreach=True, **kw).step
        if spec.torch_fused:
            modes["torch fused"] = spec.torch_cls(shared, fused=True, **kw).step
    if spec.third_party is not None:
        cls = _third_party(spec.third_party)
        if cls is not None:
            modes[_package(spec)] = cls(shared, **spec.kwargs).step
    # The bandwidth probe takes its turn in every round, so the bound sees the same machine.
    modes["a.add_(b)"] = lambda: stream_a.add_(stream_b)
    for step in modes.values():  # warm-up: state allocation, first-touch page faults
        step()
    medians = _interleaved_medians(modes, rounds)
    fast.nonfinite = "ignore"  # type: ignore[attr-defined]
    peak = _peak_extra_bytes(fast.step)
    fast.nonfinite = "raise"  # type: ignore[attr-defined]
    # The eager path allocates full-size temporaries: its figure shows the probe sees them.
    bandwidth = 12 * numel / medians.pop("a.add_(b)")
    return Row(
        spec,
        size,
        numel,
        medians,
        spec.bytes_per_param * numel / bandwidth,  # the bound, from this row's own rounds
        first,
        peak,
        4 * numel,
        bandwidth,
    )


def _float32_gap(spec: Spec, steps: int = 100) -> tuple[float, float, float]:
    """Largest eager-vs-fast difference after ``steps`` float32 steps on 100K parameters.

    Returns (largest absolute difference, the same relative to the largest parameter, share of
    parameter elements that differ at all).
    """
    paths = []
    for fast in (True, False):
        params = _params(100_000, 10, seed=0, matrices=spec.matrices)
        opt = spec.ours(params, fast=fast, **spec.kwargs, **spec.torch_kwargs)
        gen = torch.Generator().manual_seed(1)
        for _ in range(steps):
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen) * 1e-2
            opt.step()
        paths.append(torch.cat([p.detach().flatten() for p in params]))
    fast_p, eager_p = paths
    diff = (fast_p - eager_p).abs()
    return (
        float(diff.max()),
        float(diff.max() / eager_p.abs().max()),
        float((diff > 0).double().mean()),
    )


def _package(spec: Spec) -> str:
    """The column of a third-party reference: pytorch-optimizer, or the package named."""
    name = spec.third_party or ""
    return name.partition(".")[0] if "." in name else "pytorch-optimizer"


def _fmt_ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1e3:.3g}"


def _best_torch(row: Row) -> tuple[str, float] | None:
    torch_modes = {k: v for k, v in row.times.items() if k.startswith("torch")}
    if not torch_modes:
        return None
    name = min(torch_modes, key=torch_modes.__getitem__)
    return name, torch_modes[name]


def _table(rows: list[Row]) -> list[str]:
    modes = [
        "dltricks fast",
        "fast, no finite check",
        "dltricks eager",
        "torch for-loop",
        "torch foreach",
        "torch fused",
        "pytorch-optimizer",
        "schedulefree",
    ]
    head = (
        "| optimizer | size | B/param | GB/s | bound ms | "
        + " | ".join(f"{m} ms" for m in modes)
        + " | reference | fast/ref | fast share of bound | first step s | peak extra mem |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in rows:
        fast = row.times["fast, no finite check"]
        ref: tuple[str, float] | None
        if "torch fused" in row.times:
            ref = ("torch fused", row.times["torch fused"])
        elif row.spec.third_party and _package(row.spec) in row.times:
            ref = (_package(row.spec), row.times[_package(row.spec)])
        else:
            ref = _best_torch(row)
        cells = [
            row.spec.name,
            row.size,
            str(row.spec.bytes_per_param),
            f"{row.bandwidth / 1e9:.1f}",
            _fmt_ms(row.bound_s),
            *[_fmt_ms(row.times.get(m)) for m in modes],
            ref[0].replace("torch ", "") if ref else "—",
            f"{fast / ref[1]:.2f}" if ref else "—",
            f"{row.bound_s / fast:.0%}",
            f"{row.first_step_s:.2f}",
            "—" if row.peak_extra is None else f"{row.peak_extra / row.param_bytes:.1%}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _targets(rows: list[Row]) -> list[str]:
    out = []
    by = {(r.spec.name, r.size): r for r in rows}
    for name in ("Adam", "AdamW", "Adagrad", "Momentum"):
        row = by.get((name, "50m"))
        if row and "torch fused" in row.times:
            ratio = row.times["fast, no finite check"] / row.times["torch fused"]
            verdict = "met" if ratio <= 1.05 else "missed"
            out.append(
                f"- 50M {name}: fast / torch fused = {ratio:.2f} (target <= 1.05): {verdict}"
            )
    elementwise: tuple[str, ...] = ("RMSprop", "Adamax", "NAdam", "Adadelta", "Lion")
    elementwise += ("RAdam", "Rprop", "ASGD", "AdaBelief", "ScheduleFreeAdamW")
    for name in elementwise:
        row = by.get((name, "50m"))
        if row is None:
            continue
        if row.spec.third_party:
            label = _package(row.spec)
            ref = row.times.get(label)
        else:
            best = _best_torch(row)
            ref, label = (best[1], best[0]) if best else (None, "")
        if ref is not None:
            speedup = ref / row.times["fast, no finite check"]
            verdict = "met" if speedup >= 1.5 else "missed"
            out.append(
                f"- 50M {name}: {speedup:.2f}x faster than {label} (target >= 1.5x): {verdict}"
            )
    for row in rows:
        if row.spec.per_tensor and "torch for-loop" in row.times:
            best = _best_torch(row)
            assert best is not None
            ratio = row.times["fast, no finite check"] / best[1]
            target = " (target <= 1.0)" if row.spec.name == "Muon" else ""
            verdict = (": met" if ratio <= 1.0 else ": missed") if target else ""
            out.append(
                f"- {row.size.upper()} {row.spec.name}: fast / {best[0]} = {ratio:.2f}"
                f"{target}{verdict}"
            )
    for row in rows:
        if row.size == "50m" and not row.spec.per_tensor:
            share = row.bound_s / row.times["fast, no finite check"]
            verdict = "met" if share >= 0.85 else "missed"
            out.append(
                f"- 50M {row.spec.name}: {share:.0%} of the bandwidth bound "
                f"(target >= 85%): {verdict}"
            )
    for row in rows:
        if row.size == "100k" and "torch foreach" in row.times:
            # Same work as torch (no finite check), as for the 50M targets; the default
            # policy's extra read of the gradients is shown beside it.
            foreach = row.times["torch foreach"]
            ratio = row.times["fast, no finite check"] / foreach
            verdict = "met" if ratio <= 1.0 else "missed"
            out.append(
                f"- 100K {row.spec.name}: fast / torch foreach = {ratio:.2f} (target <= 1.0): "
                f"{verdict}; with the default finite check "
                f"{row.times['dltricks fast'] / foreach:.2f}"
            )
    return out


# -- low-precision optimizer state (state_precision) ------------------------------------------

LOWBIT_BYTES = {
    # p read+write 8, g 4, then the moments read and written: fp32 16, bf16 8, int8 4 (plus
    # a float32 absmax per 256-element block of each moment, read and written: 0.06).
    "dltricks fp32": 28.0,
    "dltricks bf16": 20.0,
    "dltricks int8": 16.0 + 2 * 2 * 4 / 256,
    "dltricks bf16, compiled kernel": 20.0,
    "dltricks int8, compiled kernel": 16.0 + 2 * 2 * 4 / 256,
    "torch fused fp32": 28.0,
    # bfloat16 parameters, gradients and state: p 4, g 2, m 4, v 4.
    "torch fused, bf16 params": 14.0,
    "torchao AdamW8bit": 16.0 + 2 * 2 * 4 / 256,
    "torchao AdamW4bit": 14.0 + 2 * 2 * 4 / 128,
    "torchao bf16 SR": 20.0,
}


def _torchao_modes(params: list[torch.nn.Parameter]) -> dict[str, torch.optim.Optimizer]:
    """torchao's low-bit AdamW variants, where torchao is installed."""
    try:
        from torchao import optim as ao  # type: ignore[import-not-found]
    except ImportError:
        return {}
    out: dict[str, torch.optim.Optimizer] = {}
    for name, make in (
        ("torchao AdamW8bit", lambda ps: ao.AdamW8bit(ps, lr=1e-3)),
        ("torchao AdamW4bit", lambda ps: ao.AdamW4bit(ps, lr=1e-3)),
        ("torchao bf16 SR", lambda ps: ao._AdamW(ps, lr=1e-3, bf16_stochastic_round=True)),
    ):
        try:
            out[name] = make([torch.nn.Parameter(p.detach().clone()) for p in params])
        except Exception as error:  # an API change: say so, time the rest
            print(f"  {name}: {type(error).__name__}: {error}", file=sys.stderr)
    return out


def _state_bytes_per_param(optimizer: torch.optim.Optimizer, numel: int) -> float:
    total = 0
    for entry in optimizer.state.values():
        for key, value in entry.items():
            if key != "step" and isinstance(value, torch.Tensor):
                total += value.numel() * value.element_size()
    return total / numel


def _lowbit_report(size: str, rounds: int, command: str) -> list[str]:
    """AdamW with fp32, bf16 and int8 state against torch's fused fp32 AdamW at ``size``."""
    numel, tensors = SIZES[size]
    stream_a, stream_b = torch.randn(numel), torch.randn(numel)
    base = _params(numel, tensors, seed=0)
    optimizers: dict[str, torch.optim.Optimizer] = {}
    # bf16/int8 Adam runs the C kernel of dltricks.optim.fast.native where it builds; the
    # "compiled kernel" rows are the inductor kernel it replaces (DLTRICKS_NATIVE=0 while the
    # fast path lays out its buckets, at the first step).
    compiled_only = ("dltricks bf16, compiled kernel", "dltricks int8, compiled kernel")
    for name in ("dltricks fp32", "dltricks bf16", "dltricks int8", *compiled_only):
        params = [torch.nn.Parameter(p.detach().clone()) for p in base]
        for p, q in zip(params, base, strict=True):
            p.grad = q.grad.clone()  # type: ignore[union-attr]
        optimizers[name] = ours.AdamW(
            params, lr=1e-3, nonfinite="ignore", state_precision=name.split()[1].strip(",")
        )
    optimizers["torch fused fp32"] = torch.optim.AdamW(base, lr=1e-3, fused=True)
    half = []
    for p in base:
        q = torch.nn.Parameter(p.detach().to(torch.bfloat16))
        q.grad = p.grad.to(torch.bfloat16)  # type: ignore[union-attr]
        half.append(q)
    optimizers["torch fused, bf16 params"] = torch.optim.AdamW(half, lr=1e-3, fused=True)
    for name, opt in _torchao_modes(base).items():
        for p, q in zip(opt.param_groups[0]["params"], base, strict=True):
            p.grad = q.grad.clone()  # type: ignore[union-attr]
        optimizers[name] = opt
    first = {}
    for name, opt in optimizers.items():  # warm-up: compile, state allocation, page faults
        switch = os.environ.get("DLTRICKS_NATIVE")
        if name in compiled_only:
            os.environ["DLTRICKS_NATIVE"] = "0"
        try:
            first[name] = _timed(opt.step)
        finally:
            if switch is None:
                os.environ.pop("DLTRICKS_NATIVE", None)
            else:
                os.environ["DLTRICKS_NATIVE"] = switch
        opt.step()
    modes: dict[str, Callable[[], Any]] = {name: opt.step for name, opt in optimizers.items()}
    modes["a.add_(b)"] = lambda: stream_a.add_(stream_b)
    medians = _interleaved_medians(modes, rounds)
    bandwidth = 12 * numel / medians.pop("a.add_(b)")
    reference = medians["torch fused fp32"]
    lines = [
        "| mode | step ms | / torch fused fp32 | state B/param | moved B/param | bound ms "
        "| share of bound | first step s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, median in medians.items():
        moved = LOWBIT_BYTES.get(name, float("nan"))
        bound = moved * numel / bandwidth
        lines.append(
            f"| {name} | {median * 1e3:.3g} | {median / reference:.2f} | "
            f"{_state_bytes_per_param(optimizers[name], numel):.3g} | {moved:.3g} | "
            f"{bound * 1e3:.3g} | {bound / median:.0%} | {first[name]:.2f} |"
        )
    ratios = {p: medians[f"dltricks {p}"] / reference for p in ("bf16", "int8")}
    state = {
        p: _state_bytes_per_param(optimizers[f"dltricks {p}"], numel) for p in ("bf16", "int8")
    }
    targets = [
        f"- bf16 state: {ratios['bf16']:.2f}x torch fused fp32 (target <= 0.85): "
        f"{'met' if ratios['bf16'] <= 0.85 else 'missed'}; state {state['bf16']:.3g} B/param "
        f"(target <= 4.1): {'met' if state['bf16'] <= 4.1 else 'missed'}",
        f"- int8 state: {ratios['int8']:.2f}x torch fused fp32 (target <= 0.70): "
        f"{'met' if ratios['int8'] <= 0.70 else 'missed'}; state {state['int8']:.3g} B/param "
        f"(target <= 2.2): {'met' if state['int8'] <= 2.2 else 'missed'}",
    ]
    cpu = "unknown CPU"
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    missing = (
        ""
        if any(n.startswith("torchao") for n in medians)
        else (" torchao is not installed: its rows are absent.")
    )
    return [
        "# AdamW step time with low-precision state, CPU",
        "",
        f"- command: `{command}`",
        f"- machine: {cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}",
        f"- torch {torch.__version__}, Python {platform.python_version()}",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {size}: "
        f"{numel:,} float32 parameters in {tensors} tensors, {rounds} rounds",
        f"- streaming bandwidth `a.add_(b)`: {bandwidth / 1e9:.1f} GB/s",
        "",
        "Median step time, modes interleaved in a shuffled order each round; dltricks on its",
        'fast path with `nonfinite="ignore"` (the same work as torch). *state B/param*: bytes',
        "of the optimizer state per parameter (step counts and seeds aside); *moved B/param*:",
        "bytes a step reads and writes per parameter; *bound* = moved x parameters / bandwidth."
        + missing,
        "",
        *lines,
        "",
        "## Targets",
        "",
        *targets,
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100k,1m,50m", help="comma list of 100k, 1m, 50m")
    parser.add_argument("--optimizers", default=",".join(s.name for s in SPECS))
    parser.add_argument("--rounds", type=int, default=0, help="rounds per size (0: by size)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (0: torch's default). One by default: on a shared machine a "
        "parallel region waits for its slowest, descheduled thread, which swamps the timings",
    )
    parser.add_argument(
        "--cold-cache",
        action="store_true",
        help="compile into a fresh inductor cache, so that 'first step' is a cold compile",
    )
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "optim_step_cpu.md")
    )
    parser.add_argument(
        "--lowbit",
        action="store_true",
        help="AdamW with state_precision fp32/bf16/int8 against torch fused fp32 (first size "
        "only; writes optim_step_lowbit_cpu.md unless --out)",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.lowbit:
        size = args.sizes.split(",")[0].strip().lower()
        if size not in SIZES:
            parser.error(f"unknown size {size!r}")
        command = "python benchmarks/optim_step.py " + " ".join(
            argv if argv is not None else sys.argv[1:]
        )
        report = _lowbit_report(size, args.rounds or 5, command.strip())
        out = args.out
        if out == str(Path(__file__).parent / "results" / "optim_step_cpu.md"):
            out = str(Path(__file__).parent / "results" / "optim_step_lowbit_cpu.md")
        Path(out).write_text("\n".join(report) + "\n")
        print("\n".join(report))
        return 0
    if args.cold_cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="dltricks-inductor-")
    sizes = [s.strip().lower() for s in args.sizes.split(",") if s.strip()]
    names = [s.strip() for s in args.optimizers.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES] + [
        n for n in names if n not in {spec.name for spec in SPECS}
    ]
    if unknown:
        parser.error(f"unknown sizes or optimizers: {', '.join(unknown)}")
    specs = [spec for spec in SPECS if spec.name in names]
    rows: list[Row] = []
    probe_checks: dict[str, float] = {}
    started = time.perf_counter()
    for size in sizes:
        numel = SIZES[size][0]
        rounds = args.rounds or {"100k": 30, "1m": 15, "20m": 5, "50m": 9}[size]
        probe = _peak_extra_bytes(functools.partial(torch.ones, numel))
        probe_checks[size] = (probe or 0) / (4 * numel)
        for spec in specs:
            rows.append(_bench(spec, size, rounds, with_eager=size != "50m"))
            gc.collect()
            print(
                f"  {spec.name} {size} done ({time.perf_counter() - started:.0f} s)",
                file=sys.stderr,
            )
    gaps = {spec.name: _float32_gap(spec) for spec in specs}
    command = "python benchmarks/optim_step.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    cpu = "unknown CPU"
    for line in (
        Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    ):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    lines = [
        "# Optimizer step time, float32, CPU",
        "",
        f"- command: `{command.strip()}`",
        f"- machine: {cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}",
        f"- torch {torch.__version__}, Python {platform.python_version()}",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; whole run "
        f"{time.perf_counter() - started:.0f} s",
        "- memory probe check: allocating one parameter-sized tensor reads as "
        + ", ".join(f"{share:.0%} ({s})" for s, share in probe_checks.items())
        + " of the parameter bytes",
        "",
        "Median step time in ms, modes interleaved in a shuffled order each round. *dltricks",
        'fast* uses the default non-finite policy ("raise": one extra read of the gradients);',
        '*fast, no finite check* is `nonfinite="ignore"`, the same work as torch\'s modes.',
        "*fast/ref* compares",
        "the latter with torch's fused mode, else the reference package (pytorch-optimizer for",
        "Lion and AdaBelief, schedulefree for Schedule-Free AdamW), else torch's fastest",
        "mode. *first step*: compilation (inductor cache as found) plus laying out the flat",
        "buffers. *peak extra mem*: growth of peak RSS during one fast step after warm-up, as a",
        "share of the parameter bytes. *GB/s*: in-place streaming bandwidth `a.add_(b)` (2",
        "reads, 1 write), timed in the same rounds as the row's modes; *bound* = B/param x",
        "parameters / GB/s. *share of bound* can exceed 100% (streams that read more than they",
        "write run faster than `add_`), and below 1M parameters the data sit in cache, so the",
        "bound says little there. Shared machine: trust ratios within one row only.",
        "",
        *_table(rows),
        "",
        "## float32: fast path against eager path",
        "",
        "100 steps, 100K parameters in 10 tensors, fresh random gradients at every step.",
        "",
        "| optimizer | largest abs difference | relative to largest parameter | elements differing"
        " |",
        "|---|---|---|---|",
        *[f"| {name} | {gap[0]:.3g} | {gap[1]:.3g} | {gap[2]:.2%} |" for name, gap in gaps.items()],
        "",
        "## Targets",
        "",
        *_targets(rows),
        "",
    ]
    text = "\n".join(lines)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
