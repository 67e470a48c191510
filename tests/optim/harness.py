"""A small training problem that runs any optimizer the same way, for parity tests."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

OptimizerFactory = Callable[[Any], Optimizer]
VARIANTS = ("plain", "two_groups", "scheduler", "closure")


@contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """torch keeps scalar state (step, NAdam's mu_product) in the default dtype."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def make_model(seed: int = 0, dtype: torch.dtype = torch.float64) -> nn.Sequential:
    generator = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=dtype) * 0.5)
    return model


def make_data(
    seed: int = 1, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(32, 6, generator=generator, dtype=dtype)
    y = torch.randn(32, 3, generator=generator, dtype=dtype)
    return x, y


def param_groups(model: nn.Sequential, variant: str, lr: float) -> Any:
    if variant == "two_groups":
        return [
            {"params": list(model[0].parameters())},
            {"params": list(model[2].parameters()), "lr": lr * 0.3},
        ]
    return model.parameters()


def train(
    factory: OptimizerFactory,
    model: nn.Sequential,
    *,
    variant: str = "plain",
    lr: float,
    steps: int = 60,
    start: int = 0,
    optimizer: Optimizer | None = None,
) -> Optimizer:
    """Run ``steps`` steps of mini-batch MSE training in place; returns the optimizer."""
    x, y = make_data(dtype=next(model.parameters()).dtype)
    opt = optimizer if optimizer is not None else factory(param_groups(model, variant, lr))
    scheduler = (
        torch.optim.lr_scheduler.StepLR(opt, step_size=20, gamma=0.5)
        if variant == "scheduler"
        else None
    )
    for i in range(start, start + steps):
        rows = slice((i * 8) % 32, (i * 8) % 32 + 8)

        def closure(rows: slice = rows) -> torch.Tensor:
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(x[rows]), y[rows])
            loss.backward()
            return loss

        if variant == "closure":
            opt.step(closure)
        else:
            closure()
            opt.step()
        if scheduler is not None:
            scheduler.step()
    return opt


def max_relative_difference(a: nn.Module, b: nn.Module) -> float:
    worst = 0.0
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        scale = pb.detach().abs().max().clamp_min(1e-300)
        worst = max(worst, float((pa.detach() - pb.detach()).abs().max() / scale))
    return worst


def clone(model: nn.Sequential) -> nn.Sequential:
    return copy.deepcopy(model)
