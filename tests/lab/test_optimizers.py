"""The ``optimizers`` experiment: Kingma & Ba's logistic-regression claim at reduced size.

Reduced size (documented): the quick configuration (digits, 20 epochs, batch 128, the full
half-decade grids, 3 seeds) restricted to logistic regression and the four optimizers of
Kingma & Ba's figure 1 (SGD, SGD-Nesterov, AdaGrad, Adam); about 5 s of CPU.

Calibration, 10 seeds (``--seed 0..9``) of exactly this configuration, ratios of the
optimizers' tuned values:

| quantity                                   | min   | max   | threshold  |
|--------------------------------------------|-------|-------|------------|
| Adam val loss / best val loss              | 1.000 | 1.232 | < 1.35     |
| Adam val loss / Nesterov val loss          | 0.876 | 1.115 | < 1.25     |
| Adam train loss / Nesterov train loss      | 0.35  | 1.72  | < 2.5      |
| best test accuracy - Adam test accuracy    | 0.000 | 0.0074| < 0.015    |

Kingma & Ba's "Adam is faster than AdaGrad" does NOT reproduce robustly here: Adam's train
loss / AdaGrad's ranged 0.28-1.96 and Adam's val loss / AdaGrad's 0.81-1.23 over those seeds,
so it is not asserted. Which optimizer has the lowest training loss flips with the tuning seed
(Adam's validation loss at lr 0.0316 and 0.1 differ by less than the seed noise).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from dltricks.lab import run_experiment
from dltricks.lab.experiments.optimizers import GRIDS, hidden_matrices, muon_adamw, summary_table

REDUCED = {"models": ["logistic"], "optimizers": ["SGD", "Nesterov", "AdaGrad", "Adam"]}
TINY = {
    "models": ["logistic", "mlp"],
    "optimizers": ["SGD", "Adam"],
    "grids": {"SGD": [0.1, 1.0], "Adam": [0.001, 0.01]},
    "epochs": 2,
    "mlp_width": 16,
}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("optimizers")
    return run_experiment("optimizers", out_root=out, quick=True, overrides=REDUCED).results


def _means(records: list[dict[str, Any]], key: str) -> dict[str, float]:
    by: dict[str, list[float]] = {}
    for r in records:
        if r["phase"] == "final":
            by.setdefault(r["optimizer"], []).append(r[key])
    return {k: sum(v) / len(v) for k, v in by.items()}


def _tuned_val_loss(records: list[dict[str, Any]]) -> dict[str, float]:
    """Each optimizer's best final validation loss over its grid (the tuning criterion)."""
    best: dict[str, float] = {}
    for r in records:
        if r["phase"] == "tune" and not r["diverged"] and r["final_val_loss"] is not None:
            name = r["optimizer"]
            best[name] = min(best.get(name, math.inf), r["final_val_loss"])
    return best


def test_records_are_tidy_and_complete(results: dict[str, Any]) -> None:
    records = results["records"]
    required = {"phase", "optimizer", "model", "lr", "seed", "final_train_loss", "test_accuracy"}
    assert all(required <= r.keys() for r in records)
    tune = [r for r in records if r["phase"] == "tune"]
    final = [r for r in records if r["phase"] == "final"]
    n_seeds = len(results["config"]["seeds"])
    assert len(tune) == sum(len(GRIDS[name]) for name in REDUCED["optimizers"])
    assert len(final) == len(REDUCED["optimizers"]) * n_seeds
    assert all(r["test_accuracy"] is None for r in tune)  # tuning never measured the test split
    assert all(0.0 <= r["test_accuracy"] <= 1.0 for r in final)
    assert all(len(r["curve_train_loss"]) == results["config"]["config"]["epochs"] for r in final)
    chosen = results["summary"]["models"]["logistic"]["chosen_lr"]
    for name, lr in chosen.items():
        assert {r["lr"] for r in final if r["optimizer"] == name} == {lr}
    assert results["figures"] == [
        "optimizers_curves.png",
        "optimizers_sensitivity.png",
        "optimizers_test_accuracy.png",
    ]


def test_summary_agrees_with_records(results: dict[str, Any]) -> None:
    summary = results["summary"]["models"]["logistic"]
    train = _means(results["records"], "final_train_loss")
    test = _means(results["records"], "test_accuracy")
    assert summary["best_train_loss"] == min(train, key=lambda k: train[k])
    assert summary["best_test_accuracy"] == max(test, key=lambda k: test[k])
    ranked = sorted(train, key=lambda k: train[k])
    assert summary["adam_rank_train_loss"] == ranked.index("Adam") + 1
    # The finding names where Adam does not win, and only there.
    finding = results["summary"]["finding"]
    adam_first = ranked[0] == "Adam" and max(test, key=lambda k: test[k]) == "Adam"
    assert ("Adam does not win" in finding) == (not adam_first)


