"""Verdicts: the three-way rule, the Verdict checks, and each experiment's judge on results
written by hand (the expected verdict worked out here from the numbers, not by the judge)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from dltricks.lab.registry import TRICKS, all_experiments
from dltricks.lab.verdicts import Verdict, check_verdicts, from_checks, judged

THREE = ("reproduced", "partly reproduced", "not reproduced")


@pytest.mark.parametrize(
    ("checks", "expected"),
    [
        ([True, True], "reproduced"),
        ([True, False], "partly reproduced"),
        ([False, False], "not reproduced"),
        ([], "not reproduced"),
    ],
)
def test_a_claim_holds_when_every_check_does(checks: list[bool], expected: str) -> None:
    assert from_checks(checks) == expected


def test_a_verdict_refuses_an_unknown_word_and_empty_text() -> None:
    with pytest.raises(ValueError, match="verdict must be one of"):
        Verdict("claim.", "confirmed", "why", "rule")
    with pytest.raises(ValueError, match="non-empty reason"):
        Verdict("claim.", "reproduced", " ", "rule")
    with pytest.raises(TypeError, match="must return Verdicts"):
        check_verdicts([{"verdict": "reproduced"}])


def test_the_reason_names_the_checks_that_failed() -> None:
    verdict = judged("C.", {"a": True, "b": False}, rule="r", measured="m")
    assert verdict.verdict == "partly reproduced"
    assert verdict.reason == "m (holds for 1 of 2; not for b)"


def test_every_experiment_asks_a_question_and_judges_its_claims() -> None:
    for name, experiment in all_experiments().items():
        assert experiment.question.endswith("?"), name
        assert experiment.judge is not None, f"{name} gives no verdicts"


def _results(summary: dict[str, Any], config: dict[str, Any], records: Any = ()) -> dict[str, Any]:
    return {"summary": summary, "config": {"config": config}, "records": list(records)}


def _judge(name: str, results: dict[str, Any]) -> list[Verdict]:
    judge = all_experiments()[name].judge
    assert judge is not None
    verdicts = judge(results)
    for v in verdicts:
        assert v.verdict in THREE
        assert v.trick is None or v.trick in TRICKS
    return verdicts


def test_depth_sigmoid_collapses_and_relu_but_not_selu_keeps_training() -> None:
    results = _results(
        {"collapse_depth": {"sigmoid": 5, "relu": None, "selu": 8}, "collapse_threshold": 0.25},
        {"depths": [1, 5, 8, 10]},
    )
    sigmoid, others = _judge("depth", results)
    assert sigmoid.verdict == "reproduced"
    assert "depth 5" in sigmoid.reason
    assert others.verdict == "partly reproduced"
    assert "selu" in others.reason


def test_bias_correction_against_the_formula_computed_here() -> None:
    beta1, beta2s = 0.9, (0.99, 0.999, 0.9999)
    formula = {str(b): (1 - beta1) / math.sqrt(1 - b) for b in beta2s}
    # Measured: the formula for two beta2s, 20% off for the third; corrected steps of about 1.
    first = {**formula, "0.9999": formula["0.9999"] * 1.2}
    records = [
        {"problem": "constant", "beta2": b, "bias_correction": True, "first_step_over_lr": 1.0}
        for b in beta2s
    ]
    results = _results(
        {"first_step_over_lr_uncorrected": first, "formula_over_lr": formula},
        {"problems": ["constant"]},
        records,
    )
    uncorrected, corrected = _judge("bias-correction", results)
    assert uncorrected.verdict == "partly reproduced"
    assert "beta2=0.9999" in uncorrected.reason
    assert corrected.verdict == "reproduced"


def test_amsgrad_counts_the_settings_where_adam_and_amsgrad_part() -> None:
    results = _results({"reproduced": {"theorem/constant": False, "synthetic/constant": False}}, {})
    (verdict,) = _judge("amsgrad", results)
    assert verdict.verdict == "not reproduced"


def test_generalization_puts_each_claim_in_its_section() -> None:
    summary = {
        "test_gain_over_plain": {"early_stopping": 0.01, "l2": 0.02, "l1": -0.01, "dropout": 0.03},
        "mean_train_accuracy": {"plain": 1.0, "dropout": 0.97},
        "plain_best_epochs": [10, 12, 50],
    }
    verdicts = _judge("generalization", _results(summary, {"epochs": 60}))
    by_trick = {v.trick: [] for v in verdicts}
    for v in verdicts:
        by_trick[v.trick].append(v.verdict)
    # 50 > 0.75 * 60 = 45: one of three seeds has its minimum late.
    assert by_trick["early stopping"] == ["partly reproduced", "reproduced"]
    assert by_trick["regularization"] == ["partly reproduced"]
    assert by_trick["dropout"] == ["reproduced"]


def test_optimizers_judges_adam_per_model() -> None:
    def model(rank: int, tied: list[str], widths: dict[str, float]) -> dict[str, Any]:
        return {
            "val_loss": dict.fromkeys(widths, 0.1),
            "adam_rank_train_loss": rank,
            "adam_rank_test_accuracy": rank,
            "tied_with_best_test": tied,
            "lr_width_decades": widths,
        }

    # Widths: Adam 1.0 against SGD 0.5 and Lion 2.0: the median is 1.0, Adam's is not below.
    summary = {
        "models": {
            "logistic": model(1, ["Adam"], {"Adam": 1.0, "SGD": 0.5, "Lion": 2.0}),
            "mlp": model(2, ["SGD"], {"Adam": 0.4, "SGD": 0.5, "Lion": 2.0}),
        }
    }
    fastest, test, robust = _judge("optimizers", _results(summary, {}))
    assert fastest.verdict == "partly reproduced"
    assert test.verdict == "partly reproduced"
    assert robust.verdict == "partly reproduced"
