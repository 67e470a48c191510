"""The optimizer-comparison helper: validation-only tuning, selection rule, table, figures."""

from __future__ import annotations

import math
import sqlite3
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from dltricks.data import SplitDataset, load_dataset
from dltricks.lab.compare import (
    Comparison,
    OptimizerSpec,
    compare_optimizers,
    half_decades,
    lr_width,
    without_test_split,
)
from dltricks.lab.results import canonical_json
from dltricks.optim import SGD, Adam
from dltricks.sweep import read_rows, store_unit
from dltricks.train import TrainConfig

CONFIG = TrainConfig(epochs=3, batch_size=256)
SEEDS = (0, 1)


def _logistic(seed: int) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    model = nn.Linear(64, 10)
    with torch.no_grad():
        model.weight.normal_(0.0, 0.125, generator=generator)
        model.bias.zero_()
    return model


# lr 1e38 overflows the logits to inf on the first step: a certain divergence, for both our
# optimizers (which refuse the NaN gradient) and torch's (whose loss turns NaN).
SPECS = [
    OptimizerSpec("SGD", lambda p, lr: SGD(p, lr=lr), (1.0, 0.01, 0.1, 1e38)),
    OptimizerSpec("Adam", lambda p, lr: Adam(p, lr=lr), (1e-3, 1e-2, 1e-1)),
    OptimizerSpec("torch-SGD", lambda p, lr: torch.optim.SGD(p, lr=lr), (0.1, 1e38)),
]


@pytest.fixture(scope="module")
def digits() -> SplitDataset:
    return load_dataset("digits")


def _compare(data: SplitDataset, **kwargs: Any) -> Comparison:
    return compare_optimizers(_logistic, data, SPECS, CONFIG, seeds=SEEDS, **kwargs)


@pytest.fixture(scope="module")
def comparison(digits: SplitDataset) -> Comparison:
    return _compare(digits, key={"model": "logistic"})


class _GuardedSplit(SplitDataset):
    """A SplitDataset whose test tensors raise while ``GUARD["tuning"]`` is set."""

    def __getattribute__(self, name: str) -> Any:
        if name in ("x_test", "y_test") and _GUARD["tuning"]:
            raise AssertionError(f"{name} was read during tuning")
        return super().__getattribute__(name)


_GUARD = {"tuning": False}


def test_tuning_never_reads_the_test_split(digits: SplitDataset) -> None:
    guarded = _GuardedSplit(**{f.name: getattr(digits, f.name) for f in fields(digits)})
    phases: list[str] = []

    def unit(key: dict[str, Any], compute: Any) -> dict[str, Any]:
        phases.append(key["phase"])
        if key["phase"] == "final":
            _GUARD["tuning"] = False  # evaluation may read the test split
        return {**key, **compute()}

    _GUARD["tuning"] = True
    with pytest.raises(AssertionError, match="read during tuning"):
        _ = guarded.x_test  # the guard is live: a leak would fail the comparison below
    try:
        result = compare_optimizers(_logistic, guarded, SPECS, CONFIG, seeds=SEEDS, unit=unit)
    finally:
        _GUARD["tuning"] = False
    n_tune = sum(len(s.lrs) for s in SPECS)
    assert phases == ["tune"] * n_tune + ["final"] * (len(SPECS) * len(SEEDS))
    # The evaluation runs did read the (unguarded) test split.
    assert all(math.isfinite(r["test_accuracy"]) for r in result.final_records())
    assert all(r["test_accuracy"] is None for r in result.tuning_records())


def test_poisoned_test_split_changes_nothing_in_tuning(
    digits: SplitDataset, comparison: Comparison
) -> None:
    poisoned = replace(
        digits,
        x_test=torch.full_like(digits.x_test, math.nan),
        y_test=(digits.y_test + 1) % digits.n_classes,
    )
    result = _compare(poisoned, key={"model": "logistic"})
    assert canonical_json(result.to_rows("tune")) == canonical_json(comparison.to_rows("tune"))
    assert result.chosen_lr == comparison.chosen_lr
    assert all(lr is not None and math.isfinite(lr) for lr in result.chosen_lr.values())
    # ...while the evaluation runs do see the poison.
    assert all(math.isnan(r["test_loss"]) for r in result.final_records())


def test_without_test_split_keeps_train_and_validation(digits: SplitDataset) -> None:
    view = without_test_split(digits)
    assert view.n_test == 0
    assert view.x_train is digits.x_train
    assert view.x_val is digits.x_val
    assert view.y_train is digits.y_train
    assert view.y_val is digits.y_val


