"""A fair optimizer comparison for any model: tune each learning rate on validation, then seeds.

The protocol (Kingma & Ba 2015, section 6: same initialisation for every optimizer, learning
rate tuned on a grid) as a library function practitioners reuse for their own models::

    from dltricks.lab.compare import OptimizerSpec, compare_optimizers
    from dltricks.optim import Adam, SGD

    result = compare_optimizers(
        lambda seed: make_model(seed),                  # same init per seed for every optimizer
        data,                                           # a dltricks.data.SplitDataset
        [
            OptimizerSpec("SGD", lambda p, lr: SGD(p, lr=lr), half_decades(1e-2, 1.0)),
            OptimizerSpec("Adam", lambda p, lr: Adam(p, lr=lr), half_decades(1e-4, 1e-1)),
        ],
        TrainConfig(epochs=20, batch_size=128),
        seeds=(0, 1, 2),
    )
    print(result.to_markdown())
    result.save_figures("out/")

Protocol, in two phases:

1. **Tune.** For each optimizer and each learning rate ``eta`` of its grid, train on the train
   split for the seeds ``tune_seeds`` and score ``eta`` by the validation loss,
   ``score(eta) = mean over tune seeds of L_val``, where ``L_val`` is the validation loss after
   the last epoch (``select_by="final"``, the default: the model the budget actually delivers)
   or its minimum over epochs (``select_by="best"``, the early-stopping view). A run whose loss
   turns non-finite, or whose optimizer refuses a non-finite gradient, is *diverged* and scores
   ``+inf``. The chosen rate is ``argmin score`` (ties: the smaller rate). Tuning runs receive
   a copy of the data *without* a test split (:func:`without_test_split`), so the test data
   cannot influence the choice, not even through logged curves.
2. **Evaluate.** At its chosen rate, each optimizer trains once per seed in ``seeds`` on the
   full data; these runs report the test loss and accuracy.

Robustness to the learning rate (:meth:`Comparison.lr_width`): the width, in decades, of the
learning-rate interval around the chosen rate whose validation score stays within
``tolerance`` (relative, default 10%) of the best, the score interpolated linearly in
``log10(lr)`` between grid points. Wider is more forgiving; at a grid end it is a lower bound.

Every training run goes through ``unit(key, compute)``; by default it just calls ``compute``.
The lab passes :meth:`dltricks.lab.RunContext.unit`, which stores each run so an interrupted
comparison resumes. Outside the lab, :func:`dltricks.sweep.store_unit` keeps the runs in a
SQLite store (the sweeps' format): a rerun trains only the runs the store lacks, the runs can
be queried with :func:`dltricks.sweep.read_rows` or ``sqlite3``, and
:meth:`Comparison.from_store` rebuilds the comparison without training::

    result = compare_optimizers(..., unit=store_unit("runs/my-comparison.sqlite"))
    same = Comparison.from_store("runs/my-comparison.sqlite")

Results are plain records (dicts of JSON values); no pandas needed.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter
from torch import nn

from dltricks.data import SplitDataset
from dltricks.lab.figures import save_figure
from dltricks.palette import optimizer_colour
from dltricks.train import Callback, EpochContext, EpochRecord, TrainConfig, fit

__all__ = [
    "Comparison",
    "OptimizerFactory",
    "OptimizerSpec",
    "SelectBy",
    "UnitRunner",
    "compare_optimizers",
    "half_decades",
    "lr_width",
    "without_test_split",
]

#: ``factory(params, lr) -> optimizer``, e.g. ``lambda p, lr: Adam(p, lr=lr)``.
OptimizerFactory = Callable[[Iterable[nn.Parameter], float], torch.optim.Optimizer]
#: ``unit(key, compute) -> record``: runs ``compute()`` and returns ``{**key, **compute()}``
#: (the shape of :meth:`dltricks.lab.RunContext.unit`).
UnitRunner = Callable[[dict[str, Any], Callable[[], dict[str, Any]]], dict[str, Any]]
SelectBy = Literal["final", "best"]

#: Record keys that hold per-epoch lists; :meth:`Comparison.to_rows` leaves them out.
CURVE_KEYS = ("curve_train_loss", "curve_val_loss", "curve_test_accuracy")


def half_decades(low: float, high: float) -> tuple[float, ...]:
    """The grid ``low, ~3.16 low, 10 low, ... <= high`` (steps of 10^0.5), rounded to 3 digits.

    ``half_decades(1e-3, 1e-1) == (0.001, 0.00316, 0.01, 0.0316, 0.1)``.
    """
    if not (0 < low <= high):
        raise ValueError(f"need 0 < low <= high, got {low}, {high}")
    count = round(2 * math.log10(high / low)) + 1
    return tuple(float(f"{low * 10 ** (i / 2):.3g}") for i in range(count))


@dataclass(frozen=True)
class OptimizerSpec:
    """One contender: a name, ``factory(params, lr)`` and its learning-rate grid (any order)."""

    name: str
    factory: OptimizerFactory
    lrs: tuple[float, ...]

    def __post_init__(self) -> None:
        lrs = tuple(sorted(float(lr) for lr in self.lrs))
        if not lrs:
            raise ValueError(f"optimizer {self.name!r}: the lr grid is empty")
        if any(not (math.isfinite(lr) and lr > 0) for lr in lrs):
            raise ValueError(f"optimizer {self.name!r}: learning rates must be > 0, got {lrs}")
        if len(set(lrs)) != len(lrs):
            raise ValueError(f"optimizer {self.name!r}: repeated learning rates in {lrs}")
        object.__setattr__(self, "lrs", lrs)


def without_test_split(data: SplitDataset) -> SplitDataset:
    """``data`` with an empty test split: what tuning runs see.

    Built from the train and validation tensors only (the test tensors are never read), so
    nothing a tuning run computes or logs can depend on the test data.
    """
    return SplitDataset(
        name=data.name,
        x_train=data.x_train,
        y_train=data.y_train,
        x_val=data.x_val,
        y_val=data.y_val,
        x_test=data.x_train[:0],
        y_test=data.y_train[:0],
        n_classes=data.n_classes,
        input_shape=data.input_shape,
        feature_mean=data.feature_mean,
        feature_std=data.feature_std,
    )


def _direct(key: dict[str, Any], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    return {**key, **compute()}


def _num(value: Any) -> float:
    """A record's number as a float; JSON stores NaN and infinity as null, read back as NaN."""
    return math.nan if value is None else float(value)


