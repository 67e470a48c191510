"""Each optimizer reaches the known minimum of a quadratic and of Rosenbrock's function.

Learning rates and step budgets were chosen per optimizer (one run each, float64); the
tolerances are distances to the known minimiser, not "the loss went down".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

import dltricks.optim as ours


def quadratic(p: torch.Tensor) -> torch.Tensor:
    """(x^2 + 10 y^2) / 2: condition number 10, minimum 0 at the origin."""
    return 0.5 * (p[0] ** 2 + 10 * p[1] ** 2)


def rosenbrock(p: torch.Tensor) -> torch.Tensor:
    """(1 - x)^2 + 100 (y - x^2)^2: minimum 0 at (1, 1), reached along a curved valley."""
    return (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2


def nesterov(params: Any, **kwargs: Any) -> torch.optim.Optimizer:
    return ours.SGD(params, momentum=0.9, nesterov=True, **kwargs)


def adamw(params: Any, **kwargs: Any) -> torch.optim.Optimizer:
    return ours.AdamW(params, weight_decay=0.0, **kwargs)


Row = tuple[str, Callable[..., torch.optim.Optimizer], dict[str, Any], int, float]
QUADRATIC: list[Row] = [
    ("SGD", ours.SGD, {"lr": 0.15}, 200, 1e-6),
    ("Momentum", ours.Momentum, {"lr": 0.05}, 300, 1e-6),
    ("Nesterov", nesterov, {"lr": 0.05}, 200, 1e-6),
    ("Adagrad", ours.Adagrad, {"lr": 0.5}, 200, 1e-6),
    # Constant-step adaptive methods settle into a band of width ~ lr around the minimum.
    ("RMSprop", ours.RMSprop, {"lr": 3e-3}, 1000, 1e-2),
    ("Adam", ours.Adam, {"lr": 0.05}, 300, 1e-4),
    ("AdamW", adamw, {"lr": 0.05}, 300, 1e-4),
    ("Adamax", ours.Adamax, {"lr": 0.05}, 300, 1e-2),
    ("NAdam", ours.NAdam, {"lr": 0.02}, 300, 1e-4),
    # AdaDelta is slow here: measured 0.34 from the minimum after 10000 steps at lr 5, 0.07
    # after 20000 at lr 1. We assert the progress it makes from distance 1.41.
    ("Adadelta", ours.Adadelta, {"lr": 5.0}, 3000, 0.5),
    ("Lion", ours.Lion, {"lr": 1e-3}, 1500, 1e-6),
]
ROSENBROCK: list[Row] = [
    ("SGD", ours.SGD, {"lr": 2e-3}, 5000, 1e-2),
    ("Momentum", ours.Momentum, {"lr": 2e-4}, 6000, 1e-2),
    ("Nesterov", nesterov, {"lr": 2e-4}, 6000, 1e-2),
    ("Adagrad", ours.Adagrad, {"lr": 0.5}, 15000, 1e-3),
    ("RMSprop", ours.RMSprop, {"lr": 3e-3}, 6000, 1e-2),
    ("Adam", ours.Adam, {"lr": 0.02}, 3000, 1e-3),
    ("AdamW", adamw, {"lr": 0.02}, 3000, 1e-3),
    ("Adamax", ours.Adamax, {"lr": 0.02}, 5000, 1e-3),
    ("NAdam", ours.NAdam, {"lr": 0.02}, 5000, 1e-2),
    ("Lion", ours.Lion, {"lr": 1e-3}, 5000, 1e-3),
    # AdaDelta does not reach Rosenbrock's minimum within 10000 steps at lr 1 or 5 (measured
    # distances 0.80 and 1.47), so it has no row here.
]


def _distance_after(
    factory: Callable[..., torch.optim.Optimizer],
    kwargs: dict[str, Any],
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    start: list[float],
    minimum: list[float],
    steps: int,
) -> float:
    p = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
    opt = factory([p], **kwargs)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(p).backward()
        opt.step()
    return float((p.detach() - torch.tensor(minimum, dtype=torch.float64)).norm())


@pytest.mark.parametrize(
    ("name", "factory", "kwargs", "steps", "tol"), QUADRATIC, ids=[r[0] for r in QUADRATIC]
)
def test_reaches_minimum_of_ill_conditioned_quadratic(
    name: str,
    factory: Callable[..., torch.optim.Optimizer],
    kwargs: dict[str, Any],
    steps: int,
    tol: float,
) -> None:
    assert _distance_after(factory, kwargs, quadratic, [1.0, 1.0], [0.0, 0.0], steps) < tol


@pytest.mark.parametrize(
    ("name", "factory", "kwargs", "steps", "tol"), ROSENBROCK, ids=[r[0] for r in ROSENBROCK]
)
def test_reaches_minimum_of_rosenbrock(
    name: str,
    factory: Callable[..., torch.optim.Optimizer],
    kwargs: dict[str, Any],
    steps: int,
    tol: float,
) -> None:
    assert _distance_after(factory, kwargs, rosenbrock, [-1.5, 2.0], [1.0, 1.0], steps) < tol
