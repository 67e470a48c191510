"""``generalization``: early stopping, regularization and dropout against an over-fitting MLP.

Claim (Hung-yi Lee, "Tips for Training Deep Neural Networks"): when training accuracy is good
but test accuracy is not, the network over-fits, and three tricks help on unseen data:
early stopping (stop where the *validation* loss is lowest, keep those weights),
regularization (L2: ``w <- (1 - eta lambda) w - eta dL/dw``; L1: ``w <- w - eta lambda sgn(w)
- eta dL/dw``) and dropout (which lowers training accuracy and raises test accuracy; the
lecture's demo uses Dropout(0.7) on MNIST).

Setup: one wide ReLU MLP per (trick, seed), the same init and batch order for every trick of a
seed, trained with Adam for a fixed number of epochs on a train split small enough to be
memorised. Tricks (amounts are stated in the config and were not tuned on test data):

- ``plain``: nothing;
- ``early_stopping``: stop after ``patience`` epochs without a lower validation loss, restore
  the best weights;
- ``l2``: ``(l2 / 2) sum w^2`` added to the loss (coupled: Adam rescales its gradient);
- ``l1``: ``l1 sum |w|`` added to the loss;
- ``weight_decay``: decoupled weight decay, :class:`dltricks.optim.AdamW` (biases excluded);
- ``dropout``: dropout after every hidden layer;
- ``all``: early stopping + L2 + dropout.

Accuracies are of the returned model (the restored best for early stopping), evaluated without
dropout. ``best_epoch`` is the epoch of lowest validation loss of every run (with early
stopping on, the epoch whose weights were restored).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any, ClassVar

import matplotlib.pyplot as plt
import torch

from dltricks.data import SplitDataset
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
    Bool,
    ExperimentConfig,
    Float,
    Int,
    MapOf,
    Optional,
    Record,
    SettingError,
    Text,
)
from dltricks.lab.stats import mean
from dltricks.lab.training import divergence
from dltricks.lab.verdicts import Verdict, judged
from dltricks.nn import MLP, param_groups_no_decay
from dltricks.optim import Adam, AdamW
from dltricks.train import EarlyStopping, TrainConfig, fit

PLAIN = "plain"
SUBSET_SEED = 0


_COEFFICIENT = Float(0.0, 1e3)
#: What a trick may set; a trick that sets nothing is the plain baseline.
TRICK = Record(
    optional={
        "early_stopping": Bool(),
        "l2": _COEFFICIENT,
        "l1": _COEFFICIENT,
        "weight_decay": _COEFFICIENT,
        "dropout": FRACTION,
    }
)


@dataclass(frozen=True)
class GeneralizationConfig(ExperimentConfig):
    """The settings of ``generalization``; ``tricks`` maps a name to what the trick sets and
    must include ``plain``, the baseline."""

    experiment: ClassVar[str] = "generalization"

    dataset: Annotated[str, DATASET]
    train_subset: Annotated[int | None, Optional(Int(1, 10_000_000))]
    width: Annotated[int, WIDTH]
    depth: Annotated[int, DEPTH]
    lr: Annotated[float, LEARNING_RATE]
    batch_size: Annotated[int, BATCH_SIZE]
    epochs: Annotated[int, EPOCHS]
    patience: Annotated[int, Int(0, 10_000)]
    tricks: Annotated[dict[str, dict[str, Any]], MapOf(Text(), TRICK)]
    seeds: Annotated[int, SEEDS]

    def check_together(self) -> None:
        if PLAIN not in self.tricks:
            raise SettingError(f"setting 'tricks': must include {PLAIN!r}, the baseline")


def configure(quick: bool) -> GeneralizationConfig:
    l2, l1, wd, dropout = 1e-3, 1e-4, 0.1, 0.5
    return GeneralizationConfig(
        dataset="digits" if quick else "mnist1d",
        # A small train subset makes the wide MLP memorise (None: the whole train split).
        train_subset=150 if quick else None,
        width=256,
        depth=2,
        # Measured: on the 150 digits Adam 1e-3 reaches the val-loss minimum only at epochs
        # 54-100 of 100; 3e-3 memorises them within ~15 epochs.
        lr=3e-3 if quick else 1e-3,
        batch_size=64,
        epochs=60 if quick else 80,
        patience=10,
        tricks={
            PLAIN: {},
            "early_stopping": {"early_stopping": True},
            "l2": {"l2": l2},
            "l1": {"l1": l1},
            "weight_decay": {"weight_decay": wd},
            "dropout": {"dropout": dropout},
            "all": {"early_stopping": True, "l2": l2, "dropout": dropout},
        },
        seeds=5,
    )


def _data(ctx: RunContext) -> SplitDataset:
    cfg = ctx.config
    data = ctx.data(cfg["dataset"])
    subset = cfg["train_subset"]
    if subset is None or subset >= data.x_train.shape[0]:
        return data
    # The same subset for every unit (seeded once), so tricks differ only by the trick.
    generator = torch.Generator().manual_seed(SUBSET_SEED)
    index = torch.randperm(data.x_train.shape[0], generator=generator)[:subset]
    return dataclasses.replace(data, x_train=data.x_train[index], y_train=data.y_train[index])


def _train_one(ctx: RunContext, data: SplitDataset, trick: str, seed: int) -> dict[str, Any]:
    cfg = ctx.config
    spec = cfg["tricks"][trick]
    model = MLP(
        data.n_features,
        data.n_classes,
        cfg["width"],
        cfg["depth"],
        "relu",
        dropout=float(spec.get("dropout", 0.0)),
        generator=torch.Generator().manual_seed(seed),
    )
    lr = cfg["lr"]
    weight_decay = float(spec.get("weight_decay", 0.0))
    if weight_decay > 0:

        def factory(params: Any) -> torch.optim.Optimizer:
            return AdamW(param_groups_no_decay(model, weight_decay), lr=lr, nonfinite="ignore")
    else:

        def factory(params: Any) -> torch.optim.Optimizer:
            return Adam(params, lr=lr, nonfinite="ignore")

    early = EarlyStopping(patience=cfg["patience"]) if spec.get("early_stopping") else None
    result = fit(
        model,
        factory,
        data,
        TrainConfig(
            epochs=cfg["epochs"],
            batch_size=cfg["batch_size"],
            l1=float(spec.get("l1", 0.0)),
            l2=float(spec.get("l2", 0.0)),
            early_stopping=early,
            seed=seed,
        ),
        device=ctx.device,
        progress=False,
    )
    history = result.history
    return {
        **divergence(result),
        "test_accuracy": result.final.test_accuracy,
        "train_accuracy": result.final.train_accuracy,
        "val_accuracy": result.final.val_accuracy,
        "test_loss": result.final.test_loss,
        "best_epoch": result.best_epoch,
        "epochs_run": len(history),
        "stop_reason": result.stop_reason,
        "curve_train_loss": [e.train_loss for e in history],
        "curve_val_loss": [e.val_loss for e in history],
        "curve_train_accuracy": [e.train_accuracy for e in history],
        "curve_test_accuracy": [e.test_accuracy for e in history],
    }


def _by_trick(records: list[dict[str, Any]], key: str) -> dict[str, dict[int, float]]:
    table: dict[str, dict[int, float]] = {}
    for r in records:
        table.setdefault(r["trick"], {})[r["seed"]] = float(r[key])
    return table


def _plot_accuracy(ctx: RunContext, records: list[dict[str, Any]], setup: str) -> None:
    tricks = list(ctx.config["tricks"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for ax, key, title in (
        (axes[0], "train_accuracy", "Training accuracy"),
        (axes[1], "test_accuracy", "Test accuracy"),
    ):
        table = _by_trick(records, key)
        for i, trick in enumerate(tricks):
            values = list(table[trick].values())
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            ax.errorbar([i], [mean(values)], yerr=[spread], fmt="o", color="black", capsize=5)
            ax.scatter([i] * len(values), values, s=14, alpha=0.5, color="tab:blue")
        plain = mean(list(table[PLAIN].values()))
        ax.axhline(plain, color="tab:red", linestyle=":", label=f"plain mean {plain:.3f}")
        ax.set_xticks(range(len(tricks)))
        ax.set_xticklabels(tricks, rotation=20)
        ax.set_ylabel("accuracy")
        ax.set_title(f"{title} (black: mean +- std over seeds; blue: seeds)", fontsize=10)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    fig.suptitle(f"Tricks against over-fitting: {setup}", fontsize=10)
    ctx.save_figure(fig, "generalization_accuracy")
    plt.close(fig)


def _plot_curves(ctx: RunContext, records: list[dict[str, Any]], setup: str) -> None:
    seed = ctx.seeds[0]
    (plain,) = [r for r in records if r["trick"] == PLAIN and r["seed"] == seed]
    stopped = [r for r in records if r["trick"] == "early_stopping" and r["seed"] == seed]
    epochs = range(1, len(plain["curve_val_loss"]) + 1)
    fig, (ax, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.6))
    ax.plot(epochs, plain["curve_train_loss"], label="train loss")
    ax.plot(epochs, plain["curve_val_loss"], label="validation loss")
    best = plain["best_epoch"]
    if best is not None:  # None: the run diverged before any finite validation loss
        ax.axvline(
            best, color="tab:green", linestyle="--", label=f"val-loss minimum (epoch {best})"
        )
    ax_acc.plot(epochs, plain["curve_train_accuracy"], label="train accuracy")
    ax_acc.plot(epochs, plain["curve_test_accuracy"], label="test accuracy")
    if best is not None:
        ax_acc.axvline(best, color="tab:green", linestyle="--", label=f"val-loss minimum ({best})")
    if stopped:
        stop = stopped[0]["epochs_run"]
        for a in (ax, ax_acc):
            a.axvline(stop, color="tab:purple", linestyle=":", label=f"early stop (epoch {stop})")
    losses = [*plain["curve_train_loss"], *plain["curve_val_loss"]]
    if any(v is not None and math.isfinite(v) and v > 0 for v in losses):
        ax.set_yscale("log")  # not when the run diverged before any finite loss
    ax.set_ylabel("cross-entropy loss")
    ax_acc.set_ylabel("accuracy")
    for a in (ax, ax_acc):
        a.set_xlabel("epoch")
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    ax.set_title("Plain MLP: losses", fontsize=10)
    ax_acc.set_title("Plain MLP: accuracies", fontsize=10)
    fig.suptitle(
        f"Where early stopping stops (patience {ctx.config['patience']}, best weights "
        f"restored): seed {seed}, {setup}",
        fontsize=10,
    )
    ctx.save_figure(fig, "generalization_curves")
    plt.close(fig)


def run(ctx: RunContext) -> dict[str, Any]:
    cfg = ctx.config
    data = _data(ctx)
    tricks = list(cfg["tricks"])
    if PLAIN not in tricks:
        raise ValueError(f"the tricks must include {PLAIN!r}, the baseline")
    ctx.progress.plan(len(tricks) * len(ctx.seeds))
    records = [
        ctx.unit({"trick": trick, "seed": seed}, partial(_train_one, ctx, data, trick, seed))
        for trick in tricks
        for seed in ctx.seeds
    ]
    setup = (
        f"{cfg['dataset']} ({data.x_train.shape[0]} train), ReLU MLP {cfg['depth']}x"
        f"{cfg['width']}, Adam lr {cfg['lr']}, {cfg['epochs']} epochs, {len(ctx.seeds)} seeds"
    )
    _plot_accuracy(ctx, records, setup)
    _plot_curves(ctx, records, setup)

    test = _by_trick(records, "test_accuracy")
    train = _by_trick(records, "train_accuracy")
    plain_test = test[PLAIN]
    mean_test = {t: mean(list(test[t].values())) for t in tricks}
    mean_train = {t: mean(list(train[t].values())) for t in tricks}
    gain = {t: mean_test[t] - mean_test[PLAIN] for t in tricks if t != PLAIN}
    # Seeds where the trick beats plain on the same init and batch order (a paired view).
    wins = {t: sum(test[t][s] > plain_test[s] for s in plain_test if s in test[t]) for t in gain}
    # A diverged run has no validation-loss minimum to speak of; the rest still do.
    plain_records = [r for r in records if r["trick"] == PLAIN and r["best_epoch"] is not None]
    if not plain_records:
        return _all_plain_diverged(records, mean_test, mean_train)
    best_epochs = [r["best_epoch"] for r in plain_records]
    test_at_best = [r["curve_test_accuracy"][r["best_epoch"] - 1] for r in plain_records]
    # How far the validation loss climbs from its minimum by the last epoch (over-fitting).
    val_rise = mean([r["curve_val_loss"][-1] / min(r["curve_val_loss"]) for r in plain_records])
    helped = [t for t in gain if gain[t] > 0]
    parts = ", ".join(f"{t} {gain[t]:+.3f} ({wins[t]}/{len(plain_test)} seeds)" for t in gain)
    finding = (
        f"Against the plain MLP's mean test accuracy {mean_test[PLAIN]:.3f}, the mean changes "
        f"by {parts}; {len(helped)} of {len(gain)} tricks raised it. The plain MLP's "
        f"validation loss is lowest at epoch {min(best_epochs)}-{max(best_epochs)} of "
        f"{cfg['epochs']} and ends {val_rise:.2f}x that minimum (mean test accuracy at the "
        f"minimum {mean(test_at_best):.3f}, at the last epoch {mean_test[PLAIN]:.3f})."
    )
    if "dropout" in mean_train:
        finding += (
            f" Dropout's training accuracy {mean_train['dropout']:.3f} vs plain "
            f"{mean_train[PLAIN]:.3f}."
        )
    diverged = sum(1 for r in records if r["diverged"])
    if diverged:
        finding += f" {diverged} of {len(records)} runs diverged (loss not finite)."
    return {
        "overall_test_accuracy": mean([r["test_accuracy"] for r in records]),
        "diverged_runs": diverged,
        "mean_test_accuracy": mean_test,
        "mean_train_accuracy": mean_train,
        "test_gain_over_plain": gain,
        "seeds_beating_plain": wins,
        "plain_best_epochs": best_epochs,
        "plain_test_accuracy_at_best_epoch": mean(test_at_best),
        "plain_final_over_min_val_loss": val_rise,
        "finding": finding,
    }


def _all_plain_diverged(
    records: list[dict[str, Any]], mean_test: dict[str, float], mean_train: dict[str, float]
) -> dict[str, Any]:
    diverged = sum(1 for r in records if r["diverged"])
    return {
        "overall_test_accuracy": mean([r["test_accuracy"] for r in records]),
        "diverged_runs": diverged,
        "mean_test_accuracy": mean_test,
        "mean_train_accuracy": mean_train,
        "finding": f"Every plain run diverged (loss not finite; {diverged} of {len(records)} "
        "runs in all): there is no baseline to compare the tricks with at these settings.",
    }


#: "Well before the end": the validation minimum falls in the first 75% of the epochs.
EARLY_SHARE = 0.75


def judge(results: dict[str, Any]) -> list[Verdict]:
    """Rules: a trick "raises test accuracy" when its mean test accuracy over seeds is above
    the plain MLP's; dropout "lowers training accuracy" when its mean training accuracy is
    below plain's; the validation minimum is "well before the end" when every plain seed's
    lowest validation loss is in the first 75% of the epochs."""
    s = results["summary"]
    epochs = results["config"]["config"]["epochs"]
    gain = s.get("test_gain_over_plain", {})
    train = s.get("mean_train_accuracy", {})
    raises = "mean test accuracy over seeds above the plain MLP's"

    def gains(tricks: tuple[str, ...]) -> str:
        shown = [f"{t} {gain[t]:+.3f}" for t in tricks if t in gain]
        return "test accuracy against plain: " + ", ".join(shown) if shown else "no baseline"

    best = s.get("plain_best_epochs", [])
    last = math.floor(EARLY_SHARE * epochs)
    verdicts = [
        judged(
            "The validation loss has its minimum well before the end of training.",
            {f"seed {i}": e <= last for i, e in enumerate(best)},
            rule=f"every plain seed's lowest validation loss is at epoch {last} of {epochs} or "
            "earlier",
            measured=f"minimum at epochs {min(best)}-{max(best)} of {epochs}" if best else "",
            trick="early stopping",
        )
    ]
    if "early_stopping" in gain or not gain:
        verdicts.append(
            judged(
                "Early stopping raises the test accuracy of an over-fitting network.",
                {"early stopping": gain["early_stopping"] > 0} if gain else {},
                rule=raises,
                measured=gains(("early_stopping",)),
                trick="early stopping",
            )
        )
    regularizers = tuple(t for t in ("l2", "l1", "weight_decay") if t in gain)
    if regularizers or not gain:
        verdicts.append(
            judged(
                "Regularization (L2, L1, decoupled weight decay) raises test accuracy.",
                {t: gain[t] > 0 for t in regularizers},
                rule=raises,
                measured=gains(regularizers),
                trick="regularization",
            )
        )
    if "dropout" in gain or not gain:
        checks = {}
        if gain:
            checks = {
                "lower training accuracy": train["dropout"] < train[PLAIN],
                "higher test accuracy": gain["dropout"] > 0,
            }
        verdicts.append(
            judged(
                "Dropout lowers training accuracy and raises test accuracy.",
                checks,
                rule=f"{raises}; mean training accuracy below plain's",
                measured=f"training accuracy {train['dropout']:.3f} vs plain {train[PLAIN]:.3f}, "
                + gains(("dropout",))
                if gain
                else "no baseline",
                trick="dropout",
            )
        )
    return verdicts


EXPERIMENT = register(
    Experiment(
        name="generalization",
        question="What helps a network that over-fits?",
        judge=judge,
        claim="Early stopping, regularization and dropout raise test accuracy of an "
        "over-fitting network; dropout lowers training accuracy; the validation loss has its "
        "minimum well before the end of training.",
        source="Hung-yi Lee, Tips for Training DNN (early stopping, regularization, dropout); "
        "Srivastava et al. 2014; Loshchilov & Hutter 2019",
        tricks=("early stopping", "regularization", "dropout"),
        configure=configure,
        headline="overall_test_accuracy",
        run=run,
    )
)
