"""``activations``: the activation zoo at depth 10; everything but sigmoid trains.

Claim (Hung-yi Lee, "Tips for Training Deep Neural Networks", "new activation function"):
at depth 10 a sigmoid MLP does not train (its gradient vanishes, ``sigma' <= 1/4`` per
layer), while ReLU and its variants (Leaky ReLU, Parametric ReLU, ELU, SELU, GELU, SiLU) and
Maxout (a learned piecewise-linear activation of which ReLU is a special case) train to high
accuracy, each with its recommended init: Xavier for sigmoid/tanh, He for the ReLU family
(slope-aware gain ``sqrt(2 / (1 + a^2))`` for leaky/parametric ReLU, He et al. 2015),
LeCun normal for SELU (Klambauer et al. 2017), He with the maxout gain for Maxout
(Goodfellow et al. 2013). PReLU learns its negative slope ``a`` (one per layer here, starting
at 0.25 as in He et al.); the experiment reports where the slopes go.

Setup: one MLP per (activation, seed), ``depth`` hidden layers of ``width`` units (Maxout:
``maxout_k`` pieces per unit), all trained with the same optimizer (plain SGD unless the
``optimizer`` setting names another) for the same epochs; no weight decay (which would pull
PReLU slopes toward 0). Reported: final training and test
accuracy, per-epoch curves, the first epoch with training accuracy >= ``fast_threshold``,
and PReLU's per-layer slopes after every epoch.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import torch
from matplotlib.figure import Figure

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
    Float,
    Int,
    ListOf,
)
from dltricks.lab.stats import finite_mean
from dltricks.lab.training import divergence, train_as_configured
from dltricks.lab.verdicts import Verdict, finite, judged
from dltricks.nn import MLP
from dltricks.palette import activation_colour
from dltricks.train import Callback, EpochContext

ZOO: tuple[str, ...] = (
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "prelu",
    "elu",
    "selu",
    "gelu",
    "silu",
    "maxout",
)


@dataclass(frozen=True)
class ActivationsConfig(ExperimentConfig):
    """The settings of ``activations``."""

    experiment: ClassVar[str] = "activations"

    dataset: Annotated[str, DATASET]
    activations: Annotated[list[str], ListOf(ACTIVATION, unique=True)]
    depth: Annotated[int, DEPTH]
    width: Annotated[int, WIDTH]
    maxout_k: Annotated[int, Int(2, 16)]
    init: Annotated[str, INIT]
    optimizer: Annotated[str, OPTIMIZER]
    lr: Annotated[float, LEARNING_RATE]
    batch_size: Annotated[int, BATCH_SIZE]
    epochs: Annotated[int, EPOCHS]
    fast_threshold: Annotated[float, Float(0.0, 1.0)]
    seeds: Annotated[int, SEEDS]


def configure(quick: bool) -> ActivationsConfig:
    return ActivationsConfig(
        dataset="digits" if quick else "mnist1d",
        activations=list(ZOO),
        depth=10,
        width=64 if quick else 128,
        maxout_k=2,
        init="auto",
        optimizer="SGD",
        lr=0.1,
        batch_size=64,
        epochs=15 if quick else 30,
        fast_threshold=0.95,
        seeds=3,
    )


class _SlopeRecorder(Callback):
    """PReLU slopes (mean per layer) after every epoch."""

    def __init__(self, model: MLP) -> None:
        self.modules = [m for m in model.activations if isinstance(m, torch.nn.PReLU)]
        self.history: list[list[float]] = [self._read()]

    def _read(self) -> list[float]:
        return [float(m.weight.detach().mean()) for m in self.modules]

    def on_epoch_end(self, ctx: EpochContext) -> None:
        self.history.append(self._read())


def _train_one(ctx: RunContext, activation: str, seed: int) -> dict[str, Any]:
    cfg = ctx.config
    data = ctx.data(cfg["dataset"])
    generator = torch.Generator().manual_seed(seed)
    model = MLP(
        data.n_features,
        data.n_classes,
        cfg["width"],
        cfg["depth"],
        activation,
        init=cfg["init"],
        maxout_k=cfg["maxout_k"],
        generator=generator,
    )
    slopes = _SlopeRecorder(model)
    result = train_as_configured(
        ctx, model, data, seed, callbacks=[slopes] if slopes.modules else []
    )
    curve = [e.train_accuracy for e in result.history]
    fast = next(
        (e.epoch for e in result.history if e.train_accuracy >= cfg["fast_threshold"]), None
    )
    record: dict[str, Any] = {
        **divergence(result),
        "train_accuracy": result.final.train_accuracy,
        "test_accuracy": result.final.test_accuracy,
        "train_loss": result.final.train_loss,
        "epochs_to_threshold": fast,
        "stop_reason": result.stop_reason,
        "curve_train_accuracy": curve,
        "curve_test_accuracy": [e.test_accuracy for e in result.history],
        "curve_train_loss": [e.train_loss for e in result.history],
    }
    if slopes.modules:
        record["prelu_slopes"] = slopes.history[-1]
        record["curve_prelu_slopes"] = slopes.history
    return record


def _by_activation(records: list[dict[str, Any]], activation: str) -> list[dict[str, Any]]:
    return [r for r in records if r["activation"] == activation]


def _diverged(rows: list[dict[str, Any]]) -> int:
    return sum(1 for r in rows if r["stop_reason"] == "diverged")


def _plot_accuracy(ctx: RunContext, records: list[dict[str, Any]], chance: float) -> None:
    cfg = ctx.config
    names = cfg["activations"]
    fig = Figure(figsize=(13, 4.8))
    ax_bar, ax_curve = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.25, 1]})
    width = 0.38
    for offset, key, label, color in (
        (-width / 2, "train_accuracy", "train", "C0"),
        (width / 2, "test_accuracy", "test", "C1"),
    ):
        for i, name in enumerate(names):
            values = [r[key] for r in _by_activation(records, name)]
            mean = finite_mean(values)
            ax_bar.bar(
                i + offset,
                mean,
                width,
                color=color,
                alpha=0.75,
                # Rounding can put the mean a hair outside [min, max] when the seeds agree.
                yerr=[[max(mean - min(values), 0.0)], [max(max(values) - mean, 0.0)]],
                capsize=2,
                label=label if i == 0 else None,
            )
            ax_bar.scatter([i + offset] * len(values), values, s=6, color="black", zorder=3)
    ax_bar.axhline(chance, color="grey", linestyle=":", label="chance")
    ax_bar.set_xticks(range(len(names)))
    ax_bar.set_xticklabels(names, rotation=35, ha="right")
    ax_bar.set_ylim(0, 1.05)
    ax_bar.set_ylabel(f"final accuracy (bar: mean; whiskers: min-max of {len(ctx.seeds)} seeds)")
    ax_bar.set_title(f"after {cfg['epochs']} epochs")
    ax_bar.legend(loc="lower right", fontsize=8)
    ax_bar.grid(alpha=0.3, axis="y")
    for i, name in enumerate(names):
        rows = _by_activation(records, name)
        # A diverged run stops early: average the seeds still running at each epoch.
        length = max(len(r["curve_train_accuracy"]) for r in rows)
        curve = [
            finite_mean(
                [r["curve_train_accuracy"][e] for r in rows if e < len(r["curve_train_accuracy"])]
            )
            for e in range(length)
        ]
        diverged = _diverged(rows)
        label = f"{name} ({diverged} diverged)" if diverged else name
        # Past ten lines colours get hard to tell apart: dash the eleventh onward.
        style = "--" if i >= 10 else "-"
        ax_curve.plot(
            range(1, length + 1), curve, style, color=activation_colour(name), label=label
        )
    ax_curve.axhline(chance, color="grey", linestyle=":")
    ax_curve.set_xlabel("epoch")
    ax_curve.set_ylabel("training accuracy (mean over seeds)")
    ax_curve.set_ylim(0, 1.05)
    ax_curve.set_title("training curves")
    ax_curve.legend(fontsize=7, ncol=2, loc="lower right")
    ax_curve.grid(alpha=0.3)
    fig.suptitle(
        f"Activation zoo at depth {cfg['depth']}: {cfg['dataset']}, width {cfg['width']}, "
        f"recommended init each, {cfg['optimizer']} lr {cfg['lr']}, batch {cfg['batch_size']}, "
        f"{len(ctx.seeds)} seeds",
        fontsize=10,
    )
    ctx.save_figure(fig, "activations_accuracy")


def _plot_prelu(ctx: RunContext, rows: list[dict[str, Any]]) -> None:
    cfg = ctx.config
    fig = Figure(figsize=(11, 4.0))
    ax_layer, ax_epoch = fig.subplots(1, 2)
    layers = list(range(1, len(rows[0]["prelu_slopes"]) + 1))
    for r in rows:
        ax_layer.scatter(layers, r["prelu_slopes"], s=12, alpha=0.6, color="C4")
    ax_layer.plot(
        layers,
        [finite_mean([r["prelu_slopes"][j] for r in rows]) for j in range(len(layers))],
        marker="o",
        color="C4",
        label="learned slope (dots: seeds)",
    )
    ax_layer.axhline(0.25, color="grey", linestyle=":", label="initial slope 0.25")
    ax_layer.set_xticks(layers)
    ax_layer.set_xlabel("hidden layer (1 = input side)")
    ax_layer.set_ylabel("PReLU negative slope a")
    ax_layer.set_title(f"after {cfg['epochs']} epochs")
    ax_layer.legend(fontsize=8)
    ax_layer.grid(alpha=0.3)
    epochs = list(range(len(rows[0]["curve_prelu_slopes"])))
    for j in range(len(layers)):
        ax_epoch.plot(
            epochs,
            [finite_mean([r["curve_prelu_slopes"][e][j] for r in rows]) for e in epochs],
            color=f"C{j % 10}",
            label=f"layer {j + 1}",
        )
    ax_epoch.set_xlabel("epoch (0 = init)")
    ax_epoch.set_ylabel("slope (mean over seeds)")
    ax_epoch.set_title("slopes during training")
    ax_epoch.legend(fontsize=7, ncol=2)
    ax_epoch.grid(alpha=0.3)
    fig.suptitle(
        f"PReLU's learned negative slopes (one per layer), depth {cfg['depth']}, "
        f"{cfg['dataset']}, {len(rows)} seeds, no weight decay",
        fontsize=10,
    )
    ctx.save_figure(fig, "activations_prelu_slopes")


def run(ctx: RunContext) -> dict[str, Any]:
    cfg = ctx.config
    data = ctx.data(cfg["dataset"])
    ctx.progress.plan(len(cfg["activations"]) * len(ctx.seeds))
    records = [
        ctx.unit(
            {"activation": activation, "seed": seed},
            functools.partial(_train_one, ctx, activation, seed),
        )
        for activation in cfg["activations"]
        for seed in ctx.seeds
    ]
    chance = 1.0 / data.n_classes
    _plot_accuracy(ctx, records, chance)
    per_activation: dict[str, dict[str, Any]] = {}
    for name in cfg["activations"]:
        rows = _by_activation(records, name)
        fast = [r["epochs_to_threshold"] for r in rows]
        per_activation[name] = {
            "train_accuracy": finite_mean([r["train_accuracy"] for r in rows]),
            "test_accuracy": finite_mean([r["test_accuracy"] for r in rows]),
            "seeds_reaching_threshold": sum(1 for f in fast if f is not None),
            "diverged_seeds": _diverged(rows),
            "mean_epochs_to_threshold": finite_mean([f for f in fast if f is not None]),
        }
    ranked = sorted(per_activation, key=lambda a: -per_activation[a]["test_accuracy"])
    parts = [
        f"test accuracy after {cfg['epochs']} epochs, best first: "
        + ", ".join(f"{a} {per_activation[a]['test_accuracy']:.3f}" for a in ranked)
    ]
    if "sigmoid" in per_activation:
        others = [a for a in per_activation if a != "sigmoid"]
        if others:
            worst = min(others, key=lambda a: per_activation[a]["train_accuracy"])
            parts.append(
                f"sigmoid's training accuracy is {per_activation['sigmoid']['train_accuracy']:.3f}"
                f" (chance {chance:.2f}) while the lowest other is {worst}'s "
                f"{per_activation[worst]['train_accuracy']:.3f}"
            )
    diverged = {a: s["diverged_seeds"] for a, s in per_activation.items() if s["diverged_seeds"]}
    if diverged:
        parts.append(
            "diverged (loss not finite): "
            + ", ".join(f"{a} {n}/{len(ctx.seeds)} seeds" for a, n in diverged.items())
        )
    reached = [a for a in per_activation if per_activation[a]["seeds_reaching_threshold"]]
    if reached:
        fastest = min(reached, key=lambda a: per_activation[a]["mean_epochs_to_threshold"])
        parts.append(
            f"fastest to {cfg['fast_threshold']:.0%} training accuracy: {fastest} "
            f"({per_activation[fastest]['mean_epochs_to_threshold']:.1f} epochs on average)"
        )
    summary: dict[str, Any] = {
        "per_activation": per_activation,
        "mean_test_accuracy": finite_mean([r["test_accuracy"] for r in records]),
        "diverged_runs": sum(1 for r in records if r["diverged"]),
        "chance_accuracy": chance,
    }
    prelu = [r for r in records if "prelu_slopes" in r]
    if prelu:
        _plot_prelu(ctx, prelu)
        layer_means = [
            finite_mean([r["prelu_slopes"][j] for r in prelu])
            for j in range(len(prelu[0]["prelu_slopes"]))
        ]
        summary["prelu_layer_slopes"] = layer_means
        parts.append(
            "PReLU's learned slopes (init 0.25) end between "
            f"{min(layer_means):.2f} and {max(layer_means):.2f} across layers "
            f"(mean {finite_mean(layer_means):.2f})"
        )
    summary["finding"] = "; ".join(parts) + "."
    return summary


#: Rules of :func:`judge`: "does not train" is a mean training accuracy below chance + 15
#: points; "trains" is one of at least 90%; a learned slope has moved more than 0.05 from 0.25.
NO_TRAINING_MARGIN = 0.15
TRAINS = 0.9
SLOPE_MOVED = 0.05
NOT_IN_CLAIM = ("sigmoid", "tanh", "identity")


def judge(results: dict[str, Any]) -> list[Verdict]:
    """Rules: sigmoid "does not train" when its mean training accuracy is below chance + 15
    points; every other activation of the claim "trains" when its mean training accuracy is at
    least 90%; PReLU "learns its slopes" when a layer's mean slope ends more than 0.05 from its
    initial 0.25."""
    summary = results["summary"]
    per = summary["per_activation"]
    chance = summary["chance_accuracy"]
    verdicts = []
    if "sigmoid" in per:
        acc = per["sigmoid"]["train_accuracy"]
        verdicts.append(
            judged(
                "A 10-layer sigmoid network does not train.",
                {"sigmoid": finite(acc) and acc < chance + NO_TRAINING_MARGIN},
                rule=f"mean training accuracy below chance + {NO_TRAINING_MARGIN:.0%}",
                measured=f"sigmoid's training accuracy {acc:.2f} (chance {chance:.2f})",
            )
        )
    others = {a: s["train_accuracy"] for a, s in per.items() if a not in NOT_IN_CLAIM}
    if others:
        lowest = min(others, key=lambda a: others[a] if finite(others[a]) else -1.0)
        verdicts.append(
            judged(
                "The ReLU family, SELU, GELU, SiLU and Maxout train a 10-layer network.",
                {a: finite(v) and v >= TRAINS for a, v in others.items()},
                rule=f"mean training accuracy of at least {TRAINS:.0%}",
                measured=f"lowest training accuracy among them: {lowest} {others[lowest]:.3f}",
            )
        )
    slopes = summary.get("prelu_layer_slopes")
    if slopes:
        moved = max(abs(s - 0.25) for s in slopes)
        verdicts.append(
            judged(
                "PReLU learns its own negative slopes.",
                {"prelu": moved > SLOPE_MOVED},
                rule=f"a layer's mean slope ends more than {SLOPE_MOVED} from its initial 0.25",
                measured=f"layer slopes end between {min(slopes):.2f} and {max(slopes):.2f}",
            )
        )
    return verdicts


EXPERIMENT = register(
    Experiment(
        name="activations",
        question="Which activation functions train a 10-layer network?",
        judge=judge,
        claim="At depth 10 sigmoid does not train while the ReLU family, SELU, GELU, SiLU and "
        "Maxout do; PReLU learns its own negative slopes.",
        source="Hung-yi Lee, Tips for Training DNN (new activation functions); He et al. 2015; "
        "Klambauer et al. 2017; Goodfellow et al. 2013; Hendrycks & Gimpel 2016",
        tricks=("new activation functions",),
        configure=configure,
        headline="mean_test_accuracy",
        run=run,
    )
)
