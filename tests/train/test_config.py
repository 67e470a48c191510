"""Argument validation of TrainConfig and EarlyStopping."""

from __future__ import annotations

import json
import math

import pytest

from dltricks.train import EarlyStopping, TrainConfig

BAD_CONFIGS = [
    ({"epochs": 0}, "epochs"),
    ({"epochs": -3}, "epochs"),
    ({"epochs": 2.5}, "epochs"),
    ({"epochs": True}, "epochs"),
    ({"epochs": 1, "batch_size": 0}, "batch_size"),
    ({"epochs": 1, "batch_size": -1}, "batch_size"),
    ({"epochs": 1, "l1": -0.1}, "l1"),
    ({"epochs": 1, "l2": -1e-9}, "l2"),
    ({"epochs": 1, "l2": math.nan}, "l2"),
    ({"epochs": 1, "l1": math.inf}, "l1"),
    ({"epochs": 1, "seed": -1}, "seed"),
    ({"epochs": 1, "eval_batch_size": 0}, "eval_batch_size"),
    ({"epochs": 1, "early_stopping": 5}, "early_stopping"),
]


@pytest.mark.parametrize(("kwargs", "name"), BAD_CONFIGS)
def test_bad_config(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        TrainConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"patience": -1}, "patience"),
        ({"patience": 1.5}, "patience"),
        ({"min_delta": -0.1}, "min_delta"),
        ({"min_delta": math.nan}, "min_delta"),
        ({"restore_best": 1}, "restore_best"),
    ],
)
def test_bad_early_stopping(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        EarlyStopping(**kwargs)


def test_round_trip_through_json() -> None:
    config = TrainConfig(epochs=3, batch_size=None, l1=0.1, early_stopping=EarlyStopping(2, 0.01))
    again = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
