"""Grid parsing, expansion, and run ids that are the same in every process."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dltricks.lab.runner import run_config
from dltricks.sweep import SweepSpec, SweepSpecError, expand, parse_grid_item
from dltricks.sweep.spec import split_values
from tests.sweep.helpers import tiny_sweep


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lr=0.1,0.01", ("lr", [0.1, 0.01])),
        ("lr=1e-3", ("lr", [0.001])),
        ("name=adam,sgd", ("name", ["adam", "sgd"])),
        (
            'problems=["noisy"],["constant","noisy"]',
            ("problems", [["noisy"], ["constant", "noisy"]]),
        ),
        ('opt={"a":1,"b":[2,3]},null', ("opt", [{"a": 1, "b": [2, 3]}, None])),
        ("flag=true,false", ("flag", [True, False])),
        ('text="a,b",c', ("text", ["a,b", "c"])),
        (" lr = 0.5 , 1 ", ("lr", [0.5, 1])),
    ],
)
def test_grid_items_parse_like_set_with_top_level_commas(
    text: str, expected: tuple[str, list[object]]
) -> None:
    assert parse_grid_item(text) == expected


@pytest.mark.parametrize("text", ["lr", "=1,2", "lr=", "lr=1,,2", "lr=[1,2", "lr=1]", 'lr="a'])
def test_malformed_grid_items_are_refused(text: str) -> None:
    with pytest.raises(SweepSpecError):
        parse_grid_item(text)


def test_split_values_keeps_nested_commas() -> None:
    assert split_values('[1,[2,3]],{"k":"x,y"},4') == ["[1,[2,3]]", '{"k":"x,y"}', "4"]


def test_expansion_is_the_product_first_key_slowest_then_seeds() -> None:
    sweep = SweepSpec("bias-correction", {"lr": [0.1, 0.2], "dim": [3, 4, 5]}, seeds=2, seed=7)
    specs = expand(sweep)
    assert len(specs) == 2 * 3 * 2
    assert [(s.overrides["lr"], s.overrides["dim"], s.seed) for s in specs[:4]] == [
        (0.1, 3, 7),
        (0.1, 3, 8),
        (0.1, 4, 7),
        (0.1, 4, 8),
    ]
    assert len({s.run_id for s in specs}) == len(specs), "different settings, different ids"


def test_run_id_is_sha256_of_the_canonical_lab_config() -> None:
    # An independent reference: sha256 of the sorted, compact JSON of the lab run's config.
    (spec,) = expand(SweepSpec("bias-correction", {"lr": [0.25]}, seed=3, quick=True))
    config = run_config(
        "bias-correction",
        quick=True,
        seed=3,
        seeds=1,
        data_dir=None,
        overrides={"lr": 0.25},
    )
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    assert spec.run_id == hashlib.sha256(text.encode()).hexdigest()[:16]


def test_each_difference_changes_the_id() -> None:
    base = expand(SweepSpec("bias-correction", {"lr": [0.1]}, quick=True))[0].run_id
    others = [
        SweepSpec("bias-correction", {"lr": [0.2]}, quick=True),
        SweepSpec("bias-correction", {"lr": [0.1]}, quick=False),
        SweepSpec("bias-correction", {"lr": [0.1]}, seed=1, quick=True),
        SweepSpec("bias-correction", {"lr": [0.1], "dim": [7]}, quick=True),
        SweepSpec("amsgrad", {}, quick=True),
    ]
    ids = [expand(s)[0].run_id for s in others]
    assert base not in ids
    assert len(set(ids)) == len(ids)


def test_a_default_written_out_is_the_same_run() -> None:
    # The id hashes the full configuration, so naming a default does not make a new run.
    quick_lr = run_config("bias-correction", quick=True, seed=0, seeds=1, data_dir=None)["config"][
        "lr"
    ]
    implicit = expand(SweepSpec("bias-correction", {}, quick=True))[0]
    explicit = expand(SweepSpec("bias-correction", {"lr": [quick_lr]}, quick=True))[0]
    assert implicit.run_id == explicit.run_id


def test_ids_are_the_same_in_another_process() -> None:
    sweep = tiny_sweep([0.001, 0.01])
    here = [s.run_id for s in expand(sweep)]
    code = (
        "from dltricks.sweep import expand\n"
        "from tests.sweep.helpers import tiny_sweep\n"
        "print(' '.join(s.run_id for s in expand(tiny_sweep([0.001, 0.01]))))\n"
    )
    # Another hash seed: nothing may depend on set or dict iteration order of str hashes.
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    there = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=Path(__file__).parents[2],
    ).stdout.split()
    assert here == there


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        (SweepSpec("no-such"), "unknown experiment 'no-such'"),
        (SweepSpec("bias-correction", {"lrr": [1]}), "has no setting 'lrr'"),
        (SweepSpec("bias-correction", {"lr": []}), "has no values"),
        (SweepSpec("bias-correction", {"seeds": [1, 2]}), "use --seeds"),
        (SweepSpec("bias-correction", seeds=0), "--seeds must be >= 1"),
        (SweepSpec("bias-correction", seed=-1), "--seed must be >= 0"),
    ],
)
def test_bad_sweeps_are_refused(sweep: SweepSpec, message: str) -> None:
    with pytest.raises(SweepSpecError, match=message):
        expand(sweep)


def test_a_repeated_value_runs_once() -> None:
    specs = expand(SweepSpec("bias-correction", {"lr": [0.1, 0.1, 0.2]}))
    assert [s.overrides["lr"] for s in specs] == [0.1, 0.2]
