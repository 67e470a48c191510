"""The report page without a browser: escaping, compact tables, data files, lecture order."""

from __future__ import annotations

import csv
import io
import statistics

import pytest

from dltricks.lab.report.data import records_csv
from dltricks.lab.report.page import ExperimentView, SectionView, render_page
from dltricks.lab.report.story import lecture_order
from dltricks.lab.report.tables import results_table


def test_text_from_results_is_escaped_by_the_template_engine() -> None:
    view = ExperimentView(
        name="x",
        question="Does <b>bold</b> survive?",
        claim="<script>alert(1)</script>",
        source="a & b",
        finding="f",
        figures=[],
        table=results_table({}),
        setup={"k": "<i>"},
        reproduce="dltricks run x",
    )
    html = render_page([SectionView("dropout", [view])], title="T <x>", meta="m")
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Does &lt;b&gt;bold&lt;/b&gt; survive?" in html
    assert "a &amp; b" in html
    assert "<title>T &lt;x&gt;</title>" in html


def test_many_settings_become_columns_of_a_short_table() -> None:
    activations, depths, seeds = ["sigmoid", "relu", "selu"], list(range(1, 11)), [0, 1]
    records = [
        {"activation": a, "depth": d, "seed": s, "train_accuracy": 0.1 * d + 0.01 * s + i}
        for i, a in enumerate(activations)
        for d in depths
        for s in seeds
    ]
    table = results_table({"records": records, "record_keys": ["activation", "depth", "seed"]})
    # 30 settings; depth has 10 values (too many columns), activation 3: rows per depth.
    assert len(table.rows) == 10
    assert table.headers == ["depth", "activation sigmoid", "activation relu", "activation selu"]
    values = [0.1 * 4 + i + 0.01 * s for i in (1,) for s in seeds]  # relu at depth 4
    mean, sd = statistics.mean(values), statistics.stdev(values)
    shown_mean, shown_sd = table.rows[3][2].split(" ± ")
    assert float(shown_mean) == pytest.approx(mean, rel=1e-3)
    assert float(shown_sd) == pytest.approx(sd, rel=1e-3)


def test_a_table_with_no_short_form_shows_15_rows_and_says_so() -> None:
    records = [{"name": f"n{i}", "value": float(i)} for i in range(40)]
    table = results_table({"records": records, "record_keys": ["name"]})
    assert len(table.rows) == 15
    assert "first 15 of 40" in table.note


def test_records_csv_has_the_scalar_entries_settings_first() -> None:
    records = [
        {"loss": 0.5, "curve": [1, 2], "seed": 0, "name": "a", "ok": True},
        {"loss": None, "seed": 1, "name": "b,c", "ok": False},
    ]
    rows = list(csv.DictReader(io.StringIO(records_csv(records, ["name", "seed"]))))
    assert list(rows[0]) == ["name", "seed", "loss", "ok"]
    assert rows == [
        {"name": "a", "seed": "0", "loss": "0.5", "ok": "true"},
        {"name": "b,c", "seed": "1", "loss": "", "ok": "false"},
    ]


def test_lecture_order_puts_unknown_experiments_last_by_name() -> None:
    assert lecture_order(["zeta", "optimizers", "alpha", "depth"]) == [
        "depth",
        "optimizers",
        "alpha",
        "zeta",
    ]