@pytest.mark.parametrize("select_by", ["final", "best"])
def test_chosen_lr_minimises_validation_loss(
    digits: SplitDataset, comparison: Comparison, select_by: str
) -> None:
    result = comparison if select_by == "final" else _compare(digits, select_by=select_by)
    for spec in SPECS:
        scores = {}
        for r in result.tuning_records(spec.name):
            curve = [v for v in r["curve_val_loss"] if math.isfinite(v)]
            if r["diverged"] or not curve:
                continue
            scores[r["lr"]] = curve[-1] if select_by == "final" else min(curve)
        assert result.chosen_lr[spec.name] == min(scores, key=lambda lr: scores[lr])
        finals = result.final_records(spec.name)
        assert [r["seed"] for r in finals] == list(SEEDS)
        assert {r["lr"] for r in finals} == {result.chosen_lr[spec.name]}


def test_divergence_scores_infinite(comparison: Comparison) -> None:
    for name in ("SGD", "torch-SGD"):
        (diverged,) = [r for r in comparison.tuning_records(name) if r["lr"] == 1e38]
        assert diverged["diverged"]
        assert comparison.scores(name)[-1] == math.inf
    rows = {r["optimizer"]: r for r in comparison.summary_rows()}
    assert rows["SGD"]["diverged_lrs"] == 1
    assert rows["Adam"]["diverged_lrs"] == 0


def test_all_rates_diverging_leaves_no_evaluation(digits: SplitDataset) -> None:
    spec = OptimizerSpec("boom", lambda p, lr: SGD(p, lr=lr), (1e38,))
    result = compare_optimizers(_logistic, digits, [spec], CONFIG, seeds=SEEDS)
    assert result.chosen_lr == {"boom": None}
    assert result.final_records() == []
    assert "diverged" in result.to_markdown()


def test_tidy_table(comparison: Comparison) -> None:
    required = {"phase", "model", "optimizer", "lr", "seed", "final_train_loss", "test_accuracy"}
    rows = comparison.to_rows()
    assert len(rows) == sum(len(s.lrs) for s in SPECS) + len(SPECS) * len(SEEDS)
    for row in rows:
        assert required <= row.keys()
        assert not any(isinstance(v, list | dict) for v in row.values())
    assert all(r["phase"] == "final" for r in comparison.to_rows("final"))
    summary = comparison.summary_rows()
    assert [r["optimizer"] for r in summary] == [s.name for s in SPECS]
    for r in summary:
        values = [x["final_train_loss"] for x in comparison.final_records(r["optimizer"])]
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
        assert r["final_train_loss_mean"] == pytest.approx(mean)
        assert r["final_train_loss_std"] == pytest.approx(std)
    lines = comparison.to_markdown().splitlines()
    assert len(lines) == 2 + len(SPECS)
    assert all(f"| {s.name} |" in line for s, line in zip(SPECS, lines[2:], strict=True))


def test_records_route_through_unit_and_resume(digits: SplitDataset) -> None:
    store: dict[str, dict[str, Any]] = {}
    computed = []

    def unit(key: dict[str, Any], compute: Any) -> dict[str, Any]:
        name = repr(sorted(key.items()))
        if name not in store:
            computed.append(name)
            store[name] = {**key, **compute()}
        return store[name]

    first = _compare(digits, unit=unit)
    n_runs = len(computed)
    assert n_runs == len(first.records)
    second = _compare(digits, unit=unit)  # a resumed run: every unit is already stored
    assert len(computed) == n_runs
    assert second.records is not first.records
    assert all(a is b for a, b in zip(second.records, first.records, strict=True))
    assert second.chosen_lr == first.chosen_lr


def test_same_seed_same_records(digits: SplitDataset, comparison: Comparison) -> None:
    again = _compare(digits, key={"model": "logistic"})
    # canonical JSON: NaN (diverged runs) compares equal to itself there, as in results.json.
    assert canonical_json(again.records) == canonical_json(comparison.records)


def test_lr_width_by_hand() -> None:
    lrs = [1e-3, 1e-2, 1e-1, 1.0]
    # band: score <= 1.1; crossings in log10(lr): left -2 - 0.05/0.95, right -1 + 0.1/0.32.
    expected = (-1 + 0.1 / 0.32) - (-2 - 0.05 / 0.95)
    assert lr_width(lrs, [2.0, 1.05, 1.0, 1.32]) == pytest.approx(expected)
    assert lr_width(lrs[::-1], [1.32, 1.0, 1.05, 2.0]) == pytest.approx(expected)  # any order
    # A diverged neighbour ends the band at the last point inside; a grid end is a bound.
    assert lr_width(lrs, [math.inf, 1.0, 1.08, 1.09]) == pytest.approx(2.0)
    assert lr_width(lrs, [5.0, 1.0, 5.0, 5.0], tolerance=0.0) == 0.0
    assert math.isnan(lr_width(lrs, [math.inf] * 4))


def test_half_decades() -> None:
    assert half_decades(1e-3, 1e-1) == (0.001, 0.00316, 0.01, 0.0316, 0.1)
    assert half_decades(0.1, 31.6) == (0.1, 0.316, 1.0, 3.16, 10.0, 31.6)


