"""``state-precision``: does AdamW train as well with its moments in 2 or 1 bytes?

Claim (Dettmers et al. 2022, "8-bit Optimizers via Block-wise Quantization"; stochastic
rounding: Gupta et al. 2015, Zamirai et al. 2020): Adam's moments stored in 8-bit block-wise
codes, or in bfloat16 with stochastic rounding, train to the same loss as float32 moments, at
a quarter or half of the state's memory.

Setup: an MLP (ReLU) trained with :class:`dltricks.optim.AdamW` at one learning rate, once per
seed and state precision (``state_precision`` of :mod:`dltricks.optim.state_precision`);
every precision starts from the same weights and sees the same batches for a seed. Records:
final training loss, test accuracy, and the optimizer state's bytes per parameter (step
counts and seeds aside; under ``int8`` tensors of fewer than 4096 elements keep float32
state, so a small model saves less than the 2 bytes per parameter of a large one).

Data: digits (quick), MNIST-1D (full).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import matplotlib.pyplot as plt
import torch

from dltricks.lab.context import RunContext
from dltricks.lab.registry import Experiment, register
from dltricks.lab.settings import (
    BATCH_SIZE,
    DATASET,
    DEPTH,
    EPOCHS,
    LEARNING_RATE,
    SEEDS,
    WIDTH,
    Choice,
    ExperimentConfig,
    ListOf,
)
from dltricks.lab.training import divergence
from dltricks.lab.verdicts import Verdict, finite, judged
from dltricks.nn import MLP
from dltricks.optim import AdamW
from dltricks.optim.state_precision import SEED_KEY, STATE_PRECISIONS
from dltricks.train import TrainConfig, fit


@dataclass(frozen=True)
class StatePrecisionConfig(ExperimentConfig):
    """The settings of ``state-precision``."""

    experiment: ClassVar[str] = "state-precision"

    dataset: Annotated[str, DATASET]
    precisions: Annotated[list[str], ListOf(Choice(STATE_PRECISIONS), unique=True)]
    width: Annotated[int, WIDTH]
    depth: Annotated[int, DEPTH]
    lr: Annotated[float, LEARNING_RATE]
    epochs: Annotated[int, EPOCHS]
    batch_size: Annotated[int, BATCH_SIZE]
    seeds: Annotated[int, SEEDS]


def configure(quick: bool) -> StatePrecisionConfig:
    return StatePrecisionConfig(
        dataset="digits" if quick else "mnist1d",
        precisions=list(STATE_PRECISIONS),
        width=64 if quick else 256,
        depth=2 if quick else 3,
        lr=3e-3 if quick else 1e-3,
        epochs=4 if quick else 30,
        batch_size=64,
        seeds=2 if quick else 5,
    )


def state_bytes_per_param(optimizer: torch.optim.Optimizer) -> float:
    """Bytes of the optimizer's state per parameter (step counts and seeds aside)."""
    stored = 0
    params = 0
    for group in optimizer.param_groups:
        for p in group["params"]:
            params += p.numel()
            for key, value in optimizer.state.get(p, {}).items():
                if key not in ("step", SEED_KEY) and isinstance(value, torch.Tensor):
                    stored += value.numel() * value.element_size()
    return stored / max(params, 1)


def _train_one(ctx: RunContext, precision: str, seed: int) -> dict[str, Any]:
    cfg = ctx.config
    data = ctx.data(cfg["dataset"])
    generator = torch.Generator().manual_seed(seed)
    model = MLP(data.n_features, data.n_classes, cfg["width"], cfg["depth"], generator=generator)
    made: list[torch.optim.Optimizer] = []

    def factory(params: Any) -> torch.optim.Optimizer:
        torch.manual_seed(seed)
        opt = AdamW(params, lr=cfg["lr"], nonfinite="ignore", state_precision=precision)
        made.append(opt)
        return opt

    result = fit(
        model,
        factory,
        data,
        TrainConfig(epochs=cfg["epochs"], batch_size=cfg["batch_size"], seed=seed),
        device=ctx.device,
        progress=False,
    )
    return {
        **divergence(result),
        "train_loss": result.final.train_loss,
        "test_accuracy": result.final.test_accuracy,
        "state_bytes_per_param": state_bytes_per_param(made[-1]),
        "curve_train_loss": [e.train_loss for e in result.history],
    }


