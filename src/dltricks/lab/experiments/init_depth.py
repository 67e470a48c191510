"""``init``: at depth 16-32 ReLU with Xavier init stalls; He init (and SELU + LeCun) trains.

Claim (He et al. 2015, "Delving Deep into Rectifiers", fig. 3; Hung-yi Lee's lecture on
initialisation and new activations): a 30-layer ReLU network initialised with Xavier's
``Var W = 2 / (fan_in + fan_out)`` does not learn at all, while He's ``Var W = 2 / fan_in``
converges. Why: a ReLU passes half of its input's second moment,
``E[relu(z)^2] = E[z^2] / 2`` for symmetric ``z``, so with ``z_l = W_l h_{l-1}``,
``E[z_l^2] = fan_in Var(W) E[z_{l-1}^2] / 2``. Xavier on square layers gives a factor 1/2 per
layer: the signal's RMS shrinks by ``2^(-L/2)`` through ``L`` layers (and the gradient
likewise on the way back), 2^-16 at depth 32, while He's factor is exactly 1. SELU with LeCun
``Var W = 1 / fan_in`` keeps mean 0 / variance 1 by self-normalisation (Klambauer et al. 2017).

Setup: one MLP per (activation+init setting, depth, seed), ``width`` units per hidden layer,
all Linear layers (output included) initialised with the setting's scheme and zero biases,
trained with the same optimizer (plain SGD unless the ``optimizer`` setting names another)
for the same number of epochs. At init, the RMS
``sqrt(mean^2 + std^2)`` of each hidden activation's output over the training split
(:class:`dltricks.diagnose.ActivationStats`) shows the forward signal through depth.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import torch
from matplotlib.figure import Figure

from dltricks.data import SplitDataset
from dltricks.diagnose import ActivationStats
from dltricks.lab.context import RunContext
from dltricks.lab.registry import Experiment, register
from dltricks.lab.settings import (
    ACTIVATION,
    BATCH_SIZE,
    DATASET,
    DEPTH,
    EPOCHS,
    INIT,
    LEARNING_RATE,
    OPTIMIZER,
    SEEDS,
    WIDTH,
    ExperimentConfig,
    ListOf,
    Pair,
)
from dltricks.lab.stats import finite_mean
from dltricks.lab.training import divergence, train_as_configured
from dltricks.lab.verdicts import Verdict, judged
from dltricks.nn import MLP
from dltricks.palette import activation_colour

# A run whose training loss stays above this share of chance-level loss ln(C) has stalled.
STALL_SHARE = 0.95


@dataclass(frozen=True)
class InitDepthConfig(ExperimentConfig):
    """The settings of ``init``; ``settings`` lists [activation, init scheme] pairs."""

    experiment: ClassVar[str] = "init"

    dataset: Annotated[str, DATASET]
    settings: Annotated[list[list[str]], ListOf(Pair(ACTIVATION, INIT), unique=True)]
    depths: Annotated[list[int], ListOf(DEPTH, unique=True)]
    width: Annotated[int, WIDTH]
    optimizer: Annotated[str, OPTIMIZER]
    lr: Annotated[float, LEARNING_RATE]
    batch_size: Annotated[int, BATCH_SIZE]
    epochs: Annotated[int, EPOCHS]
    seeds: Annotated[int, SEEDS]


def configure(quick: bool) -> InitDepthConfig:
    return InitDepthConfig(
        dataset="digits" if quick else "mnist1d",
        settings=[["relu", "xavier"], ["relu", "he"], ["selu", "lecun"]],
        depths=[16, 32],
        width=64 if quick else 128,
        optimizer="SGD",
        lr=0.01,
        batch_size=64,
        epochs=30,
        seeds=2 if quick else 3,
    )


def _signal_rms(model: MLP, data: SplitDataset) -> list[float]:
    """RMS of each hidden activation's output at init, over the whole training split."""
    model.train()
    with torch.no_grad(), ActivationStats(model) as stats:
        model(data.x_train)
    means = stats.per_layer("mean").values()
    stds = stats.per_layer("std").values()
    return [
        math.sqrt(float(m) ** 2 + float(s) ** 2)
        for m, s in zip(means, stds, strict=True)
        if m is not None and s is not None
    ]