def _finite(value: Any) -> bool:
    return math.isfinite(_num(value))


class _History(Callback):
    # Keeps the epochs seen so far, so a run that raises (an optimizer refusing a NaN
    # gradient) still reports its curve up to the failure.
    def __init__(self) -> None:
        self.records: list[EpochRecord] = []

    def on_epoch_end(self, ctx: EpochContext) -> None:
        self.records.append(ctx.record)


def _train(
    model_factory: Callable[[int], nn.Module],
    factory: OptimizerFactory,
    lr: float,
    data: SplitDataset,
    config: TrainConfig,
    seed: int,
    device: torch.device | str | None,
    with_test: bool,
) -> dict[str, Any]:
    model = model_factory(seed)
    history = _History()
    raised = False
    result = None
    try:
        result = fit(
            model,
            lambda params: factory(params, lr),
            data,
            replace(config, seed=seed),
            device=device,
            progress=False,
            callbacks=[history],
        )
    except FloatingPointError:
        # dltricks optimizers raise NonFiniteGradientError (a FloatingPointError) by default
        # where torch's would silently write NaN: both are divergence.
        raised = True
    epochs = history.records
    train_curve = [e.train_loss for e in epochs]
    val_curve = [_num(e.val_loss) for e in epochs]
    final_train = train_curve[-1] if train_curve else math.nan
    final_val = val_curve[-1] if val_curve else math.nan
    diverged = raised or not (math.isfinite(final_train) and math.isfinite(final_val))
    finite_vals = [v for v in val_curve if math.isfinite(v)]
    metrics: dict[str, Any] = {
        "diverged": diverged,
        "epochs_run": len(epochs),
        "final_train_loss": final_train,
        "final_train_accuracy": epochs[-1].train_accuracy if epochs else math.nan,
        "final_val_loss": final_val,
        "best_val_loss": min(finite_vals) if finite_vals else math.nan,
        "best_epoch": epochs[val_curve.index(min(finite_vals))].epoch if finite_vals else None,
        "curve_train_loss": train_curve,
        "curve_val_loss": val_curve,
    }
    if with_test:
        final = result.final if result is not None and not diverged else None
        metrics["test_loss"] = final.test_loss if final is not None else math.nan
        metrics["test_accuracy"] = final.test_accuracy if final is not None else math.nan
        metrics["curve_test_accuracy"] = [e.test_accuracy for e in epochs]
    else:
        # Same columns in every record; None says "not measured": tuning has no test split.
        metrics["test_loss"] = None
        metrics["test_accuracy"] = None
    return metrics


