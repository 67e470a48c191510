"""What the lab's training experiments share: optimizers chosen by name, divergence records.

An experiment that declares an ``optimizer`` setting builds it with :func:`make_optimizer`
(its learning rate from the ``lr`` setting), so ``--set optimizer=Adam`` trains with Adam.
Divergence is a result, not a failure: the optimizers are built with ``nonfinite="ignore"``,
so a non-finite gradient flows into the weights as it would with ``torch.optim``, the loss
turns non-finite and :func:`dltricks.train.fit` stops the run after that epoch
(``stop_reason == "diverged"``); :func:`divergence` turns that into the record's
``diverged`` and ``diverged_epoch``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from dltricks.optim import SGD, Adadelta, Adagrad, Adam, AdamW, Lion, Momentum, RMSprop
from dltricks.optim.adapter import NonFinitePolicy
from dltricks.train import Callback, TrainConfig, TrainResult, fit

if TYPE_CHECKING:
    from dltricks.data import SplitDataset
    from dltricks.lab.context import RunContext

__all__ = ["LAB_OPTIMIZERS", "divergence", "make_optimizer", "train_as_configured"]

_Factory = Callable[[Iterable[nn.Parameter], float, NonFinitePolicy], torch.optim.Optimizer]

#: The optimizers an experiment's ``optimizer`` setting may name; torch's defaults apart from
#: ``lr`` (momentum 0.9 where the name implies momentum, AdamW's weight decay 0.01).
LAB_OPTIMIZERS: dict[str, _Factory] = {
    "SGD": lambda p, lr, nf: SGD(p, lr=lr, nonfinite=nf),
    "Momentum": lambda p, lr, nf: Momentum(p, lr=lr, momentum=0.9, nonfinite=nf),
    "Nesterov": lambda p, lr, nf: SGD(p, lr=lr, momentum=0.9, nesterov=True, nonfinite=nf),
    "AdaGrad": lambda p, lr, nf: Adagrad(p, lr=lr, nonfinite=nf),
    "RMSProp": lambda p, lr, nf: RMSprop(p, lr=lr, nonfinite=nf),
    "AdaDelta": lambda p, lr, nf: Adadelta(p, lr=lr, nonfinite=nf),
    "Adam": lambda p, lr, nf: Adam(p, lr=lr, nonfinite=nf),
    "AdamW": lambda p, lr, nf: AdamW(p, lr=lr, weight_decay=1e-2, nonfinite=nf),
    "Lion": lambda p, lr, nf: Lion(p, lr=lr, nonfinite=nf),
}


def make_optimizer(
    name: str, params: Iterable[nn.Parameter], lr: float, *, nonfinite: NonFinitePolicy = "ignore"
) -> torch.optim.Optimizer:
    """The lab optimizer called ``name`` over ``params`` at learning rate ``lr``.

    ``nonfinite="ignore"`` by default: a diverging run is stopped by the trainer and recorded,
    not raised (see the module docstring).
    """
    if name not in LAB_OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(LAB_OPTIMIZERS)}")
    return LAB_OPTIMIZERS[name](params, lr, nonfinite)


def divergence(result: TrainResult) -> dict[str, Any]:
    """``{"diverged": bool, "diverged_epoch": epoch or None}`` of a finished run."""
    diverged = result.stop_reason == "diverged"
    return {"diverged": diverged, "diverged_epoch": result.stopped_epoch if diverged else None}


def train_as_configured(
    ctx: RunContext,
    model: nn.Module,
    data: SplitDataset,
    seed: int,
    *,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Train ``model`` with the experiment's ``optimizer``, ``lr``, ``epochs`` and ``batch_size``.

    The optimizer is :func:`make_optimizer`'s (a diverged run is a result, stopped by the
    trainer); batches are shuffled by ``seed``; no progress display (the runner has its own).
    """
    cfg = ctx.config
    return fit(
        model,
        lambda params: make_optimizer(cfg["optimizer"], params, cfg["lr"]),
        data,
        TrainConfig(epochs=cfg["epochs"], batch_size=cfg["batch_size"], seed=seed),
        device=ctx.device,
        progress=False,
        callbacks=callbacks,
    )