def _train_one(
    ctx: RunContext, activation: str, init: str, depth: int, seed: int
) -> dict[str, Any]:
    cfg = ctx.config
    data = ctx.data(cfg["dataset"])
    generator = torch.Generator().manual_seed(seed)
    model = MLP(
        data.n_features,
        data.n_classes,
        cfg["width"],
        depth,
        activation,
        init=init,
        generator=generator,
    )
    model.to(data.x_train.device)
    rms = _signal_rms(model, data)
    result = train_as_configured(ctx, model, data, seed)
    return {
        **divergence(result),
        "init_signal_rms": rms,
        "train_loss": result.final.train_loss,
        "train_accuracy": result.final.train_accuracy,
        "test_accuracy": result.final.test_accuracy,
        "stop_reason": result.stop_reason,
        "curve_train_loss": [e.train_loss for e in result.history],
        "curve_train_accuracy": [e.train_accuracy for e in result.history],
        "curve_test_accuracy": [e.test_accuracy for e in result.history],
    }


def _label(activation: str, init: str) -> str:
    return f"{activation} + {init}"


def _style(activation: str, init: str) -> dict[str, str]:
    """The activation's colour (as in every figure); a dashed line for Xavier init."""
    return {"color": activation_colour(activation), "linestyle": "--" if init == "xavier" else "-"}


def _select(
    records: list[dict[str, Any]], activation: str, init: str, depth: int
) -> list[dict[str, Any]]:
    return [
        r
        for r in records
        if r["activation"] == activation and r["init"] == init and r["depth"] == depth
    ]


def _plot_training(ctx: RunContext, records: list[dict[str, Any]], chance_loss: float) -> None:
    cfg = ctx.config
    depths = cfg["depths"]
    fig = Figure(figsize=(5.2 * len(depths), 7.4))
    axes = fig.subplots(2, len(depths), sharex=True, squeeze=False)
    for col, depth in enumerate(depths):
        for activation, init in cfg["settings"]:
            rows = _select(records, activation, init, depth)
            for row_ax, key in ((0, "curve_train_loss"), (1, "curve_train_accuracy")):
                ax = axes[row_ax][col]
                for r in rows:
                    ax.plot(
                        range(1, len(r[key]) + 1),
                        r[key],
                        **_style(activation, init),
                        alpha=0.3,
                        lw=0.8,
                    )
                # A diverged run stops early: average the seeds still running.
                length = max(len(r[key]) for r in rows)
                mean = [
                    finite_mean([r[key][e] for r in rows if e < len(r[key])]) for e in range(length)
                ]
                ax.plot(
                    range(1, length + 1),
                    mean,
                    **_style(activation, init),
                    label=_label(activation, init),
                )
        axes[0][col].axhline(chance_loss, color="grey", linestyle=":", label="chance (ln C)")
        axes[0][col].set_yscale("log")
        axes[0][col].set_title(f"{depth} hidden layers")
        axes[1][col].set_xlabel("epoch")
        for ax in axes[:, col]:
            ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("training loss (cross-entropy)")
    axes[1][0].set_ylabel("training accuracy")
    axes[0][-1].legend(title="activation + init", fontsize=8)
    fig.suptitle(
        f"Initialisation at depth (He et al. 2015): {cfg['dataset']}, width {cfg['width']}, "
        f"{cfg['optimizer']} lr {cfg['lr']}, batch {cfg['batch_size']}; "
        f"thick: mean of {len(ctx.seeds)} seeds, "
        "thin: single seeds",
        fontsize=10,
    )
    ctx.save_figure(fig, "init_training")


def _plot_signal(ctx: RunContext, records: list[dict[str, Any]]) -> None:
    cfg = ctx.config
    depths = cfg["depths"]
    fig = Figure(figsize=(5.2 * len(depths), 4.0))
    axes = fig.subplots(1, len(depths), squeeze=False)[0]
    for ax, depth in zip(axes, depths, strict=True):
        for activation, init in cfg["settings"]:
            rows = _select(records, activation, init, depth)
            rms = [
                math.exp(finite_mean([math.log(r["init_signal_rms"][j]) for r in rows]))
                for j in range(depth)
            ]
            ax.plot(
                range(1, depth + 1),
                rms,
                marker=".",
                **_style(activation, init),
                label=_label(activation, init),
            )
        anchor = _select(records, "relu", "xavier", depth)
        if anchor:
            # E[z_l^2] halves per layer under Xavier on square ReLU layers: RMS x 2^(-1/2).
            start = math.exp(finite_mean([math.log(r["init_signal_rms"][0]) for r in anchor]))
            theory = [start * 2 ** (-j / 2) for j in range(depth)]
            ax.plot(
                range(1, depth + 1),
                theory,
                color="black",
                linestyle=":",
                label="relu + xavier theory: x 2^(-1/2) per layer",
            )
        ax.set_yscale("log", base=2)
        ax.set_xlabel("hidden layer (1 = input side)")
        ax.set_title(f"{depth} hidden layers")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("RMS of the activation output at init")
    axes[-1].legend(fontsize=8)
    fig.suptitle(
        f"Forward signal at initialisation ({cfg['dataset']} training split, geometric mean "
        f"over {len(ctx.seeds)} seeds)",
        fontsize=10,
    )
    ctx.save_figure(fig, "init_signal")


