"""Every invalid hyperparameter raises ValueError naming the argument and its value."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import dltricks.optim as ours

INVALID: list[tuple[type[torch.optim.Optimizer], dict[str, Any], str]] = [
    (ours.SGD, {"lr": -0.1}, r"Invalid learning rate: -0\.1: lr must be >= 0"),
    (ours.SGD, {"lr": float("nan")}, r"Invalid learning rate: nan: lr must be finite"),
    (ours.SGD, {"lr": "fast"}, r"Invalid learning rate: 'fast': lr must be a number"),
    (ours.SGD, {"momentum": -0.5}, r"Invalid momentum value: -0\.5: momentum must be >= 0"),
    (ours.SGD, {"dampening": -1.0}, r"dampening must be >= 0"),
    (ours.SGD, {"weight_decay": -1e-4}, r"Invalid weight_decay value: -0\.0001: weight_decay must"),
    (
        ours.SGD,
        {"nesterov": True},
        r"Nesterov momentum requires .*: nesterov=True requires momentum > 0",
    ),
    (ours.SGD, {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, r"dampening = 0"),
    (ours.SGD, {"nesterov": 1}, r"nesterov must be True or False, got 1"),
    (ours.Momentum, {"momentum": -0.9}, r"momentum must be >= 0"),
    (ours.Adagrad, {"lr": -1.0}, r"lr must be >= 0"),
    (ours.Adagrad, {"lr_decay": -0.1}, r"lr_decay must be >= 0"),
    (ours.Adagrad, {"initial_accumulator_value": -1.0}, r"initial_accumulator_value must be"),
    (ours.Adagrad, {"eps": -1e-10}, r"eps must be >= 0"),
    (ours.RMSprop, {"alpha": 1.5}, r"Invalid alpha value: 1\.5: alpha must be in \[0, 1\]"),
    (ours.RMSprop, {"alpha": -0.1}, r"alpha must be in \[0, 1\]"),
    (ours.RMSprop, {"momentum": -0.1}, r"momentum must be >= 0"),
    (ours.RMSprop, {"centered": "yes"}, r"centered must be True or False"),
    (
        ours.Adam,
        {"betas": (1.0, 0.999)},
        r"Invalid beta parameter at index 0: 1\.0: betas\[0\] must be in",
    ),
    (
        ours.Adam,
        {"betas": (0.9, -0.1)},
        r"Invalid beta parameter at index 1: -0\.1: betas\[1\] must be",
    ),
    (ours.Adam, {"betas": (0.9,)}, r"betas must be a pair"),
    (ours.Adam, {"eps": -1e-8}, r"Invalid epsilon value: -1e-08: eps must be >= 0"),
    (ours.Adam, {"weight_decay": -0.1}, r"weight_decay must be >= 0"),
    (
        ours.Adam,
        {"lr": torch.tensor([1e-3, 1e-3])},
        r"Tensor lr must be 1-element: lr must be a number or a one",
    ),
    (ours.Adam, {"amsgrad": None}, r"amsgrad must be True or False"),
    (ours.AdamW, {"weight_decay": -0.01}, r"weight_decay must be >= 0"),
    (ours.Adamax, {"betas": (0.9, 1.0)}, r"betas\[1\] must be in \[0, 1\)"),
    (ours.NAdam, {"momentum_decay": -0.004}, r"momentum_decay must be >= 0"),
    (ours.Adadelta, {"rho": 1.1}, r"Invalid rho value: 1\.1: rho must be in \[0, 1\]"),
    (ours.Adadelta, {"lr": -1.0}, r"lr must be >= 0"),
    (ours.Lion, {"betas": (-0.1, 0.99)}, r"betas\[0\] must be in \[0, 1\)"),
    (ours.Lion, {"weight_decay": -1.0}, r"weight_decay must be >= 0"),
]


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    INVALID,
    ids=[f"{cls.__name__}-{'-'.join(kw)}-{i}" for i, (cls, kw, _) in enumerate(INVALID)],
)
def test_invalid_hyperparameter_is_rejected_at_construction(
    cls: type[torch.optim.Optimizer], kwargs: dict[str, Any], match: str
) -> None:
    param = torch.nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match=match):
        cls([param], **kwargs)


def test_invalid_group_added_later_leaves_optimizer_unchanged() -> None:
    first, second = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    opt = ours.Adam([first])
    with pytest.raises(ValueError, match=r"Invalid learning rate: -1: lr must be >= 0"):
        opt.add_param_group({"params": [second], "lr": -1})
    assert len(opt.param_groups) == 1


def test_unknown_nonfinite_policy_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"nonfinite must be one of raise, skip, ignore"):
        ours.SGD([torch.nn.Parameter(torch.zeros(1))], nonfinite="warn")  # type: ignore[arg-type]


def test_chain_rejects_two_blocks_owning_one_state_key() -> None:
    with pytest.raises(ValueError, match=r"state key 'exp_avg' is owned by two blocks"):
        ours.chain(ours.blocks.ema(0.9), ours.blocks.ema(0.5))


def test_chain_optimizer_rejects_a_non_transform() -> None:
    with pytest.raises(ValueError, match=r"transform must be a dltricks\.optim\.Transform"):
        ours.ChainOptimizer([torch.nn.Parameter(torch.zeros(1))], "adam", lr=1.0)  # type: ignore[arg-type]


def test_missing_hyperparameter_is_named() -> None:
    param = torch.nn.Parameter(torch.ones(2))
    opt = ours.ChainOptimizer([param], ours.blocks.scale_by_learning_rate("lr"))
    param.grad = torch.ones(2)
    with pytest.raises(KeyError, match=r"hyperparameter 'lr' is not set"):
        opt.step()
