"""``depth``: deeper is not better for sigmoid networks; ReLU and SELU keep training.

Claim (Hung-yi Lee, "Tips for Training Deep Neural Networks"): with sigmoid activations,
training accuracy falls as layers are added and collapses around 9-10 layers on MNIST; with
ReLU deep networks train. The cause is the vanishing gradient: sigmoid's derivative is at most
1/4, so the gradient shrinks layer by layer toward the input.

Setup: one MLP per (activation, depth, seed), all trained with the same optimizer settings
(plain SGD unless the ``optimizer`` setting names another) and the same number of steps;
depth counts hidden layers. Each activation gets its recommended initialisation (Xavier for
sigmoid/tanh, He for ReLU, LeCun normal for SELU) unless the
``init`` setting says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import matplotlib.pyplot as plt
import torch

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
)
from dltricks.lab.training import divergence, train_as_configured
from dltricks.lab.verdicts import Verdict, judged
from dltricks.nn import MLP
from dltricks.palette import activation_colour

CHANCE_MARGIN = 0.15


@dataclass(frozen=True)
class DepthConfig(ExperimentConfig):
    """The settings of ``depth``; ``init`` ``auto`` gives each activation its recommended one."""

    experiment: ClassVar[str] = "depth"

    dataset: Annotated[str, DATASET]
    activations: Annotated[list[str], ListOf(ACTIVATION, unique=True)]
    depths: Annotated[list[int], ListOf(DEPTH, unique=True)]
    width: Annotated[int, WIDTH]
    init: Annotated[str, INIT]
    optimizer: Annotated[str, OPTIMIZER]
    lr: Annotated[float, LEARNING_RATE]
    batch_size: Annotated[int, BATCH_SIZE]
    epochs: Annotated[int, EPOCHS]
    seeds: Annotated[int, SEEDS]


def configure(quick: bool) -> DepthConfig:
    return DepthConfig(
        dataset="digits" if quick else "mnist1d",
        activations=["sigmoid", "relu", "tanh", "selu"],
        depths=list(range(1, 11)),
        width=64 if quick else 128,
        init="auto",
        optimizer="SGD",
        lr=0.1,
        batch_size=64,
        epochs=20 if quick else 30,
        seeds=2 if quick else 3,
    )


def _train_one(ctx: RunContext, activation: str, depth: int, seed: int) -> dict[str, Any]:
    cfg = ctx.config
    data = ctx.data(cfg["dataset"])
    generator = torch.Generator().manual_seed(seed)
    model = MLP(
        data.n_features,
        data.n_classes,
        cfg["width"],
        depth,
        activation,
        init=cfg["init"],
        generator=generator,
    )
    result = train_as_configured(ctx, model, data, seed)
    return {
        **divergence(result),
        "train_accuracy": result.final.train_accuracy,
        "test_accuracy": result.final.test_accuracy,
        "train_loss": result.final.train_loss,
        "curve_train_accuracy": [e.train_accuracy for e in result.history],
        "curve_train_loss": [e.train_loss for e in result.history],
    }


def collapse_depth(records: list[dict[str, Any]], activation: str, threshold: float) -> int | None:
    """The smallest depth whose mean training accuracy over seeds is below ``threshold``."""
    depths, means = _mean_by_depth(records, activation, "train_accuracy")
    return next((d for d, m in zip(depths, means, strict=True) if m < threshold), None)


def _mean_by_depth(
    records: list[dict[str, Any]], activation: str, key: str
) -> tuple[list[int], list[float]]:
    by_depth: dict[int, list[float]] = {}
    for r in records:
        if r["activation"] == activation:
            by_depth.setdefault(r["depth"], []).append(r[key])
    depths = sorted(by_depth)
    return depths, [sum(by_depth[d]) / len(by_depth[d]) for d in depths]


def _plot(ctx: RunContext, records: list[dict[str, Any]], chance: float) -> None:
    cfg = ctx.config
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, key, title in (
        (axes[0], "train_accuracy", "Training accuracy"),
        (axes[1], "test_accuracy", "Test accuracy"),
    ):
        for activation in cfg["activations"]:
            depths, means = _mean_by_depth(records, activation, key)
            colour = activation_colour(activation)
            ax.plot(depths, means, marker="o", color=colour, label=activation)
            points = [(r["depth"], r[key]) for r in records if r["activation"] == activation]
            ax.scatter(*zip(*points, strict=True), s=8, alpha=0.35, color=colour)
        ax.axhline(chance, color="grey", linestyle=":", label="chance")
        ax.set_xlabel("hidden layers (depth)")
        ax.set_title(title)
        ax.set_xticks(cfg["depths"])
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (mean over seeds; dots: single seeds)")
    axes[1].legend(title="activation")
    fig.suptitle(
        f"Deeper is not better for sigmoid: {cfg['dataset']}, width {cfg['width']}, "
        f"{cfg['optimizer']} lr {cfg['lr']}, {cfg['epochs']} epochs, {len(ctx.seeds)} seeds"
    )
    ctx.save_figure(fig, "depth_accuracy")
    plt.close(fig)


def run(ctx: RunContext) -> dict[str, Any]:
    cfg = ctx.config
    data = ctx.data(cfg["dataset"])
    ctx.progress.plan(len(cfg["activations"]) * len(cfg["depths"]) * len(ctx.seeds))
    records = []
    for activation in cfg["activations"]:
        for depth in cfg["depths"]:
            for seed in ctx.seeds:

                def train(a: str = activation, d: int = depth, s: int = seed) -> dict[str, Any]:
                    return _train_one(ctx, a, d, s)

                key = {"activation": activation, "depth": depth, "seed": seed}
                records.append(ctx.unit(key, train))
    chance = 1.0 / data.n_classes
    threshold = chance + CHANCE_MARGIN
    _plot(ctx, records, chance)
    collapse = {a: collapse_depth(records, a, threshold) for a in cfg["activations"]}
    parts = [
        f"{a} first falls below {threshold:.0%} training accuracy at depth {d}"
        if d is not None
        else f"{a} stays above {threshold:.0%} at every depth up to {max(cfg['depths'])}"
        for a, d in collapse.items()
    ]
    diverged = sum(1 for r in records if r["diverged"])
    if diverged:
        parts.append(f"{diverged} of {len(records)} runs diverged (loss not finite)")
    return {
        "mean_train_accuracy": sum(r["train_accuracy"] for r in records) / len(records),
        "diverged_runs": diverged,
        "chance_accuracy": chance,
        "collapse_threshold": threshold,
        "collapse_depth": collapse,
        "finding": "; ".join(parts) + ".",
    }


def judge(results: dict[str, Any]) -> list[Verdict]:
    """Rule: an activation "stops learning" at the first depth whose mean training accuracy
    over seeds is below chance + 15 points (``collapse_depth``); it "keeps training" if no
    depth tried is."""
    summary = results["summary"]
    collapse = summary["collapse_depth"]
    threshold = summary["collapse_threshold"]
    deepest = max(results["config"]["config"]["depths"])
    rule = (
        f"an activation stops learning at the first depth whose mean training accuracy is "
        f"below chance + {CHANCE_MARGIN:.0%} ({threshold:.0%})"
    )
    verdicts = []
    if "sigmoid" in collapse:
        depth = collapse["sigmoid"]
        verdicts.append(
            judged(
                "A sigmoid network stops learning as layers are added.",
                {"sigmoid": depth is not None},
                rule=rule,
                measured=f"sigmoid falls below {threshold:.0%} training accuracy at depth {depth}"
                if depth is not None
                else f"sigmoid stays above {threshold:.0%} up to depth {deepest}",
            )
        )
    others = {a: d is None for a, d in collapse.items() if a in ("relu", "selu")}
    if others:
        verdicts.append(
            judged(
                "ReLU and SELU networks keep training at every depth.",
                others,
                rule=rule,
                measured=f"{' and '.join(others)} stay above {threshold:.0%} up to depth {deepest}",
            )
        )
    return verdicts


EXPERIMENT = register(
    Experiment(
        name="depth",
        question="Is a deeper network a better one?",
        judge=judge,
        claim="Deeper is not better: sigmoid nets stop learning as depth grows; ReLU and SELU "
        "keep training.",
        source="Hung-yi Lee, Tips for Training DNN (MNIST demo); Glorot & Bengio 2010",
        tricks=("new activation functions",),
        configure=configure,
        headline="mean_train_accuracy",
        run=run,
    )
)