def run(ctx: RunContext) -> dict[str, Any]:
    cfg = ctx.config
    data = ctx.data(cfg["dataset"])
    ctx.progress.plan(len(cfg["settings"]) * len(cfg["depths"]) * len(ctx.seeds))
    records = [
        ctx.unit(
            {"activation": activation, "init": init, "depth": depth, "seed": seed},
            functools.partial(_train_one, ctx, activation, init, depth, seed),
        )
        for depth in cfg["depths"]
        for activation, init in cfg["settings"]
        for seed in ctx.seeds
    ]
    chance_loss = math.log(data.n_classes)
    _plot_training(ctx, records, chance_loss)
    _plot_signal(ctx, records)

    outcome: dict[str, dict[str, Any]] = {}
    parts = []
    for depth in cfg["depths"]:
        listed = []
        for activation, init in cfg["settings"]:
            rows = _select(records, activation, init, depth)
            losses = [r["train_loss"] for r in rows]
            stalled = sum(
                1
                for r in rows
                if r["train_loss"] is None
                or not math.isfinite(r["train_loss"])
                or r["train_loss"] > STALL_SHARE * chance_loss
            )
            stats = {
                "train_loss": finite_mean(losses),
                "train_accuracy": finite_mean([r["train_accuracy"] for r in rows]),
                "test_accuracy": finite_mean([r["test_accuracy"] for r in rows]),
                "stalled_seeds": stalled,
                "seeds": len(rows),
            }
            outcome[f"{_label(activation, init)} @ {depth}"] = stats
            listed.append(
                f"{_label(activation, init)} loss {stats['train_loss']:.2f}, accuracy "
                f"{stats['train_accuracy']:.2f} ({stalled}/{len(rows)} seeds stalled)"
            )
        parts.append(f"at depth {depth}: " + "; ".join(listed))
    finding = (
        f"After {cfg['epochs']} epochs (chance loss ln {data.n_classes} = {chance_loss:.2f}; "
        f"stalled = loss above {STALL_SHARE:.0%} of it), " + " | ".join(parts) + "."
    )
    return {
        "outcome": outcome,
        "mean_train_loss": finite_mean([r["train_loss"] for r in records]),
        "diverged_runs": sum(1 for r in records if r["diverged"]),
        "chance_loss": chance_loss,
        "finding": finding,
    }


def judge(results: dict[str, Any]) -> list[Verdict]:
    """Rule: a setting "stalls" at a depth when every seed's final training loss is above 95%
    of chance (``ln C``); it "trains" when no seed's is."""
    outcome = results["summary"]["outcome"]
    cfg = results["config"]["config"]
    rule = f"stalled: final training loss above {STALL_SHARE:.0%} of chance (ln C)"

    def checks(activation: str, init: str, want_stalled: bool) -> dict[str, bool]:
        out = {}
        for depth in cfg["depths"]:
            s = outcome.get(f"{_label(activation, init)} @ {depth}")
            if s is not None:
                stalled_all, none = s["stalled_seeds"] == s["seeds"], s["stalled_seeds"] == 0
                out[f"depth {depth}"] = stalled_all if want_stalled else none
        return out

    def counts(activation: str, init: str) -> str:
        return ", ".join(
            f"depth {d}: {s['stalled_seeds']}/{s['seeds']} seeds stalled"
            for d in cfg["depths"]
            if (s := outcome.get(f"{_label(activation, init)} @ {d}")) is not None
        )

    settings = [tuple(s) for s in cfg["settings"]]
    claims = (
        (("relu", "xavier"), True, "A deep ReLU net with Xavier init stalls."),
        (("relu", "he"), False, "A deep ReLU net with He init trains."),
        (("selu", "lecun"), False, "A deep SELU net with LeCun init trains."),
    )
    return [
        judged(
            claim,
            checks(*setting, want_stalled),
            rule=rule,
            measured=f"{_label(*setting)}: {counts(*setting)}",
        )
        for setting, want_stalled, claim in claims
        if setting in settings
    ]


EXPERIMENT = register(
    Experiment(
        name="init",
        question="Does a 30-layer ReLU net train whatever its initialisation?",
        judge=judge,
        claim="At depth 16-32 a ReLU net with Xavier init stalls while He init (and SELU with "
        "LeCun init) trains.",
        source="He et al. 2015, Delving Deep into Rectifiers (fig. 3); Klambauer et al. 2017; "
        "Hung-yi Lee, Tips for Training DNN",
        tricks=("new activation functions",),
        configure=configure,
        headline="mean_train_loss",
        run=run,
    )
)