def _score(record: Mapping[str, Any], select_by: SelectBy) -> float:
    if record["diverged"]:
        return math.inf
    value = _num(record["final_val_loss" if select_by == "final" else "best_val_loss"])
    return value if math.isfinite(value) else math.inf


def lr_width(lrs: Sequence[float], scores: Sequence[float], tolerance: float = 0.1) -> float:
    """Width in decades of the learning-rate interval whose score is within ``tolerance``.

    With ``b = argmin scores`` (positive losses) and the band ``score <= (1 + tolerance) *
    score[b]``, walk outward from ``b`` along the grid while points stay in the band; where the
    next point leaves it, the band's edge is placed by linear interpolation of the score in
    ``log10(lr)`` between the two points (a diverged, infinite neighbour puts the edge at the
    last point inside). The width is ``log10(lr_hi / lr_lo)`` of that interval, 0 when the
    score rises steeply on both sides; it stops at the grid's ends (a lower bound there). NaN
    when every score is infinite.
    """
    if len(lrs) != len(scores) or not lrs:
        raise ValueError("lrs and scores must be non-empty and of equal length")
    order = sorted(range(len(lrs)), key=lambda i: lrs[i])
    xs = [math.log10(lrs[i]) for i in order]
    ys = [float(scores[i]) for i in order]
    best = min(range(len(ys)), key=lambda i: ys[i])
    if not math.isfinite(ys[best]):
        return math.nan
    limit = ys[best] * (1 + tolerance)

    def edge(step: int) -> float:
        i = best
        while 0 <= i + step < len(ys) and ys[i + step] <= limit:
            i += step
        j = i + step
        if not (0 <= j < len(ys)) or not math.isfinite(ys[j]):
            return xs[i]
        # ys[i] <= limit < ys[j]: the crossing lies between the two grid points.
        return xs[i] + (xs[j] - xs[i]) * (limit - ys[i]) / (ys[j] - ys[i])

    return edge(+1) - edge(-1)


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value); NaN when empty."""
    if not values:
        return math.nan, math.nan
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


@dataclass
class Comparison:
    """The records of one comparison and what follows from them: table, choices, figures.

    ``records`` hold one dict per training run: the key (``phase`` ``"tune"`` or ``"final"``,
    ``optimizer``, ``lr``, ``seed`` and any extra key fields, e.g. ``model``) merged with its
    metrics (``final_train_loss``, ``final_val_loss``, ``best_val_loss``, ``diverged``,
    per-epoch ``curve_*`` lists; final runs add ``test_loss`` and ``test_accuracy``).
    """

    records: list[dict[str, Any]]
    grids: dict[str, tuple[float, ...]]
    select_by: SelectBy = "final"
    tolerance: float = 0.1
    label: str = ""
    setup: str = ""
    chosen_lr: dict[str, float | None] = field(init=False)

    def __post_init__(self) -> None:
        self.chosen_lr = {name: self._choose(name) for name in self.grids}

    @property
    def optimizers(self) -> tuple[str, ...]:
        return tuple(self.grids)

    def describe(self) -> dict[str, Any]:
        """Everything but the records, as JSON: what :meth:`from_store` needs besides them."""
        return {
            "kind": "optimizer comparison",
            # Pairs, not a mapping: the store's JSON sorts keys, and the order is the table's.
            "grids": [[name, list(lrs)] for name, lrs in self.grids.items()],
            "select_by": self.select_by,
            "tolerance": self.tolerance,
            "label": self.label,
            "setup": self.setup,
        }

    @classmethod
    def from_store(cls, path: str | os.PathLike[str], *, name: str | None = None) -> Comparison:
        """The comparison that ``compare_optimizers(..., unit=store_unit(path, name=name))``
        returned, rebuilt from the store without training (records in the same order).

        Raises:
            FileNotFoundError: no store at ``path``.
            ValueError: the store holds no finished comparison called ``name`` (default: the
                file's stem).
        """
        from dltricks.sweep.units import read_units

        info, records = read_units(Path(path), name=name)
        if info.get("kind") != "optimizer comparison":
            raise ValueError(f"the units {name!r} in {path} are not an optimizer comparison")
        return cls(
            records,
            {str(k): tuple(float(lr) for lr in v) for k, v in info["grids"]},
            info["select_by"],
            float(info["tolerance"]),
            label=str(info["label"]),
            setup=str(info["setup"]),
        )

    def tuning_records(self, optimizer: str | None = None) -> list[dict[str, Any]]:
        return [
            r
            for r in self.records
            if r["phase"] == "tune" and (optimizer is None or r["optimizer"] == optimizer)
        ]

    def final_records(self, optimizer: str | None = None) -> list[dict[str, Any]]:
        return [
            r
            for r in self.records
            if r["phase"] == "final" and (optimizer is None or r["optimizer"] == optimizer)
        ]

    def scores(self, optimizer: str) -> list[float]:
        """The validation score of each grid rate (mean over tune seeds; inf if any diverged)."""
        out = []
        for lr in self.grids[optimizer]:
            runs = [r for r in self.tuning_records(optimizer) if r["lr"] == lr]
            values = [_score(r, self.select_by) for r in runs]
            out.append(math.inf if not values or math.inf in values else sum(values) / len(values))
        return out

    def _choose(self, optimizer: str) -> float | None:
        scores = self.scores(optimizer)
        best = min(range(len(scores)), key=lambda i: scores[i])  # first minimum: smaller lr
        return self.grids[optimizer][best] if math.isfinite(scores[best]) else None

    def lr_width(self, optimizer: str) -> float:
        """Robustness: see :func:`lr_width` (decades within ``tolerance`` of the best score)."""
        return lr_width(self.grids[optimizer], self.scores(optimizer), self.tolerance)

    def at_grid_edge(self, optimizer: str) -> bool:
        """Whether the chosen rate is the grid's smallest or largest (widen the grid)."""
        grid, chosen = self.grids[optimizer], self.chosen_lr[optimizer]
        return chosen is not None and len(grid) > 1 and chosen in (grid[0], grid[-1])

    def summary_rows(self) -> list[dict[str, Any]]:
        """One row per optimizer: chosen rate, its validation score, robustness, final metrics."""
        rows = []
        for name in self.optimizers:
            final = self.final_records(name)
            train = _mean_std([_num(r["final_train_loss"]) for r in final])
            test = _mean_std([_num(r["test_accuracy"]) for r in final])
            scores = self.scores(name)
            chosen = self.chosen_lr[name]
            rows.append(
                {
                    "optimizer": name,
                    "chosen_lr": chosen,
                    "at_grid_edge": self.at_grid_edge(name),
                    "val_score": min(scores) if chosen is not None else math.nan,
                    "lr_width_decades": self.lr_width(name),
                    "diverged_lrs": sum(1 for s in scores if not math.isfinite(s)),
                    "seeds": len(final),
                    "final_train_loss_mean": train[0],
                    "final_train_loss_std": train[1],
                    "test_accuracy_mean": test[0],
                    "test_accuracy_std": test[1],
                    "diverged_seeds": sum(1 for r in final if r["diverged"]),
                }
            )
        return rows

    def best(self, metric: str = "final_train_loss_mean") -> str | None:
        """The optimizer with the best mean of ``metric`` (lowest loss, highest accuracy)."""
        sign = -1.0 if "accuracy" in metric else 1.0
        rows = [r for r in self.summary_rows() if math.isfinite(_num(r[metric]))]
        if not rows:
            return None
        return min(rows, key=lambda r: sign * _num(r[metric]))["optimizer"]

    def to_rows(self, phase: str | None = None) -> list[dict[str, Any]]:
        """The per-run records without their curves (tidy: one row per run)."""
        return [
            {k: v for k, v in r.items() if k not in CURVE_KEYS}
            for r in self.records
            if phase is None or r["phase"] == phase
        ]

    def to_markdown(self) -> str:
        """The summary as a Markdown table (mean ± sample std over seeds)."""
        lines = [
            "| optimizer | lr | val loss | lr width (dec) | final train loss | test accuracy |",
            "|---|---|---|---|---|---|",
        ]
        for r in self.summary_rows():
            lr = "diverged" if r["chosen_lr"] is None else f"{r['chosen_lr']:.3g}"
            if r["at_grid_edge"]:
                lr += " (edge)"
            lines.append(
                f"| {r['optimizer']} | {lr} | {r['val_score']:.4f} | "
                f"{r['lr_width_decades']:.1f} | "
                f"{r['final_train_loss_mean']:.4f} ± {r['final_train_loss_std']:.4f} | "
                f"{r['test_accuracy_mean']:.3f} ± {r['test_accuracy_std']:.3f} |"
            )
        return "\n".join(lines)

    # -- figures -----------------------------------------------------------------------------

    def color(self, optimizer: str) -> Any:
        """The optimizer's colour in every figure (:mod:`dltricks.palette`)."""
        return optimizer_colour(optimizer)

    def plot_curves(self, ax: Axes) -> None:
        """Training loss per epoch at the chosen rate: mean over seeds, band min..max, log y."""
        for name in self.optimizers:
            curves = [r["curve_train_loss"] for r in self.final_records(name)]
            if not curves:
                continue
            length = max(len(c) for c in curves)
            # Diverged runs stop early: pad with NaN so the band covers the seeds still running.
            arr = np.full((len(curves), length), np.nan)
            for i, c in enumerate(curves):
                arr[i, : len(c)] = [_num(v) for v in c]
            epochs = np.arange(1, length + 1)
            with warnings.catch_warnings():
                # An all-NaN column (every seed diverged by then) warns; NaN is the answer.
                warnings.simplefilter("ignore", RuntimeWarning)
                mean, lo, hi = np.nanmean(arr, 0), np.nanmin(arr, 0), np.nanmax(arr, 0)
            color = self.color(name)
            ax.plot(epochs, mean, color=color, label=f"{name} (lr {self.chosen_lr[name]:.3g})")
            ax.fill_between(epochs, lo, hi, color=color, alpha=0.15, linewidth=0)
        _log_axis(ax.yaxis)
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss (mean; band: min-max over seeds)")
        ax.grid(alpha=0.3, which="both")

    def plot_test_accuracy(self, ax: Axes) -> None:
        """Final test accuracy per optimizer: mean ± sample std over seeds, dots per seed."""
        rows = self.summary_rows()
        for i, row in enumerate(rows):
            name = row["optimizer"]
            color = self.color(name)
            ax.errorbar(
                i,
                row["test_accuracy_mean"],
                yerr=row["test_accuracy_std"],
                fmt="o",
                color=color,
                capsize=4,
                markersize=7,
            )
            values = [_num(r["test_accuracy"]) for r in self.final_records(name)]
            ax.scatter([i + 0.18] * len(values), values, s=10, color=color, alpha=0.5)
        ax.set_xticks(range(len(rows)), [r["optimizer"] for r in rows], rotation=45, ha="right")
        ax.set_ylabel("test accuracy (mean ± std; dots: seeds)")
        ax.grid(alpha=0.3, axis="y")

    def plot_sensitivity(
        self, ax: Axes, split: Literal["train", "val"] = "val", *, show_width: bool = False
    ) -> None:
        """Final loss against learning rate per optimizer (log-log); x marks diverged rates.

        The loss is the mean over tune seeds of the final train or validation loss; the chosen
        rate is circled. ``show_width`` adds each optimizer's :meth:`lr_width` to its label.
        """
        key = f"final_{split}_loss"
        finite_max = 0.0
        diverged: list[tuple[str, float]] = []
        for name in self.optimizers:
            xs, ys = [], []
            for lr in self.grids[name]:
                runs = [r for r in self.tuning_records(name) if r["lr"] == lr]
                values = [_num(r[key]) for r in runs]
                if (
                    runs
                    and not any(r["diverged"] for r in runs)
                    and all(map(math.isfinite, values))
                ):
                    xs.append(lr)
                    ys.append(sum(values) / len(values))
                else:
                    diverged.append((name, lr))
            color = self.color(name)
            label = f"{name} ({self.lr_width(name):.1f})" if show_width else name
            ax.plot(xs, ys, marker="o", markersize=3, color=color, label=label)
            if ys:
                finite_max = max(finite_max, max(ys))
            chosen = self.chosen_lr[name]
            if chosen is not None and chosen in xs:
                ax.scatter(
                    [chosen], [ys[xs.index(chosen)]], s=70, facecolors="none", edgecolors=color
                )
        if diverged:
            # With no finite loss at all (every rate diverged) the marks need a height of
            # their own on the log axis.
            top = finite_max * 1.6 if finite_max > 0 else 1.0
            for name, lr in diverged:
                ax.scatter([lr], [top], marker="x", color=self.color(name), s=30)
            ax.axhline(top, color="grey", linestyle=":", linewidth=0.8)
            text = "diverged" if finite_max > 0 else "every rate diverged"
            ax.annotate(text, (0.01, top), xycoords=("axes fraction", "data"), fontsize=7)
            if finite_max == 0:
                ax.set_ylim(0.1, 10.0)
        ax.set_xscale("log")
        _log_axis(ax.yaxis)
        ax.set_xlabel("learning rate")
        ax.set_ylabel(f"final {'training' if split == 'train' else 'validation'} loss")
        ax.grid(alpha=0.3, which="both")

    def save_figures(self, out_dir: str | os.PathLike[str], prefix: str = "") -> list[Path]:
        """Write curves, test accuracy and sensitivity PNGs into ``out_dir``; their paths."""
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        title = " ".join(p for p in (self.label, self.setup) if p)
        paths = []

        fig = Figure(figsize=(7, 4.5))
        ax = fig.subplots()
        self.plot_curves(ax)
        ax.legend(fontsize=7, ncol=2)
        ax.set_title(f"Training loss at each optimizer's tuned lr\n{title}", fontsize=9)
        paths.append(save_figure(fig, folder / f"{prefix}curves.png"))

        fig = Figure(figsize=(7, 4.5))
        ax = fig.subplots()
        self.plot_test_accuracy(ax)
        ax.set_title(f"Final test accuracy at the tuned lr\n{title}", fontsize=9)
        paths.append(save_figure(fig, folder / f"{prefix}test_accuracy.png"))

        fig = Figure(figsize=(11, 4.5))
        axes = fig.subplots(1, 2)
        self.plot_sensitivity(axes[0], "train")
        self.plot_sensitivity(axes[1], "val")
        axes[1].legend(fontsize=7, ncol=2)
        fig.suptitle(f"Sensitivity to the learning rate (circle: chosen)\n{title}", fontsize=9)
        paths.append(save_figure(fig, folder / f"{prefix}sensitivity.png"))
        return paths


def _log_axis(axis: Any) -> None:
    """Log scale with plain numbers ("0.3", "2") instead of "3x10^-1" on a loss axis.

    Minor ticks are labelled only when the data span under 1.5 decades (else they crowd).
    """
    axis.axes.set_yscale("log")
    plain = FuncFormatter(lambda value, _: f"{value:.3g}")
    axis.set_major_formatter(plain)
    low, high = axis.axes.get_ylim()
    few_decades = low > 0 and math.log10(high / low) < 1.5
    axis.set_minor_formatter(plain if few_decades else NullFormatter())


def compare_optimizers(
    model_factory: Callable[[int], nn.Module],
    data: SplitDataset,
    optimizers: Sequence[OptimizerSpec],
    config: TrainConfig,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    tune_seeds: Sequence[int] | None = None,
    select_by: SelectBy = "final",
    tolerance: float = 0.1,
    unit: UnitRunner | None = None,
    key: Mapping[str, Any] | None = None,
    device: torch.device | str | None = None,
    label: str = "",
) -> Comparison:
    """Tune each optimizer's learning rate on validation loss, then train seeds at the choice.

    Args:
        model_factory: ``model_factory(seed) -> nn.Module``; every optimizer gets the same
            initial weights for a seed, so seed it (e.g. a ``torch.Generator``).
        data: train/validation/test splits; the validation split must not be empty. Tuning
            runs see only train and validation (:func:`without_test_split`).
        optimizers: the contenders and their grids (names must be distinct).
        config: the training budget (epochs, batch size, penalties...); its ``seed`` is
            replaced by each run's seed.
        seeds: the seeds of the evaluation runs at the chosen rates.
        tune_seeds: the seeds the tuning runs average over (default: the first of ``seeds``).
        select_by: ``"final"`` (validation loss after the last epoch) or ``"best"`` (its
            minimum over epochs).
        tolerance: the relative band of :func:`lr_width`.
        unit: ``unit(key, compute) -> record``; pass ``ctx.unit`` inside the lab, or
            :func:`dltricks.sweep.store_unit` elsewhere, so each run is stored and resumable.
            Default: call ``compute`` directly. A unit with a ``describe(info)`` method (as
            ``store_unit``'s) is given :meth:`Comparison.describe` once every run is done.
        key: extra fields of every run's key (e.g. ``{"model": "mlp"}``), kept in the records.
        device: where to train (default: where ``data`` is).
        label: a name shown in figure titles.

    Returns:
        A :class:`Comparison` whose ``records`` are the tuning runs (``phase="tune"``) and
        then the evaluation runs (``phase="final"``), in a fixed order.
    """
    names = [spec.name for spec in optimizers]
    if not names:
        raise ValueError("no optimizers to compare")
    if len(set(names)) != len(names):
        raise ValueError(f"optimizer names must be distinct, got {names}")
    if data.n_val == 0:
        raise ValueError("tuning needs a validation split, and data has none")
    if not seeds:
        raise ValueError("seeds must not be empty")
    if select_by not in ("final", "best"):
        raise ValueError(f"select_by must be 'final' or 'best', got {select_by!r}")
    tune = tuple(tune_seeds) if tune_seeds is not None else (seeds[0],)
    if not tune:
        raise ValueError("tune_seeds must not be empty")
    run_unit = unit if unit is not None else _direct
    extra = dict(key or {})
    tuning_data = without_test_split(data)

    records: list[dict[str, Any]] = []
    for spec in optimizers:
        for lr in spec.lrs:
            for seed in tune:
                records.append(
                    run_unit(
                        {**extra, "phase": "tune", "optimizer": spec.name, "lr": lr, "seed": seed},
                        partial(
                            _train,
                            model_factory,
                            spec.factory,
                            lr,
                            tuning_data,
                            config,
                            seed,
                            device,
                            with_test=False,
                        ),
                    )
                )
    grids = {spec.name: spec.lrs for spec in optimizers}
    # Choose from the tuning records alone, before any run touches the test split.
    chosen = Comparison(records, grids, select_by, tolerance).chosen_lr
    for spec in optimizers:
        lr_chosen = chosen[spec.name]
        if lr_chosen is None:
            continue  # every rate diverged: nothing to evaluate
        for seed in seeds:
            records.append(
                run_unit(
                    {
                        **extra,
                        "phase": "final",
                        "optimizer": spec.name,
                        "lr": lr_chosen,
                        "seed": seed,
                    },
                    partial(
                        _train,
                        model_factory,
                        spec.factory,
                        lr_chosen,
                        data,
                        config,
                        seed,
                        device,
                        with_test=True,
                    ),
                )
            )
    batch = "full batch" if config.batch_size is None else f"batch {config.batch_size}"
    setup = (
        f"[{data.name}, {config.epochs} epochs, {batch}; lr by {select_by} val loss on seed(s) "
        f"{', '.join(map(str, tune))}; {len(seeds)} seeds]"
    )
    result = Comparison(records, grids, select_by, tolerance, label=label, setup=setup)
    describe = getattr(run_unit, "describe", None)
    if callable(describe):
        describe(result.describe())
    return result
