"""The smallest end-to-end demonstration: every optimizer trains the same MLP on digits."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dltricks import optim
from dltricks.data import load_dataset

DEMO_OPTIMIZERS: dict[str, tuple[Callable[..., torch.optim.Optimizer], dict[str, Any]]] = {
    "SGD": (optim.SGD, {"lr": 0.1}),
    "Momentum": (optim.Momentum, {"lr": 0.05}),
    "Adagrad": (optim.Adagrad, {"lr": 0.05}),
    "RMSprop": (optim.RMSprop, {"lr": 1e-3}),
    "Adam": (optim.Adam, {"lr": 1e-3}),
    "AdamW": (optim.AdamW, {"lr": 1e-3}),
    "Adamax": (optim.Adamax, {"lr": 2e-3}),
    "NAdam": (optim.NAdam, {"lr": 2e-3}),
    "Adadelta": (optim.Adadelta, {"lr": 1.0}),
    "Lion": (optim.Lion, {"lr": 3e-4}),
}


@dataclass(frozen=True)
class DemoRow:
    optimizer: str
    lr: float
    train_loss: float
    test_accuracy: float


def run_demo(*, epochs: int = 5, seed: int = 0) -> Iterable[DemoRow]:
    """Train a 64-128-128-10 ReLU MLP on scikit-learn's digits with each optimizer.

    Same initial weights and batch order for every optimizer; yields one row per optimizer.
    """
    data = load_dataset("digits", seed=seed)
    for name, (factory, kwargs) in DEMO_OPTIMIZERS.items():
        torch.manual_seed(seed)
        model = nn.Sequential(
            nn.Linear(data.n_features, 128),
            nn.ReLU(),
            nn.Linear(128, 128),
            nn.ReLU(),
            nn.Linear(128, data.n_classes),
        )
        opt = factory(model.parameters(), **kwargs)
        order = torch.Generator().manual_seed(seed)
        n = data.x_train.shape[0]
        for _ in range(epochs):
            for rows in torch.randperm(n, generator=order).split(64):
                opt.zero_grad()
                loss = nn.functional.cross_entropy(model(data.x_train[rows]), data.y_train[rows])
                loss.backward()
                opt.step()
        with torch.no_grad():
            train_loss = nn.functional.cross_entropy(model(data.x_train), data.y_train).item()
            predictions = model(data.x_test).argmax(dim=1)
            accuracy = (predictions == data.y_test).float().mean().item()
        yield DemoRow(name, kwargs["lr"], train_loss, accuracy)
