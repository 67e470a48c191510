"""Early stopping against scripted validation-loss sequences."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dltricks.data import make_split_dataset
from dltricks.train import EarlyStopping, EarlyStoppingMonitor, TrainConfig, fit


def reference_stop(losses: list[float], patience: int, min_delta: float) -> tuple[int | None, int]:
    """(stop epoch or None, best epoch), written independently of the library: the first
    epoch at which the number of epochs since the last improvement exceeds patience."""
    best_value, best_epoch = math.inf, 0
    for epoch, value in enumerate(losses, start=1):
        if value < best_value - min_delta:
            best_value, best_epoch = value, epoch
        elif epoch - best_epoch > patience:
            return epoch, best_epoch
    return None, best_epoch


SEQUENCES = [
    [5.0, 4.0, 3.0, 3.5, 3.2, 2.9, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0],
    [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
    [3.0, 2.99, 2.98, 2.97, 2.5, 2.49, 2.48, 2.47, 2.46, 2.45],
    [2.0, math.nan, 1.0, 1.5, 1.5, 1.5, 1.5],
    [4.0, 3.0, 2.0, 1.0],
]


@pytest.mark.parametrize("losses", SEQUENCES)
@pytest.mark.parametrize("patience", [0, 1, 2, 3])
@pytest.mark.parametrize("min_delta", [0.0, 0.05])
def test_monitor_matches_reference(losses: list[float], patience: int, min_delta: float) -> None:
    monitor = EarlyStoppingMonitor(EarlyStopping(patience=patience, min_delta=min_delta))
    stopped = None
    for epoch, value in enumerate(losses, start=1):
        if monitor.update(epoch, value):
            stopped = epoch
            break
    assert (stopped, monitor.best_epoch) == reference_stop(losses, patience, min_delta)


class ScriptedModel(nn.Module):
    """A model whose weight counts epochs: full-batch SGD with lr 1 on the loss ``w`` lowers w
    by exactly 1 per epoch, so at the end of epoch e, w = -e and the scripted loss is known."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w.expand(x.shape[0], 2)


def scripted_loss(model: ScriptedModel, losses: list[float]):
    def loss_fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return logits[0, 0]  # d/dw = 1
        epoch = round(-float(model.w.detach()))
        return torch.tensor(losses[epoch - 1])

    return loss_fn


@pytest.mark.parametrize("restore_best", [True, False])
@pytest.mark.parametrize(("losses", "patience"), [(SEQUENCES[0], 2), (SEQUENCES[2], 1)])
def test_trainer_stops_and_restores_at_reference_epochs(
    losses: list[float], patience: int, restore_best: bool
) -> None:
    x = torch.zeros(8, 1)
    y = torch.arange(8) % 2
    data = make_split_dataset(
        "scripted", x.numpy(), y.numpy(), x.numpy(), y.numpy(), n_classes=2, val_fraction=0.5
    )
    model = ScriptedModel()
    rule = EarlyStopping(patience=patience, min_delta=0.0, restore_best=restore_best)
    config = TrainConfig(epochs=len(losses), batch_size=None, early_stopping=rule)
    result = fit(
        model,
        lambda p: torch.optim.SGD(p, lr=1.0),
        data,
        config,
        loss_fn=scripted_loss(model, losses),
        progress=False,
    )
    stop, best = reference_stop(losses, patience, 0.0)
    assert result.stopped_epoch == stop
    assert result.stop_reason == ("epochs" if stop is None else "early_stopping")
    assert result.best_epoch == best
    last = len(losses) if stop is None else stop
    assert result.epochs_run == last
    assert [r.val_loss for r in result.history] == pytest.approx(losses[:last])
    assert result.restored_best is restore_best
    final_epoch = best if restore_best else last
    assert float(model.w.detach()) == -final_epoch
    assert result.final.val_loss == pytest.approx(losses[final_epoch - 1])


def test_no_early_stopping_runs_all_epochs_and_reports_best() -> None:
    losses = [3.0, 1.0, 2.0, 2.5]
    x = torch.zeros(8, 1)
    y = torch.arange(8) % 2
    data = make_split_dataset(
        "scripted", x.numpy(), y.numpy(), x.numpy(), y.numpy(), n_classes=2, val_fraction=0.5
    )
    model = ScriptedModel()
    result = fit(
        model,
        lambda p: torch.optim.SGD(p, lr=1.0),
        data,
        TrainConfig(epochs=4, batch_size=None),
        loss_fn=scripted_loss(model, losses),
        progress=False,
    )
    assert result.stopped_epoch is None
    assert result.stop_reason == "epochs"
    assert result.best_epoch == 2
    assert not result.restored_best
    assert float(model.w.detach()) == -4
