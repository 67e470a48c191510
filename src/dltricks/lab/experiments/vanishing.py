"""``vanishing``: sigmoid's gradient vanishes toward the input; ReLU (He) and SELU keep it.

Claim (Hung-yi Lee, "Tips for Training Deep Neural Networks"; Glorot & Bengio 2010): in a
deep sigmoid network the gradient ``dL/dW_l`` shrinks layer by layer from the output toward
the input, so the first layers barely learn while the last ones already converge. Back-prop
multiplies the signal by ``W_l^T diag(sigma'(z_l))`` once per layer and ``sigma' <= 1/4``,
so with weights of unit gain the norm falls by about 4x per layer: ``~4^-L`` after ``L``
layers. ReLU with He init (``Var W = 2 / fan_in``, He et al. 2015) and SELU with LeCun init
(``Var W = 1 / fan_in``, Klambauer et al. 2017) keep ``E[z^2]`` constant through depth, so
the first/last ratio stays near 1; SELU also keeps activations near mean 0, variance 1.

Setup: one MLP of ``depth`` hidden layers per (activation, seed), each activation with its
recommended init (Xavier for sigmoid/tanh, He for ReLU, LeCun normal for SELU). Gradient
norms ``||dL/dW_l||`` of every Linear layer (hidden layers, then the output layer) are
measured with :class:`dltricks.diagnose.GradientNorms` on one full-batch backward pass over
the training split (train mode, loss = mean cross-entropy), once at initialisation (stage
``"init"``) and once after training for ``epochs`` epochs with plain SGD, or the optimizer the
``optimizer`` setting names (stage
``"trained"``). The vanishing ratio is the first Linear layer's norm over the last one's.
The same forward pass records each hidden activation's mean and std
(:class:`dltricks.diagnose.ActivationStats`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import torch
import torch.nn.functional as F  # noqa: N812 (torch convention)
from matplotlib.figure import Figure

from dltricks.data import SplitDataset
from dltricks.diagnose import ActivationStats, GradientNorms
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
from dltricks.lab.stats import finite_mean
from dltricks.lab.training import divergence, train_as_configured
from dltricks.lab.verdicts import Verdict, finite, judged
from dltricks.nn import MLP
from dltricks.palette import activation_colour

STAGES: tuple[str, ...] = ("init", "trained")


@dataclass(frozen=True)
class VanishingConfig(ExperimentConfig):
    """The settings of ``vanishing``."""

    experiment: ClassVar[str] = "vanishing"

    dataset: Annotated[str, DATASET]
    activations: Annotated[list[str], ListOf(ACTIVATION, unique=True)]
    depth: Annotated[int, DEPTH]
    width: Annotated[int, WIDTH]
    init: Annotated[str, INIT]
    optimizer: Annotated[str, OPTIMIZER]
    lr: Annotated[float, LEARNING_RATE]
    batch_size: Annotated[int, BATCH_SIZE]
    epochs: Annotated[int, EPOCHS]
    seeds: Annotated[int, SEEDS]


def configure(quick: bool) -> VanishingConfig:
    return VanishingConfig(
        dataset="digits" if quick else "mnist1d",
        activations=["sigmoid", "tanh", "relu", "selu"],
        depth=10,
        width=64 if quick else 128,
        init="auto",
        optimizer="SGD",
        lr=0.1,
        batch_size=64,
        epochs=10 if quick else 20,
        seeds=2 if quick else 3,
    )


def _build(ctx: RunContext, data: SplitDataset, activation: str, seed: int) -> MLP:
    cfg = ctx.config
    generator = torch.Generator().manual_seed(seed)
    return MLP(
        data.n_features,
        data.n_classes,
        cfg["width"],
        cfg["depth"],
        activation,
        init=cfg["init"],
        generator=generator,
    )


def _probe(model: MLP, data: SplitDataset) -> dict[str, Any]:
    """Per-layer gradient norms and activation statistics of one full-batch pass."""
    model.train()
    # GradientNorms watches the Linear layers (hidden ones, then the output layer), which
    # hold every weight of these MLPs.
    with GradientNorms(model) as grads, ActivationStats(model) as acts:
        model.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(data.x_train), data.y_train)
        loss.backward()
    model.zero_grad(set_to_none=True)
    norms = list(grads.per_layer("weight").values())
    return {
        "loss": float(loss.detach()),
        "grad_norms": norms,
        "vanishing_ratio": grads.vanishing_ratio("weight"),
        "activation_mean": list(acts.per_layer("mean").values()),
        "activation_std": list(acts.per_layer("std").values()),
    }


def _unit(ctx: RunContext, activation: str, seed: int, stage: str) -> dict[str, Any]:
    cfg = ctx.config
    data = ctx.data(cfg["dataset"])
    model = _build(ctx, data, activation, seed)
    extra: dict[str, Any] = {"steps": 0}
    if stage == "trained":
        result = train_as_configured(ctx, model, data, seed)
        extra = {
            **divergence(result),
            "steps": result.steps,
            "train_accuracy": result.final.train_accuracy,
            "test_accuracy": result.final.test_accuracy,
            "curve_train_loss": [e.train_loss for e in result.history],
        }
    model.to(data.x_train.device)
    return {**_probe(model, data), **extra}


def geometric_mean(values: list[float | None]) -> float:
    """``exp(mean(log v))``: the average of ratios spanning orders of magnitude, over the
    positive finite values (a diverged run's are NaN, stored as None)."""
    positive = [v for v in values if v is not None and v > 0.0 and math.isfinite(v)]
    if not positive:
        return float("nan")
    return math.exp(sum(math.log(v) for v in positive) / len(positive))


def mean_ratio(records: list[dict[str, Any]], activation: str, stage: str) -> float:
    """Geometric mean over seeds of the first/last gradient-norm ratio."""
    return geometric_mean(
        [
            r["vanishing_ratio"]
            for r in records
            if r["activation"] == activation and r["stage"] == stage
        ]
    )


def _plot_gradients(ctx: RunContext, records: list[dict[str, Any]], steps: int) -> None:
    cfg = ctx.config
    fig = Figure(figsize=(11.5, 4.4))
    axes = fig.subplots(1, 2, sharey=True)
    titles = {"init": "at initialisation", "trained": f"after {steps} {cfg['optimizer']} steps"}
    labels = _legend_labels(cfg)
    for ax, stage in zip(axes, STAGES, strict=True):
        for activation in cfg["activations"]:
            rows = [
                r["grad_norms"]
                for r in records
                if r["activation"] == activation and r["stage"] == stage
            ]
            layers = list(range(1, len(rows[0]) + 1))
            means = [geometric_mean([row[j] for row in rows]) for j in range(len(layers))]
            ax.plot(
                layers,
                means,
                marker="o",
                color=activation_colour(activation),
                label=labels[activation],
            )
            for row in rows:
                ax.plot(layers, row, color=activation_colour(activation), alpha=0.25, linewidth=0.8)
        ax.set_yscale("log")
        ax.set_xticks(layers)
        ax.set_xticklabels([str(x) for x in layers[:-1]] + ["out"])
        ax.set_xlabel("Linear layer (1 = input side, out = output layer)")
        ax.set_title(titles[stage])
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("||dL/dW|| (full-batch; line: geometric mean, thin: seeds)")
    axes[1].legend(title="activation (init)")
    fig.suptitle(
        f"Per-layer gradient norms, {cfg['depth']}-hidden-layer MLP, width {cfg['width']}, "
        f"{cfg['dataset']}; {cfg['optimizer']} lr {cfg['lr']}, batch {cfg['batch_size']}, "
        f"{len(ctx.seeds)} seeds",
        fontsize=10,
    )
    ctx.save_figure(fig, "vanishing_gradients")


def _legend_labels(cfg: dict[str, Any]) -> dict[str, str]:
    """Activation -> "name (init)" for legends."""
    if cfg["init"] != "auto":
        return {a: f"{a} ({cfg['init']})" for a in cfg["activations"]}
    names = {"sigmoid": "Xavier", "tanh": "Xavier", "relu": "He", "selu": "LeCun"}
    return {a: f"{a} ({names.get(a, 'auto')})" for a in cfg["activations"]}


def _plot_activations(ctx: RunContext, records: list[dict[str, Any]]) -> None:
    cfg = ctx.config
    labels = _legend_labels(cfg)
    fig = Figure(figsize=(11.5, 4.2))
    axes = fig.subplots(1, 2, sharex=True)
    for activation in cfg["activations"]:
        rows = [r for r in records if r["activation"] == activation and r["stage"] == "init"]
        layers = list(range(1, len(rows[0]["activation_mean"]) + 1))
        for ax, key in zip(axes, ("activation_mean", "activation_std"), strict=True):
            values = [sum(r[key][j] for r in rows) / len(rows) for j in range(len(layers))]
            ax.plot(
                layers,
                values,
                marker="o",
                color=activation_colour(activation),
                label=labels[activation],
            )
    axes[0].set_ylabel("mean of the activation's output")
    axes[1].set_ylabel("std of the activation's output")
    for ax in axes:
        ax.axhline(0.0 if ax is axes[0] else 1.0, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("hidden layer (1 = input side)")
        ax.set_xticks(layers)
        ax.grid(alpha=0.3)
    axes[0].set_title("mean (dotted: SELU's fixed point 0)")
    axes[1].set_title("std (dotted: SELU's fixed point 1)")
    axes[1].legend(title="activation (init)")
    fig.suptitle(
        f"Hidden activations at initialisation (full training batch of {cfg['dataset']}, "
        f"standardised inputs), mean over {len(ctx.seeds)} seeds",
        fontsize=10,
    )
    ctx.save_figure(fig, "vanishing_activations")


def run(ctx: RunContext) -> dict[str, Any]:
    cfg = ctx.config
    ctx.progress.plan(len(cfg["activations"]) * len(ctx.seeds) * len(STAGES))
    records = [
        ctx.unit(
            {"activation": activation, "seed": seed, "stage": stage},
            functools.partial(_unit, ctx, activation, seed, stage),
        )
        for activation in cfg["activations"]
        for seed in ctx.seeds
        for stage in STAGES
    ]
    steps = max(r["steps"] for r in records)
    _plot_gradients(ctx, records, steps)
    _plot_activations(ctx, records)

    ratios = {
        stage: {a: mean_ratio(records, a, stage) for a in cfg["activations"]} for stage in STAGES
    }
    # Self-normalisation: the last hidden layer's output statistics at init.
    last_stats = {
        a: {
            "mean": finite_mean([r["activation_mean"][-1] for r in records if _is(r, a, "init")]),
            "std": finite_mean([r["activation_std"][-1] for r in records if _is(r, a, "init")]),
        }
        for a in cfg["activations"]
    }
    parts = []
    for stage in STAGES:
        when = "at init" if stage == "init" else f"after {steps} steps"
        listed = ", ".join(f"{a} {v:.1e}" for a, v in ratios[stage].items())
        parts.append(f"first/last-layer gradient ratio {when}: {listed}")
    finding = "; ".join(parts)
    if "sigmoid" in ratios["init"] and "relu" in ratios["init"]:
        gap = math.log10(ratios["init"]["relu"] / ratios["init"]["sigmoid"])
        finding += (
            f"; sigmoid's gradient at the first layer is {gap:.1f} orders of magnitude "
            "smaller (relative to the last layer) than ReLU-He's at init"
        )
    if "selu" in last_stats:
        s = last_stats["selu"]
        finding += (
            f"; SELU's last hidden layer at init has mean {s['mean']:.2f} and std {s['std']:.2f}"
        )
    trained = [r for r in records if r["stage"] == "trained"]
    diverged = sum(1 for r in trained if r["diverged"])
    if diverged:
        finding += f"; {diverged} of {len(trained)} training runs diverged (loss not finite)"
    return {
        "mean_train_accuracy": sum(r["train_accuracy"] for r in trained) / max(len(trained), 1),
        "diverged_runs": diverged,
        "vanishing_ratio": ratios,
        "last_hidden_activation": last_stats,
        "steps": steps,
        "finding": finding + ".",
    }


def _is(record: dict[str, Any], activation: str, stage: str) -> bool:
    return bool(record["activation"] == activation and record["stage"] == stage)


#: A first/last-layer gradient ratio below this has vanished (an order of magnitude).
VANISHED = 0.1


def judge(results: dict[str, Any]) -> list[Verdict]:
    """Rule, at initialisation (before training changes the weights): the gradient has
    vanished when the first/last-layer norm ratio is below 0.1; it is level when the ratio is
    within a factor 10 of 1."""
    ratios = results["summary"]["vanishing_ratio"]["init"]
    rule = (
        "at init, first/last-layer gradient-norm ratio < 0.1: vanished; between 0.1 and 10: level"
    )
    verdicts = []
    if "sigmoid" in ratios:
        ratio = ratios["sigmoid"]
        verdicts.append(
            judged(
                "In a deep sigmoid net the gradient vanishes toward the input.",
                {"sigmoid": finite(ratio) and ratio < VANISHED},
                rule=rule,
                measured=f"sigmoid's first/last-layer ratio at init is {ratio:.1e}"
                if finite(ratio)
                else "sigmoid's ratio is not finite",
            )
        )
    level = {
        a: finite(r) and VANISHED <= r <= 1 / VANISHED
        for a, r in ratios.items()
        if a in ("relu", "selu")
    }
    if level:
        verdicts.append(
            judged(
                "ReLU with He init and SELU with LeCun init keep per-layer gradient norms level.",
                level,
                rule=rule,
                measured="ratios at init: "
                + ", ".join(f"{a} {ratios[a]:.2g}" for a in level if finite(ratios[a])),
            )
        )
    return verdicts


EXPERIMENT = register(
    Experiment(
        name="vanishing",
        question="Why does a deep sigmoid net stop learning?",
        judge=judge,
        claim="Gradients vanish toward the input of a deep sigmoid net; ReLU with He init and "
        "SELU with LeCun init keep per-layer gradient norms level.",
        source="Hung-yi Lee, Tips for Training DNN (vanishing gradient); Glorot & Bengio 2010; "
        "He et al. 2015; Klambauer et al. 2017",
        tricks=("new activation functions",),
        configure=configure,
        headline="mean_train_accuracy",
        run=run,
    )
)
