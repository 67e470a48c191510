"""``saturation``: the top hidden layer of a deep sigmoid net saturates at 0 early in training.

Claim (Glorot & Bengio 2010, "Understanding the difficulty of training deep feedforward
neural networks", figure 2): in a sigmoid MLP with 4 hidden layers and the standard init
``W ~ U(-1/sqrt(n), 1/sqrt(n))`` (``n`` = fan-in, biases 0), the mean activation of the top
hidden layer is quickly driven toward 0, where ``sigma'(z) = sigma(z)(1 - sigma(z))`` is
small and learning slows down, while the lower layers' means stay around (and above) 0.5.
Their explanation: at first the output layer can only use its biases; the random, unhelpful
top-layer activations ``h`` are noise in ``softmax(b + V h)``, and the fastest way to reduce
the loss is to push ``h`` to 0. They saw the top layer desaturate slowly around epoch 100;
with the normalized ("Xavier") init ``U(+-sqrt(6 / (n_in + n_out)))`` the effect is weaker.

Setup: one MLP per (init, seed): ``depth`` sigmoid hidden layers of ``width`` units, trained
with plain SGD unless the ``optimizer`` setting names another (mini-batches of
``batch_size``, as the paper's 10). Init ``"torch"`` is torch's ``nn.Linear`` default
``U(+-1/sqrt(fan_in))`` for the weights, which is the paper's
standard init; biases are then set to 0 as in the paper. Every ``probe_every`` steps a fixed
probe set (the first ``probe_size`` test examples, 300 in the paper) goes through the net in
train mode without gradients, and :class:`dltricks.diagnose.ActivationStats` records each
hidden layer's mean and std over units and examples, and the fraction of outputs within
``saturation_eps`` of 0 or 1.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import torch
from matplotlib.figure import Figure
from torch import Tensor

from dltricks.diagnose import ActivationStats
from dltricks.lab.context import RunContext
from dltricks.lab.registry import Experiment, register
from dltricks.lab.settings import (
    BATCH_SIZE,
    DATASET,
    DEPTH,
    EPOCHS,
    INIT,
    LEARNING_RATE,
    OPTIMIZER,
    SEEDS,
    WIDTH,
    Choice,
    ExperimentConfig,
    Float,
    Int,
    ListOf,
)
from dltricks.lab.stats import finite_mean
from dltricks.lab.training import divergence, train_as_configured
from dltricks.lab.verdicts import Verdict, judged
from dltricks.nn import MLP
from dltricks.train import Callback, StepContext

INIT_NAMES = {
    "torch": "standard U(+-1/sqrt(n))",
    "xavier": "normalized U(+-sqrt(6/(n_in+n_out)))",
}


@dataclass(frozen=True)
class SaturationConfig(ExperimentConfig):
    """The settings of ``saturation``."""

    experiment: ClassVar[str] = "saturation"

    dataset: Annotated[str, DATASET]
    # Saturation (outputs near the ends of their range) is defined for bounded activations.
    activation: Annotated[str, Choice(("sigmoid", "tanh"))]
    # The top hidden layer is compared with the ones below it: at least two.
    depth: Annotated[int, Int(2, DEPTH.high)]
    width: Annotated[int, WIDTH]
    inits: Annotated[list[str], ListOf(INIT, unique=True)]
    optimizer: Annotated[str, OPTIMIZER]
    lr: Annotated[float, LEARNING_RATE]
    batch_size: Annotated[int, BATCH_SIZE]
    epochs: Annotated[int, EPOCHS]
    probe_every: Annotated[int, Int(1, 1_000_000)]
    probe_size: Annotated[int, Int(1, 100_000)]
    saturation_eps: Annotated[float, Float(0.0, 0.5, low_open=True, high_open=True)]
    seeds: Annotated[int, SEEDS]


def configure(quick: bool) -> SaturationConfig:
    return SaturationConfig(
        dataset="digits" if quick else "mnist1d",
        activation="sigmoid",
        depth=4,
        width=256 if quick else 1000,
        inits=["torch", "xavier"],
        optimizer="SGD",
        lr=0.1,
        batch_size=10,
        epochs=20,
        probe_every=26 if quick else 36,
        probe_size=300,
        saturation_eps=0.1,
        seeds=2,
    )


class _ActivationProbe(Callback):
    """Records per-layer activation statistics on a fixed probe batch every few steps."""

    def __init__(self, probe: Tensor, every: int, saturation_eps: float) -> None:
        self.probe = probe
        self.every = every
        self.saturation_eps = saturation_eps
        self.steps: list[int] = []
        self.mean: list[list[float]] = []
        self.std: list[list[float]] = []
        self.saturated: list[list[float]] = []

    def measure(self, model: torch.nn.Module, steps: int) -> None:
        stats = ActivationStats(model, saturation_eps=self.saturation_eps)
        with torch.no_grad(), stats:
            model(self.probe)
        self.steps.append(steps)
        self.mean.append([float(v) for v in stats.per_layer("mean").values() if v is not None])
        self.std.append([float(v) for v in stats.per_layer("std").values() if v is not None])
        self.saturated.append(
            [float(v) for v in stats.per_layer("saturated").values() if v is not None]
        )

    def on_step_end(self, ctx: StepContext) -> None:
        done = ctx.step + 1
        if done % self.every == 0:
            self.measure(ctx.model, done)


def _train_one(ctx: RunContext, init: str, seed: int) -> dict[str, Any]:
    cfg = ctx.config
    data = ctx.data(cfg["dataset"])
    generator = torch.Generator().manual_seed(seed)
    model = MLP(
        data.n_features,
        data.n_classes,
        cfg["width"],
        cfg["depth"],
        cfg["activation"],
        init=init,
        generator=generator,
    )
    # Glorot & Bengio initialise biases to 0; torch's default would draw them too.
    with torch.no_grad():
        for layer in model.linear_layers:
            if layer.bias is not None:
                layer.bias.zero_()
    model.to(data.x_train.device)
    probe = _ActivationProbe(
        data.x_test[: cfg["probe_size"]], cfg["probe_every"], cfg["saturation_eps"]
    )
    model.train()
    probe.measure(model, 0)
    result = train_as_configured(ctx, model, data, seed, callbacks=[probe])
    steps_per_epoch = result.steps // max(result.epochs_run, 1)
    return {
        **divergence(result),
        "steps_per_epoch": steps_per_epoch,
        "probe_epoch": [s / steps_per_epoch for s in probe.steps],
        "layer_mean": probe.mean,
        "layer_std": probe.std,
        "layer_saturated": probe.saturated,
        "train_accuracy": result.final.train_accuracy,
        "test_accuracy": result.final.test_accuracy,
        "curve_train_accuracy": [e.train_accuracy for e in result.history],
        "curve_train_loss": [e.train_loss for e in result.history],
    }


def layer_series(records: list[dict[str, Any]], init: str, key: str) -> list[list[float]]:
    """``[probe][layer]`` of ``key`` averaged over the seeds of ``init`` (over the finite
    values: a diverged run's probes are NaN, stored as None; NaN where none is finite)."""
    rows = [r[key] for r in records if r["init"] == init]
    return [
        [finite_mean([row[p][layer] for row in rows]) for layer in range(len(rows[0][p]))]
        for p in range(len(rows[0]))
    ]


def saturation_summary(records: list[dict[str, Any]], init: str) -> dict[str, Any]:
    """The top layer's lowest mean (and when), the lower layers' lowest, the final state."""
    mean = layer_series(records, init, "layer_mean")
    epochs = next(r["probe_epoch"] for r in records if r["init"] == init)
    saturated = [p[-1] for p in layer_series(records, init, "layer_saturated")]
    top = [p[-1] for p in mean]
    low = min(range(len(top)), key=top.__getitem__)
    most = max(range(len(saturated)), key=saturated.__getitem__)
    halved = next((e for e, m in zip(epochs, top, strict=True) if m < top[0] / 2), None)
    final_acc = [r["train_accuracy"] for r in records if r["init"] == init]
    return {
        "top_initial_mean": top[0],
        "top_halved_epoch": halved,
        "top_min_mean": top[low],
        "top_min_epoch": epochs[low],
        "top_final_mean": top[-1],
        "top_max_saturated": saturated[most],
        "top_max_saturated_epoch": epochs[most],
        "top_final_saturated": saturated[-1],
        "lower_layers_min_mean": min(min(p[:-1]) for p in mean),
        "lower_layers_max_mean": max(max(p[:-1]) for p in mean),
        "final_train_accuracy": sum(final_acc) / len(final_acc),
    }


def _plot(ctx: RunContext, records: list[dict[str, Any]]) -> None:
    cfg = ctx.config
    inits = cfg["inits"]
    fig = Figure(figsize=(5.6 * len(inits), 7.2))
    axes = fig.subplots(2, len(inits), sharex=True, squeeze=False)
    for col, init in enumerate(inits):
        epochs = next(r["probe_epoch"] for r in records if r["init"] == init)
        mean = layer_series(records, init, "layer_mean")
        std = layer_series(records, init, "layer_std")
        saturated = layer_series(records, init, "layer_saturated")
        ax, ax_sat = axes[0][col], axes[1][col]
        for layer in range(cfg["depth"]):
            m = [p[layer] for p in mean]
            s = [p[layer] for p in std]
            label = f"layer {layer + 1}" + (" (top)" if layer == cfg["depth"] - 1 else "")
            ax.plot(epochs, m, color=f"C{layer}", label=label)
            ax.fill_between(
                epochs,
                [a - b for a, b in zip(m, s, strict=True)],
                [a + b for a, b in zip(m, s, strict=True)],
                color=f"C{layer}",
                alpha=0.15,
                linewidth=0,
            )
            ax_sat.plot(epochs, [p[layer] for p in saturated], color=f"C{layer}", label=label)
        ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(f"init: {INIT_NAMES.get(init, init)}", fontsize=10)
        ax.set_ylabel("mean sigmoid output (band: +-1 std)")
        ax.grid(alpha=0.3)
        ax_sat.set_ylim(-0.02, 1.02)
        ax_sat.set_ylabel(f"fraction within {cfg['saturation_eps']} of 0 or 1")
        ax_sat.set_xlabel("epoch")
        ax_sat.grid(alpha=0.3)
    axes[1][0].legend(title="hidden layer", loc="upper left")
    fig.suptitle(
        f"Activations of a {cfg['depth']}-hidden-layer sigmoid MLP during training "
        f"(Glorot & Bengio 2010, fig. 2): {cfg['dataset']}, width {cfg['width']}, "
        f"{cfg['optimizer']} lr {cfg['lr']}, batch {cfg['batch_size']}\n"
        f"probe: {cfg['probe_size']} fixed test "
        f"examples; mean over {len(ctx.seeds)} seeds; biases initialised to 0",
        fontsize=10,
    )
    ctx.save_figure(fig, "saturation_activations")


def run(ctx: RunContext) -> dict[str, Any]:
    cfg = ctx.config
    ctx.progress.plan(len(cfg["inits"]) * len(ctx.seeds))
    records = [
        ctx.unit({"init": init, "seed": seed}, functools.partial(_train_one, ctx, init, seed))
        for init in cfg["inits"]
        for seed in ctx.seeds
    ]
    _plot(ctx, records)
    per_init = {init: saturation_summary(records, init) for init in cfg["inits"]}
    parts = []
    for init, s in per_init.items():
        halved = (
            f"halved by epoch {s['top_halved_epoch']:.1f}"
            if s["top_halved_epoch"] is not None
            else "never halved"
        )
        parts.append(
            f"with the {INIT_NAMES.get(init, init)} init the top hidden layer's mean activation "
            f"goes from {s['top_initial_mean']:.2f} ({halved}) to a lowest "
            f"{s['top_min_mean']:.3f} at epoch {s['top_min_epoch']:.1f} and ends at "
            f"{s['top_final_mean']:.3f}, with up to {s['top_max_saturated']:.0%} of its outputs "
            f"within {cfg['saturation_eps']} of 0 or 1 (epoch {s['top_max_saturated_epoch']:.1f}; "
            f"{s['top_final_saturated']:.0%} at the end), while the lower layers' means stay "
            f"between {s['lower_layers_min_mean']:.3f} and {s['lower_layers_max_mean']:.3f}; "
            f"final training accuracy {s['final_train_accuracy']:.2f}"
        )
    diverged = sum(1 for r in records if r["diverged"])
    if diverged:
        parts.append(f"{diverged} of {len(records)} runs diverged (loss not finite)")
    return {
        "per_init": per_init,
        "mean_train_accuracy": sum(r["train_accuracy"] for r in records) / len(records),
        "diverged_runs": diverged,
        "finding": "; ".join(parts) + ".",
    }


#: The lower layers' means "stay around 0.5" when none goes below this.
LOWER_FLOOR = 0.4


def judge(results: dict[str, Any]) -> list[Verdict]:
    """Rule, for the standard init (``torch``, else the first init run): the top layer
    "saturates toward 0" when its mean activation falls to half its initial value or less; the
    lower layers "stay around 0.5" when none of their means goes below 0.4."""
    per_init = results["summary"]["per_init"]
    init = "torch" if "torch" in per_init else next(iter(per_init))
    s = per_init[init]
    checks = {
        "top layer halves": s["top_halved_epoch"] is not None,
        "lower layers stay >= 0.4": s["lower_layers_min_mean"] >= LOWER_FLOOR,
    }
    return [
        judged(
            "With the standard init the top hidden layer of a deep sigmoid net saturates toward "
            "0 early in training while the lower layers stay around 0.5.",
            checks,
            rule="top layer's mean falls to half its initial value or less; no lower layer's "
            f"mean goes below {LOWER_FLOOR}",
            measured=f"{INIT_NAMES.get(init, init)} init: top mean {s['top_initial_mean']:.2f} "
            f"-> lowest {s['top_min_mean']:.3f} (epoch {s['top_min_epoch']:.1f}); lower layers "
            f"between {s['lower_layers_min_mean']:.2f} and {s['lower_layers_max_mean']:.2f}",
        )
    ]


EXPERIMENT = register(
    Experiment(
        name="saturation",
        question="Where do a deep sigmoid net's activations go as it trains?",
        judge=judge,
        claim="In a deep sigmoid net with the standard init the top hidden layer saturates "
        "toward 0 early in training while lower layers stay around 0.5.",
        source="Glorot & Bengio 2010, Understanding the difficulty of training deep "
        "feedforward neural networks (fig. 2); Hung-yi Lee, Tips for Training DNN",
        tricks=("new activation functions",),
        configure=configure,
        headline="mean_train_accuracy",
        run=run,
    )
)
