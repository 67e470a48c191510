"""``optimizers``: which optimizer wins once every learning rate is tuned fairly?

Claim (Hung-yi Lee, "Tips for Training Deep Neural Networks"; Kingma & Ba 2015, section 6):
Adam ("RMSProp + Momentum") converges fast. Kingma & Ba report, with each optimizer's learning
rate tuned on a dense grid: on logistic regression (MNIST) Adam matches SGD with Nesterov
momentum and beats AdaGrad; on an MLP with dropout Adam beats AdaGrad, RMSProp, SGD-Nesterov
and AdaDelta. Small-scale reproductions do not always show Adam winning; this experiment
reports what it measures, including where Adam does not win, and how robust each optimizer
is to its learning rate.

Setup (the protocol of :func:`dltricks.lab.compare.compare_optimizers`): two models, logistic
regression (one ``nn.Linear``) and an MLP (ReLU, dropout after each hidden layer); fourteen
optimizers of :mod:`dltricks.optim` with torch's defaults apart from the learning rate
(momentum 0.9; AdamW's weight decay 0.01): the nine of the lecture's story, three of Adam's
descendants, RAdam (Liu et al. 2020), AdaBelief (Zhuang et al. 2020, pytorch-optimizer's
defaults) and Schedule-Free AdamW (Defazio et al. 2024, schedulefree's defaults, evaluated in
its eval mode, at its averaged weights), Adafactor (Shazeer & Stern 2018, torch's defaults:
factored second moment, steps relative to the parameters' scale) and Muon+AdamW (Jordan et al.
2024; Liu et al. 2025): Muon for the hidden weight matrices, AdamW for the rest, as one
optimizer built with :func:`~dltricks.optim.partition` (see :func:`muon_adamw`). Muon+AdamW
takes part only on a model with a hidden matrix (not logistic regression, whose only matrix is
the output layer: there it would be AdamW under another name). For a seed, every optimizer
starts from the same initial weights. Each optimizer's learning rate is tuned on a half-decade
grid (``grids``) by the final *validation* loss after the training budget (tuning runs get the
data without its test split), on the first ``tune_seeds`` seeds; at the chosen rate it then
trains once per seed, and those runs report training-loss curves and test accuracy. A diverged
run scores an infinite loss. Robustness: the width in decades of the learning-rate interval
whose validation loss is within ``tolerance`` (10%) of the best (see
:func:`dltricks.lab.compare.lr_width`).

Data: digits (quick), MNIST-1D (full), real MNIST for a full run with ``--data-dir`` (much
slower: shorten it with ``--set epochs=...``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import matplotlib.pyplot as plt
import torch
from torch import nn

from dltricks.data import SplitDataset
from dltricks.lab.compare import Comparison, OptimizerSpec, compare_optimizers, half_decades
from dltricks.lab.context import RunContext
from dltricks.lab.registry import Experiment, register
from dltricks.lab.settings import (
    BATCH_SIZE,
    DATASET,
    DEPTH,
    EPOCHS,
    FRACTION,
    LEARNING_RATE,
    SEEDS,
    WIDTH,
    Choice,
    ExperimentConfig,
    Float,
    ListOf,
    MapOf,
    SettingError,
)
from dltricks.lab.verdicts import Verdict, finite, judged
from dltricks.nn import MLP
from dltricks.optim import (
    SGD,
    AdaBelief,
    Adadelta,
    Adafactor,
    Adagrad,
    Adam,
    AdamW,
    ChainOptimizer,
    Lion,
    Momentum,
    RAdam,
    RMSprop,
    ScheduleFreeAdamW,
    adam_direction,
    chain,
    group_labels,
    muon_update,
    partition,
)
from dltricks.optim import blocks as b
from dltricks.train import TrainConfig

Factory = Callable[[Iterable[nn.Parameter], float], torch.optim.Optimizer]


def hidden_matrices(params: Iterable[nn.Parameter]) -> list[nn.Parameter]:
    """The 2-D parameters but the last (a feed-forward classifier's output layer, whose
    parameters come last in ``model.parameters()``): the matrices Muon is meant for."""
    return [p for p in params if p.ndim == 2][:-1]


def muon_adamw(
    params: Iterable[nn.Parameter], lr: float, *, weight_decay: float = 1e-2
) -> torch.optim.Optimizer:
    """Muon for the hidden matrices, AdamW for the rest (biases, the output layer), one
    optimizer (the README's partition recipe) with one learning rate for both.

    Muon's step is scaled as Moonlight's (``adjust_lr_fn="match_rms_adamw"``: ``0.2
    sqrt(max(A, B))``), which gives its update the RMS of AdamW's, so the two parts share
    ``lr`` and ``weight_decay`` (Liu et al. 2025) and a single rate can be tuned on Adam's
    grid. Muon: momentum 0.95, Nesterov, 5 Newton-Schulz steps (torch's defaults); AdamW:
    betas (0.9, 0.999), eps 1e-8. ValueError for a model without a hidden matrix.
    """
    params = list(params)
    hidden = hidden_matrices(params)
    if not hidden:
        raise ValueError(
            "Muon+AdamW needs a hidden weight matrix (a 2-D parameter before the output "
            "layer's); this model has none"
        )
    rest = [p for p in params if all(p is not h for h in hidden)]
    groups: list[dict[str, Any]] = [
        {"params": hidden, "label": "muon"},
        {"params": rest, "label": "adamw"},
    ]
    adamw = chain(adam_direction(), b.add_decayed_weights(), b.scale_by_learning_rate())
    muon = muon_update(adjust_lr_fn="match_rms_adamw")
    transform = partition(group_labels(groups), {"muon": muon, "adamw": adamw})
    return ChainOptimizer(
        groups,
        transform,
        lr=lr,
        weight_decay=weight_decay,
        momentum=0.95,
        betas=(0.9, 0.999),
        eps=1e-8,
    )


#: The contenders, in the order of the figures; torch's defaults apart from ``lr``.
OPTIMIZERS: dict[str, Factory] = {
    "SGD": lambda p, lr: SGD(p, lr=lr),
    "Momentum": lambda p, lr: Momentum(p, lr=lr, momentum=0.9),
    "Nesterov": lambda p, lr: SGD(p, lr=lr, momentum=0.9, nesterov=True),
    "AdaGrad": lambda p, lr: Adagrad(p, lr=lr),
    "RMSProp": lambda p, lr: RMSprop(p, lr=lr),
    "AdaDelta": lambda p, lr: Adadelta(p, lr=lr),
    "Adam": lambda p, lr: Adam(p, lr=lr),
    "AdamW": lambda p, lr: AdamW(p, lr=lr, weight_decay=1e-2),
    "Lion": lambda p, lr: Lion(p, lr=lr),
    # Adam's descendants: RAdam (torch), AdaBelief (pytorch-optimizer's defaults) and
    # Schedule-Free AdamW (schedulefree's defaults; the trainer switches it to eval mode, its
    # averaged weights, whenever the model is evaluated).
    "RAdam": lambda p, lr: RAdam(p, lr=lr),
    "AdaBelief": lambda p, lr: AdaBelief(p, lr=lr),
    "Schedule-Free": lambda p, lr: ScheduleFreeAdamW(p, lr=lr),
    # Adafactor (torch's defaults: no momentum, relative steps) and Muon for the hidden
    # matrices with AdamW for the rest (weight decay 0.01 on both, as AdamW's above).
    "Adafactor": lambda p, lr: Adafactor(p, lr=lr),
    "Muon+AdamW": lambda p, lr: muon_adamw(p, lr, weight_decay=1e-2),
}

#: Optimizers that need a hidden weight matrix (see :func:`hidden_matrices`).
NEEDS_HIDDEN_MATRIX = frozenset({"Muon+AdamW"})

#: Half-decade grids, each spanning the optimizer's usual range by at least a decade on both
#: sides of its default (AdaDelta's lr multiplies an already unit-scaled step: around 1; Lion's
#: sign updates need rates 3-10x below Adam's).
GRIDS: dict[str, tuple[float, ...]] = {
    "SGD": half_decades(1e-2, 10.0),
    "Momentum": half_decades(1e-3, 1.0),
    "Nesterov": half_decades(1e-3, 1.0),
    "AdaGrad": half_decades(1e-3, 1.0),
    "RMSProp": half_decades(1e-4, 1e-1),
    "AdaDelta": half_decades(1e-1, 31.6),
    "Adam": half_decades(1e-4, 0.316),
    "AdamW": half_decades(1e-4, 0.316),
    "Lion": half_decades(1e-5, 3.16e-2),
    # Adam's descendants (defaults 1e-3, 1e-3, 2.5e-3) on Adam's grid: the same chance as Adam.
    "RAdam": half_decades(1e-4, 0.316),
    "AdaBelief": half_decades(1e-4, 0.316),
    "Schedule-Free": half_decades(1e-4, 0.316),
    # Adafactor's default is 1e-2 (capped at 1/sqrt(t) and scaled by each parameter's RMS);
    # Muon+AdamW's one rate is AdamW-scaled (match_rms_adamw): Adam's grid.
    "Adafactor": half_decades(1e-4, 1.0),
    "Muon+AdamW": half_decades(1e-4, 0.316),
}

MODEL_LABELS = {"logistic": "logistic regression", "mlp": "MLP with dropout"}


@dataclass(frozen=True)
class OptimizersConfig(ExperimentConfig):
    """The settings of ``optimizers``; ``grids`` holds a learning-rate grid for every name in
    ``optimizers``."""

    experiment: ClassVar[str] = "optimizers"

    dataset: Annotated[str, DATASET]
    models: Annotated[list[str], ListOf(Choice(tuple(MODEL_LABELS)), unique=True)]
    optimizers: Annotated[list[str], ListOf(Choice(tuple(OPTIMIZERS)), unique=True)]
    grids: Annotated[
        dict[str, list[float]],
        MapOf(Choice(tuple(OPTIMIZERS)), ListOf(LEARNING_RATE, max_length=50, unique=True)),
    ]
    mlp_width: Annotated[int, WIDTH]
    mlp_depth: Annotated[int, DEPTH]
    dropout: Annotated[float, FRACTION]
    epochs: Annotated[int, EPOCHS]
    batch_size: Annotated[int, BATCH_SIZE]
    select_by: Annotated[str, Choice(("final", "best"))]
    tolerance: Annotated[float, Float(0.0, 10.0, low_open=True)]
    tune_seeds: Annotated[int, SEEDS]
    seeds: Annotated[int, SEEDS]

    def check_together(self) -> None:
        missing = [name for name in self.optimizers if name not in self.grids]
        if missing:
            raise SettingError(
                f"setting 'grids': no learning-rate grid for "
                f"{', '.join(missing)}; give one for every optimizer in 'optimizers'"
            )


def configure(quick: bool) -> OptimizersConfig:
    return OptimizersConfig(
        dataset="digits" if quick else "mnist1d",
        models=["logistic", "mlp"],
        optimizers=list(OPTIMIZERS),
        grids={name: list(grid) for name, grid in GRIDS.items()},
        mlp_width=64 if quick else 128,
        mlp_depth=2,
        dropout=0.2,
        epochs=20 if quick else 30,
        batch_size=128 if quick else 100,
        select_by="final",
        tolerance=0.1,
        tune_seeds=1 if quick else 2,
        seeds=3 if quick else 5,
    )


def dataset_name(ctx: RunContext) -> str:
    """The configured data set, or real MNIST for a full run given ``--data-dir``."""
    name = str(ctx.config["dataset"])
    if ctx.data_dir is not None and not ctx.quick and name == "mnist1d":
        return "mnist"
    return name


def model_factory(kind: str, data: SplitDataset, cfg: dict[str, Any]) -> Callable[[int], nn.Module]:
    """``seed -> model``: the same initial weights for a seed whichever optimizer trains it."""

    def logistic(seed: int) -> nn.Module:
        generator = torch.Generator().manual_seed(seed)
        model = nn.Linear(data.n_features, data.n_classes)
        with torch.no_grad():
            # LeCun-normal weights (variance 1/fan_in) so logits start at unit scale.
            model.weight.normal_(0.0, 1.0 / math.sqrt(data.n_features), generator=generator)
            model.bias.zero_()
        return model

    def mlp(seed: int) -> nn.Module:
        return MLP(
            data.n_features,
            data.n_classes,
            cfg["mlp_width"],
            cfg["mlp_depth"],
            "relu",
            dropout=cfg["dropout"],
            generator=torch.Generator().manual_seed(seed),
        )

    factories = {"logistic": logistic, "mlp": mlp}
    if kind not in factories:
        raise ValueError(f"unknown model {kind!r}; known: {', '.join(factories)}")
    return factories[kind]


def _specs(cfg: dict[str, Any]) -> list[OptimizerSpec]:
    unknown = [n for n in cfg["optimizers"] if n not in OPTIMIZERS]
    if unknown:
        raise ValueError(f"unknown optimizer(s) {unknown}; known: {', '.join(OPTIMIZERS)}")
    return [
        OptimizerSpec(name, OPTIMIZERS[name], tuple(cfg["grids"][name]))
        for name in cfg["optimizers"]
    ]


def _model_title(kind: str, cfg: dict[str, Any]) -> str:
    if kind == "mlp":
        return f"MLP {cfg['mlp_depth']}x{cfg['mlp_width']} ReLU, dropout {cfg['dropout']}"
    return MODEL_LABELS.get(kind, kind)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _plot(ctx: RunContext, comparisons: dict[str, Comparison], dataset: str) -> None:
    cfg = ctx.config
    kinds = list(comparisons)
    n = len(kinds)
    protocol = (
        f"{dataset}, {cfg['epochs']} epochs, batch {cfg['batch_size']}; lr tuned per optimizer "
        f"on a half-decade grid by {cfg['select_by']} validation loss "
        f"({_count(cfg['tune_seeds'], 'seed')}), then {len(ctx.seeds)} seeds at the chosen lr"
    )

    fig, axes = plt.subplots(1, n, figsize=(6.5 * n, 4.8), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        comparisons[kind].plot_curves(ax)
        ax.set_title(_model_title(kind, cfg))
        if ax.get_legend_handles_labels()[0]:  # no curve at all when every rate diverged
            ax.legend(fontsize=7, ncol=2)
    fig.suptitle(f"Training loss at each optimizer's tuned learning rate\n{protocol}", fontsize=10)
    ctx.save_figure(fig, "optimizers_curves")
    plt.close(fig)

    fig, axes = plt.subplots(1, n, figsize=(6.5 * n, 4.5), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        comparisons[kind].plot_test_accuracy(ax)
        ax.set_title(_model_title(kind, cfg))
    fig.suptitle(f"Final test accuracy at the tuned learning rate\n{protocol}", fontsize=10)
    ctx.save_figure(fig, "optimizers_test_accuracy")
    plt.close(fig)

    fig, axes = plt.subplots(n, 2, figsize=(12, 4.3 * n), squeeze=False)
    for row, kind in zip(axes, kinds, strict=True):
        comparison = comparisons[kind]
        comparison.plot_sensitivity(row[0], "train")
        comparison.plot_sensitivity(row[1], "val", show_width=True)
        row[0].set_title(f"{_model_title(kind, cfg)}: final training loss")
        row[1].set_title(f"{_model_title(kind, cfg)}: final validation loss")
        row[1].legend(
            fontsize=7,
            title=f"lr width within {cfg['tolerance']:.0%} of best (decades)",
            title_fontsize=7,
            loc="center left",
            bbox_to_anchor=(1.01, 0.5),
        )
    fig.suptitle(
        f"Sensitivity to the learning rate (mean over {_count(cfg['tune_seeds'], 'tuning seed')}; "
        "circle: chosen lr; x: diverged)\n" + protocol,
        fontsize=10,
    )
    ctx.save_figure(fig, "optimizers_sensitivity")
    plt.close(fig)


def _rank(rows: list[dict[str, Any]], name: str, key: str, higher_is_better: bool) -> int | None:
    """1-based rank of ``name`` by the mean of ``key`` among optimizers with a finite value."""
    finite = [r for r in rows if math.isfinite(r[key])]
    ordered = sorted(finite, key=lambda r: -r[key] if higher_is_better else r[key])
    names = [r["optimizer"] for r in ordered]
    return names.index(name) + 1 if name in names else None


def _model_summary(comparison: Comparison) -> dict[str, Any]:
    rows = comparison.summary_rows()
    by_name = {r["optimizer"]: r for r in rows}
    best_train = comparison.best("final_train_loss_mean")
    best_test = comparison.best("test_accuracy_mean")
    best_val = comparison.best("val_score")
    summary: dict[str, Any] = {
        "chosen_lr": comparison.chosen_lr,
        "at_grid_edge": [r["optimizer"] for r in rows if r["at_grid_edge"]],
        "val_loss": {r["optimizer"]: r["val_score"] for r in rows},
        "final_train_loss": {
            r["optimizer"]: [r["final_train_loss_mean"], r["final_train_loss_std"]] for r in rows
        },
        "test_accuracy": {
            r["optimizer"]: [r["test_accuracy_mean"], r["test_accuracy_std"]] for r in rows
        },
        "lr_width_decades": {r["optimizer"]: r["lr_width_decades"] for r in rows},
        "best_train_loss": best_train,
        "best_test_accuracy": best_test,
        "best_val_loss": best_val,
    }
    if best_test is not None:
        # Optimizers whose mean test accuracy is within one std (over seeds) of the best's mean:
        # at this number of seeds they are not distinguishable from the winner.
        top = by_name[best_test]
        floor = top["test_accuracy_mean"] - top["test_accuracy_std"]
        summary["tied_with_best_test"] = [
            r["optimizer"] for r in rows if r["test_accuracy_mean"] >= floor
        ]
    if "Adam" in by_name:
        summary["adam_rank_train_loss"] = _rank(rows, "Adam", "final_train_loss_mean", False)
        summary["adam_rank_test_accuracy"] = _rank(rows, "Adam", "test_accuracy_mean", True)
        summary["adam_rank_val_loss"] = _rank(rows, "Adam", "val_score", False)
    return summary


def _adam_clause(s: dict[str, Any], rank_key: str, value: str, n: int) -> str:
    rank = s.get(rank_key)
    if rank is None:
        return ""
    return "Adam wins it" if rank == 1 else f"Adam ranks {rank}/{n} ({value})"


def _sentence(kind: str, s: dict[str, Any], n: int) -> str:
    train, test = s["final_train_loss"], s["test_accuracy"]
    best_train, best_test = s["best_train_loss"], s["best_test_accuracy"]
    if best_train is None and best_test is None:
        return f"{MODEL_LABELS.get(kind, kind)}: every learning rate of every optimizer diverged"
    parts = [f"{MODEL_LABELS.get(kind, kind)}: lowest training loss {best_train} "]
    parts[0] += f"({train[best_train][0]:.3g})" if best_train is not None else ""
    if "Adam" in train:
        parts.append(_adam_clause(s, "adam_rank_train_loss", f"{train['Adam'][0]:.3g}", n))
    if best_test is not None:
        parts.append(
            f"best test accuracy {best_test} ({test[best_test][0]:.1%} ± "
            f"{test[best_test][1]:.1%}; {len(s['tied_with_best_test'])}/{n} optimizers within "
            "one std of it)"
        )
    if "Adam" in test:
        parts.append(_adam_clause(s, "adam_rank_test_accuracy", f"{test['Adam'][0]:.1%}", n))
    widths = {k: v for k, v in s["lr_width_decades"].items() if math.isfinite(v)}
    if widths:
        widest = max(widths, key=lambda k: widths[k])
        narrowest = min(widths, key=lambda k: widths[k])
        adam = f", Adam {widths['Adam']:.1f}" if "Adam" in widths and widest != "Adam" else ""
        parts.append(
            f"lr range within 10% of the best val loss: widest {widest} "
            f"{widths[widest]:.1f} decades{adam}, narrowest {narrowest} {widths[narrowest]:.1f}"
        )
    return ", ".join(p for p in parts if p)


def _adam_losses(models: dict[str, dict[str, Any]]) -> list[str]:
    """Where Adam does not come first, as "model metric" phrases."""
    out = []
    for kind, s in models.items():
        for key, metric in (
            ("adam_rank_train_loss", "training loss"),
            ("adam_rank_test_accuracy", "test accuracy"),
        ):
            if s.get(key) not in (None, 1):
                out.append(f"{metric} on {MODEL_LABELS.get(kind, kind)}")
    return out


def run(ctx: RunContext) -> dict[str, Any]:
    cfg = ctx.config
    dataset = dataset_name(ctx)
    data = ctx.data(dataset)
    specs = _specs(cfg)
    tune_seeds = ctx.seeds[: cfg["tune_seeds"]]
    train_config = TrainConfig(epochs=cfg["epochs"], batch_size=cfg["batch_size"])
    factories = {kind: model_factory(kind, data, cfg) for kind in cfg["models"]}
    # Muon+AdamW only where there is a hidden matrix (elsewhere it would be AdamW renamed).
    left_out = {
        kind: [s.name for s in specs if s.name in NEEDS_HIDDEN_MATRIX]
        if not hidden_matrices(factory(0).parameters())
        else []
        for kind, factory in factories.items()
    }
    model_specs = {
        kind: [s for s in specs if s.name not in left_out[kind]] for kind in cfg["models"]
    }
    ctx.progress.plan(
        sum(
            sum(len(s.lrs) for s in chosen) * len(tune_seeds) + len(chosen) * len(ctx.seeds)
            for chosen in model_specs.values()
        )
    )

    comparisons: dict[str, Comparison] = {}
    for kind in cfg["models"]:
        comparisons[kind] = compare_optimizers(
            factories[kind],
            data,
            model_specs[kind],
            train_config,
            seeds=ctx.seeds,
            tune_seeds=tune_seeds,
            select_by=cfg["select_by"],
            tolerance=cfg["tolerance"],
            unit=ctx.unit,
            key={"model": kind},
            device=ctx.device,
            label=_model_title(kind, cfg),
        )
    _plot(ctx, comparisons, dataset)
    models = {kind: _model_summary(c) for kind, c in comparisons.items()}
    for kind, names in left_out.items():
        models[kind]["not_applicable"] = names
    losses = _adam_losses(models)
    has_adam = any("adam_rank_train_loss" in s for s in models.values())
    verdict = (
        ""
        if not has_adam
        else "Adam wins every comparison. "
        if not losses
        else f"Adam does not win {', '.join(losses)}. "
    )
    finding = (
        f"On {dataset} with each lr tuned on validation loss: {verdict}"
        + ". ".join(_sentence(kind, s, len(s["val_loss"])) for kind, s in models.items())
        + "."
        + "".join(
            f" {', '.join(names)} left out of {MODEL_LABELS.get(kind, kind)} (no hidden matrix)."
            for kind, names in left_out.items()
            if names
        )
    )
    diverged = [r for r in ctx.records if r.get("diverged")]
    return {
        "diverged_runs": len(diverged),
        "dataset": dataset,
        "models": models,
        "tables": {kind: c.to_markdown() for kind, c in comparisons.items()},
        "adam_does_not_win": losses,
        "finding": finding,
    }


def judge(results: dict[str, Any]) -> list[Verdict]:
    """Rules, per model: Adam "trains fastest" when its mean final training loss at its tuned
    rate is the lowest; its test accuracy "matches the best" when its mean is within one std
    (over seeds) of the best's; it is "robust to its learning rate" when its lr width (decades
    within 10% of its best validation loss) is at least the median width of all optimizers."""
    models = {k: s for k, s in results["summary"]["models"].items() if "Adam" in s["val_loss"]}
    if not models:
        return []
    labels = {k: MODEL_LABELS.get(k, k) for k in models}

    def robust(s: dict[str, Any]) -> bool:
        widths = sorted(w for w in s["lr_width_decades"].values() if finite(w))
        adam = s["lr_width_decades"]["Adam"]
        return bool(widths) and finite(adam) and adam >= widths[(len(widths) - 1) // 2]

    def ranks(key: str) -> str:
        return ", ".join(
            f"{labels[k]}: {s.get(key)}/{len(s['val_loss'])}" for k, s in models.items()
        )

    return [
        judged(
            "With every learning rate tuned, Adam reaches the lowest training loss.",
            {labels[k]: s.get("adam_rank_train_loss") == 1 for k, s in models.items()},
            rule="Adam's mean final training loss at its tuned lr is the lowest, per model",
            measured=f"Adam's rank by training loss: {ranks('adam_rank_train_loss')}",
        ),
        judged(
            "With every learning rate tuned, Adam's test accuracy is the best.",
            {labels[k]: "Adam" in s.get("tied_with_best_test", []) for k, s in models.items()},
            rule="Adam's mean test accuracy is within one std (over seeds) of the best's",
            measured=f"Adam's rank by test accuracy: {ranks('adam_rank_test_accuracy')}",
        ),
        judged(
            "Adam is robust to its learning rate.",
            {labels[k]: robust(s) for k, s in models.items()},
            rule="Adam's lr width (decades within 10% of its best validation loss) is at least "
            "the median of all optimizers'",
            measured="Adam's lr width: "
            + ", ".join(
                f"{labels[k]} {s['lr_width_decades']['Adam']:.1f}" for k, s in models.items()
            ),
        ),
    ]


def summary_table(results: dict[str, Any]) -> dict[str, Any]:
    """One row per optimizer: per model its tuned lr, training loss, test accuracy, lr width."""
    models = results["summary"]["models"]
    names = list(results["config"]["config"]["optimizers"])
    headers = ["optimizer"]
    for kind in models:
        label = MODEL_LABELS.get(kind, kind)
        headers += [f"{label}: tuned lr", "train loss", "test accuracy", "lr width"]
    rows = []
    for name in names:
        row: list[Any] = [name]
        for s in models.values():
            test = s["test_accuracy"].get(name, [None, None])
            row += [
                s["chosen_lr"].get(name),
                s["final_train_loss"].get(name, [None])[0],
                f"{test[0]:.3f} ± {test[1]:.3f}" if finite(test[0]) and finite(test[1]) else "—",
                s["lr_width_decades"].get(name),
            ]
        rows.append(row)
    seeds = len(results["config"]["seeds"])
    return {
        "headers": headers,
        "rows": rows,
        "note": f"at each optimizer's tuned lr, mean over {seeds} seeds (test accuracy ± sd); "
        "lr width: decades of lr within 10% of the best validation loss"
        + (
            "; —: not run on that model (Muon+AdamW needs a hidden matrix)"
            if any(s.get("not_applicable") for s in models.values())
            else ""
        ),
    }


EXPERIMENT = register(
    Experiment(
        name="optimizers",
        question="Which optimizer wins once every learning rate is tuned fairly?",
        judge=judge,
        table=summary_table,
        claim="With every learning rate tuned on validation data, Adam trains fastest "
        "(Kingma & Ba 2015) and is robust to its learning rate; small-scale runs may differ.",
        source="Kingma & Ba 2015, section 6 (logistic regression and MLP with dropout on "
        "MNIST); Hung-yi Lee, Tips for Training DNN (Adam = RMSProp + Momentum)",
        tricks=("adaptive learning rate",),
        configure=configure,
        run=run,
    )
)