def _by_precision(records: list[dict[str, Any]], key: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for r in records:
        out.setdefault(r["precision"], []).append(float(r[key]))
    return out


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _plot(ctx: RunContext, records: list[dict[str, Any]]) -> None:
    cfg = ctx.config
    fig, ax = plt.subplots(figsize=(8.5, 4.8))
    colours = {"fp32": "#1b6ca8", "bf16": "#d1495b", "int8": "#2e933c"}
    styles = {"fp32": "-", "bf16": "--", "int8": ":"}
    for precision in cfg["precisions"]:
        for i, r in enumerate(x for x in records if x["precision"] == precision):
            epochs = range(1, len(r["curve_train_loss"]) + 1)
            ax.plot(
                epochs,
                r["curve_train_loss"],
                styles[precision],
                color=colours[precision],
                alpha=0.8,
                label=f"{precision} state ({r['state_bytes_per_param']:.2g} B/param)"
                if i == 0
                else None,
            )
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (one line per seed)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    ax.set_title(
        f"AdamW with float32, bfloat16 (stochastic rounding) and 8-bit block-wise moments\n"
        f"{cfg['dataset']}, MLP width {cfg['width']} depth {cfg['depth']}, lr {cfg['lr']}, "
        f"{len(ctx.seeds)} seeds",
        fontsize=10,
    )
    ctx.save_figure(fig, "state_precision_loss")
    plt.close(fig)


def run(ctx: RunContext) -> dict[str, Any]:
    cfg = ctx.config
    ctx.progress.plan(len(cfg["precisions"]) * len(ctx.seeds))
    records = []
    for precision in cfg["precisions"]:
        for seed in ctx.seeds:

            def train(p: str = precision, s: int = seed) -> dict[str, Any]:
                return _train_one(ctx, p, s)

            records.append(ctx.unit({"precision": precision, "seed": seed}, train))
    _plot(ctx, records)
    losses = _by_precision(records, "train_loss")
    accuracy = _by_precision(records, "test_accuracy")
    state = _by_precision(records, "state_bytes_per_param")
    summary: dict[str, Any] = {
        "final_train_loss": {p: statistics.fmean(v) for p, v in losses.items()},
        "final_train_loss_sd": {p: _sd(v) for p, v in losses.items()},
        "test_accuracy": {p: statistics.fmean(v) for p, v in accuracy.items()},
        "test_accuracy_sd": {p: _sd(v) for p, v in accuracy.items()},
        "state_bytes_per_param": {p: statistics.fmean(v) for p, v in state.items()},
    }
    full = summary["state_bytes_per_param"].get("fp32")
    summary["memory_saved"] = {
        p: (1 - b / full) if full else math.nan for p, b in summary["state_bytes_per_param"].items()
    }
    loss, sd = summary["final_train_loss"], summary["final_train_loss_sd"]
    parts = [
        f"{p}: loss {loss[p]:.3g} ± {sd[p]:.2g}, "
        f"test accuracy {summary['test_accuracy'][p]:.3f}, state "
        f"{summary['state_bytes_per_param'][p]:.2g} B/param"
        for p in cfg["precisions"]
    ]
    summary["finding"] = f"Final training loss over {len(ctx.seeds)} seeds: " + "; ".join(parts)
    return summary


#: Within seed noise: the mean final loss differs from float32's by at most this many standard
#: deviations of the seeds (the larger of the two precisions'), or 5% of float32's loss.
NOISE_SDS = 2.0
NOISE_FLOOR = 0.05


def within_noise(reference: list[float], other: list[float]) -> bool:
    """Whether the mean of ``other`` is within seed noise of the mean of ``reference``."""
    gap = abs(statistics.fmean(other) - statistics.fmean(reference))
    allowed = max(
        NOISE_SDS * max(_sd(reference), _sd(other)), NOISE_FLOOR * statistics.fmean(reference)
    )
    return gap <= allowed


def judge(results: dict[str, Any]) -> list[Verdict]:
    """Rules: every low precision's mean final training loss is within seed noise of float32's
    (:func:`within_noise`); its state takes at most 4.1 (bf16) or, on the tensors it covers,
    about 2 bytes per parameter (here: below float32's 8)."""
    losses = _by_precision(results["records"], "train_loss")
    s = results["summary"]
    others = [p for p in losses if p != "fp32"]
    if "fp32" not in losses or not others:
        return []
    return [
        judged(
            "With bfloat16 (stochastic rounding) or 8-bit block-wise moments AdamW reaches "
            "the final training loss of float32 moments.",
            {
                p: all(map(finite, losses[p])) and within_noise(losses["fp32"], losses[p])
                for p in others
            },
            rule=f"mean final loss within {NOISE_SDS:g} seed standard deviations (or "
            f"{NOISE_FLOOR:.0%}) of float32's",
            measured=", ".join(
                f"{p} {s['final_train_loss'][p]:.3g} ± {s['final_train_loss_sd'][p]:.2g}"
                for p in losses
            ),
        ),
        judged(
            "The low-precision state takes a half (bf16) or about a quarter (int8) of the "
            "float32 state's memory.",
            {
                p: s["state_bytes_per_param"][p]
                <= (4.1 if p == "bf16" else 0.5 * s["state_bytes_per_param"]["fp32"])
                for p in others
            },
            rule="bf16 <= 4.1 B/param; int8 below half of float32's (small tensors keep "
            "float32 state)",
            measured=", ".join(f"{p} {s['state_bytes_per_param'][p]:.3g} B/param" for p in losses),
        ),
    ]


EXPERIMENT = register(
    Experiment(
        name="state-precision",
        question="Does Adam train as well with its moments in 2 or 1 bytes?",
        judge=judge,
        claim="AdamW with bfloat16 (stochastically rounded) or 8-bit block-wise quantized "
        "moments reaches the final training loss of float32 moments, with a half or about a "
        "quarter of the state's memory.",
        source="Dettmers et al. 2022, 8-bit Optimizers via Block-wise Quantization; "
        "Zamirai et al. 2020, Revisiting BFloat16 Training",
        tricks=("adaptive learning rate",),
        configure=configure,
        run=run,
    )
)
