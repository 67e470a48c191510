"""The smallest end-to-end demonstration: every optimizer trains the same MLP on digits."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from dltricks import optim
from dltricks.data import load_dataset
from dltricks.nn import MLP
from dltricks.train import TrainConfig, fit

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
    """Train a 64-128-128-10 ReLU MLP (He init) on scikit-learn's digits with each optimizer.

    Same initial weights and batch order for every optimizer (the lab's trainer, batch 64);
    yields one row per optimizer.
    """
    data = load_dataset("digits", seed=seed)
    for name, (factory, kwargs) in DEMO_OPTIMIZERS.items():
        model = MLP(
            data.n_features, data.n_classes, 128, 2, "relu",
            generator=torch.Generator().manual_seed(seed),
        )  # fmt: skip
        result = fit(
            model,
            functools.partial(factory, **kwargs),
            data,
            TrainConfig(epochs=epochs, batch_size=64, seed=seed),
            progress=False,
        )
        yield DemoRow(name, kwargs["lr"], result.final.train_loss, result.final.test_accuracy)