def test_adam_matches_the_best_on_logistic_regression(results: dict[str, Any]) -> None:
    """Kingma & Ba, fig. 1: tuned Adam ~ SGD-Nesterov on logistic regression (see calibration)."""
    records = results["records"]
    val = _tuned_val_loss(records)
    train = _means(records, "final_train_loss")
    test = _means(records, "test_accuracy")
    assert val["Adam"] < 1.35 * min(val.values())  # measured max 1.232 over 10 seeds
    assert val["Adam"] < 1.25 * val["Nesterov"]  # measured 0.876-1.115
    assert train["Adam"] < 2.5 * train["Nesterov"]  # measured 0.35-1.72
    assert max(test.values()) - test["Adam"] < 0.015  # measured 0.000-0.0074


def test_same_seed_same_results(tmp_path: Path) -> None:
    first = run_experiment(
        "optimizers", out_root=tmp_path / "a", quick=True, seeds=2, overrides=TINY
    )
    second = run_experiment(
        "optimizers", out_root=tmp_path / "b", quick=True, seeds=2, overrides=TINY
    )
    assert first.results_path.read_bytes() == second.results_path.read_bytes()
    assert {r["model"] for r in first.results["records"]} == {"logistic", "mlp"}


def test_muon_adamw_is_torchs_muon_on_the_hidden_matrices_and_adamw_on_the_rest() -> None:
    """The lab's Muon+AdamW against torch.optim.Muon (Moonlight's scaling) + torch.optim.AdamW
    on the same split, in float64, one learning rate and weight decay for both."""

    def model() -> nn.Sequential:
        torch.manual_seed(0)
        layers = [nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)]
        return nn.Sequential(*layers)

    torch.manual_seed(1)
    x, y = torch.randn(16, 6, dtype=torch.float64), torch.randint(0, 3, (16,))
    mine, theirs = model().double(), model().double()
    hidden = hidden_matrices(theirs.parameters())
    assert [id(p) for p in hidden] == [id(theirs[0].weight), id(theirs[2].weight)]
    rest = [p for p in theirs.parameters() if all(p is not h for h in hidden)]
    lr, decay = 3e-2, 1e-2
    reference = [
        torch.optim.Muon(hidden, lr=lr, weight_decay=decay, adjust_lr_fn="match_rms_adamw"),
        torch.optim.AdamW(rest, lr=lr, weight_decay=decay),
    ]
    optimizers = [muon_adamw(mine.parameters(), lr, weight_decay=decay)]
    for net, opts in ((mine, optimizers), (theirs, reference)):
        for _ in range(6):
            for opt in opts:
                opt.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            for opt in opts:
                opt.step()
    for p, q in zip(mine.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="hidden weight matrix"):
        muon_adamw(nn.Linear(3, 2).parameters(), lr)


def test_adafactor_and_muon_adamw_take_part_where_they_apply(tmp_path: Path) -> None:
    """Muon+AdamW runs on the MLP only (logistic regression has no hidden matrix) and says so;
    Adafactor on both; both appear in the summary table."""
    overrides = {
        **TINY,
        "optimizers": ["Adam", "Adafactor", "Muon+AdamW"],
        "grids": {"Adam": [0.01], "Adafactor": [0.01], "Muon+AdamW": [0.01]},
        "epochs": 1,
    }
    run = run_experiment("optimizers", out_root=tmp_path, quick=True, seeds=1, overrides=overrides)
    results = run.results
    models = results["summary"]["models"]
    assert set(models["logistic"]["val_loss"]) == {"Adam", "Adafactor"}
    assert set(models["mlp"]["val_loss"]) == {"Adam", "Adafactor", "Muon+AdamW"}
    assert models["logistic"]["not_applicable"] == ["Muon+AdamW"]
    assert models["mlp"]["not_applicable"] == []
    assert "Muon+AdamW left out of logistic regression" in results["summary"]["finding"]
    final = [r for r in results["records"] if r["phase"] == "final"]
    assert {(r["model"], r["optimizer"]) for r in final} == {
        ("logistic", "Adam"),
        ("logistic", "Adafactor"),
        ("mlp", "Adam"),
        ("mlp", "Adafactor"),
        ("mlp", "Muon+AdamW"),
    }
    table = summary_table(results)
    rows = {row[0]: row for row in table["rows"]}
    assert rows["Muon+AdamW"][1:5] == [None, None, "—", None]  # not run on logistic regression
    assert rows["Muon+AdamW"][5] == 0.01
    assert "not run on that model" in table["note"]