def test_figures(comparison: Comparison, tmp_path: Any) -> None:
    paths = comparison.save_figures(tmp_path, prefix="x_")
    assert [p.name for p in paths] == ["x_curves.png", "x_test_accuracy.png", "x_sensitivity.png"]
    assert all(p.stat().st_size > 10_000 for p in paths)


def test_bad_arguments(digits: SplitDataset) -> None:
    with pytest.raises(ValueError, match="empty"):
        OptimizerSpec("x", lambda p, lr: SGD(p, lr=lr), ())
    with pytest.raises(ValueError, match="> 0"):
        OptimizerSpec("x", lambda p, lr: SGD(p, lr=lr), (0.0, 1.0))
    with pytest.raises(ValueError, match="distinct"):
        compare_optimizers(_logistic, digits, [SPECS[0], SPECS[0]], CONFIG)
    no_val = replace(digits, x_val=digits.x_val[:0], y_val=digits.y_val[:0])
    with pytest.raises(ValueError, match="validation"):
        compare_optimizers(_logistic, no_val, SPECS, CONFIG)


# -- the comparison on a SQLite store (dltricks.sweep.store_unit) ------------------------------

SMALL = [
    OptimizerSpec("SGD", lambda p, lr: SGD(p, lr=lr), (0.01, 0.1)),
    OptimizerSpec("Adam", lambda p, lr: Adam(p, lr=lr), (1e-3, 1e-2)),
]
# 2 + 2 tuning runs on seed 0, then 2 optimizers x 2 seeds at the chosen rates.
SMALL_UNITS = 8


def _small(data: SplitDataset, **kwargs: Any) -> Comparison:
    return compare_optimizers(_logistic, data, SMALL, CONFIG, seeds=SEEDS, **kwargs)


def _integrity(path: Path) -> str:
    db = sqlite3.connect(path)
    try:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()


@pytest.fixture(scope="module")
def direct(digits: SplitDataset) -> Comparison:
    """The small comparison without any store: the reference for the stored ones."""
    return _small(digits, label="small")


def test_a_stored_comparison_reruns_nothing_and_gives_the_same_tables(
    digits: SplitDataset, direct: Comparison, tmp_path: Path
) -> None:
    path = tmp_path / "my-comparison.sqlite"
    first_unit = store_unit(path)
    first = _small(digits, unit=first_unit, label="small")
    assert len(first_unit.ran) == SMALL_UNITS
    # Nothing diverges here, so the JSON round trip changes no value: same as without a store.
    assert first.to_markdown() == direct.to_markdown()
    assert first.records == direct.records

    second_unit = store_unit(path)
    second = _small(digits, unit=second_unit, label="small")
    assert second_unit.ran == [], "every run was read back from the store"
    assert second.to_markdown() == first.to_markdown()
    assert second.records == first.records

    rebuilt = Comparison.from_store(path)
    assert rebuilt.records == first.records
    assert rebuilt.to_markdown() == first.to_markdown()
    assert (rebuilt.grids, rebuilt.label, rebuilt.setup) == (first.grids, "small", first.setup)

    rows = read_rows(path)
    assert len(rows) == SMALL_UNITS
    assert {r.status for r in rows} == {"done"}
    assert {r.spec["unit"] for r in rows} == {"my-comparison"}
    assert sorted(r.attempts for r in rows) == [1] * SMALL_UNITS
    assert _integrity(path) == "ok"


def test_an_interrupted_stored_comparison_resumes_with_only_the_missing_runs(
    digits: SplitDataset, direct: Comparison, tmp_path: Path
) -> None:
    path = tmp_path / "runs.sqlite"
    done_before_kill = 3
    stored = store_unit(path, name="small")
    computed = 0

    def killed_after_k(key: dict[str, Any], compute: Any) -> dict[str, Any]:
        def maybe() -> dict[str, Any]:
            nonlocal computed
            if computed == done_before_kill:
                raise RuntimeError("killed midway")
            computed += 1
            result: dict[str, Any] = compute()
            return result

        return stored(key, maybe)

    with pytest.raises(RuntimeError, match="killed midway"):
        _small(digits, unit=killed_after_k)
    rows = read_rows(path)
    assert sorted(r.status for r in rows) == ["done"] * done_before_kill + ["failed"]
    assert "RuntimeError: killed midway" in next(r.error or "" for r in rows if r.error)
    with pytest.raises(ValueError, match="no finished unit group 'small'"):
        Comparison.from_store(path, name="small")

    resumed_unit = store_unit(path, name="small")
    resumed = _small(digits, unit=resumed_unit, label="small")
    assert len(resumed_unit.ran) == SMALL_UNITS - done_before_kill
    assert resumed.records == direct.records
    assert resumed.to_markdown() == direct.to_markdown()
    assert Comparison.from_store(path, name="small").records == direct.records
    rows = read_rows(path)
    assert len(rows) == SMALL_UNITS
    assert {r.status for r in rows} == {"done"}
    assert sorted(r.attempts for r in rows).count(2) == 1, "the killed run was tried twice"
    assert _integrity(path) == "ok"
