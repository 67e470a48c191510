"""The table of optimizers under test: adding an optimizer means adding a row.

Each row names the dltricks class, the independent reference it must match (a
``torch.optim`` class, or for Lion the paper's update written in :class:`ReferenceLion`),
the learning rate used in the parity runs, and the configurations to run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytorch_optimizer
import schedulefree
import torch
from torch.optim import Optimizer

import dltricks.optim as ours


class ReferenceLion(Optimizer):
    """Lion exactly as algorithm 2 of Chen et al. 2023 writes it, for comparison."""

    def __init__(
        self,
        params: Any,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        maximize: bool = False,
    ) -> None:
        super().__init__(
            params, {"lr": lr, "betas": betas, "weight_decay": weight_decay, "maximize": maximize}
        )

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = -p.grad if group["maximize"] else p.grad
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                m = state["exp_avg"]
                c = beta1 * m + (1 - beta1) * g
                p.sub_(group["lr"] * (torch.sign(c) + group["weight_decay"] * p))
                state["exp_avg"] = beta2 * m + (1 - beta2) * g
        return loss


@dataclass(frozen=True)
class OptimizerCase:
    name: str
    ours: type[Optimizer]
    reference: Callable[..., Optimizer]
    lr: float
    configs: tuple[dict[str, Any], ...]
    # Keyword arguments that only the reference needs to mean the same thing.
    reference_extra: dict[str, Any] = field(default_factory=dict)
    # Whether our state_dict, loaded into the reference, continues the same run: not where the
    # reference counts steps per group (pytorch-optimizer, schedulefree) rather than per
    # parameter as torch does.
    reference_loads_our_state: bool = True


class TrainingScheduleFreeAdamW(ours.ScheduleFreeAdamW):
    """Ours, put in train mode on construction (a new one is in eval mode, as schedulefree's)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.train()


class TrainingAdamWScheduleFree(schedulefree.AdamWScheduleFree):  # type: ignore[misc]
    """The reference, put in train mode on construction."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.train()


CASES: tuple[OptimizerCase, ...] = (
    OptimizerCase(
        "SGD",
        ours.SGD,
        torch.optim.SGD,
        lr=0.05,
        configs=(
            {},
            {"momentum": 0.9},
            {"momentum": 0.9, "dampening": 0.3},
            {"momentum": 0.9, "nesterov": True},
            {"momentum": 0.5, "weight_decay": 0.1},
            # Ascent grows the weights: a smaller step keeps the run well conditioned.
            {"momentum": 0.9, "maximize": True, "lr": 0.005},
        ),
    ),
    OptimizerCase(
        "Momentum",
        ours.Momentum,
        torch.optim.SGD,
        lr=0.05,
        configs=({}, {"nesterov": True}, {"weight_decay": 0.1}),
        reference_extra={"momentum": 0.9},
    ),
    OptimizerCase(
        "Adagrad",
        ours.Adagrad,
        torch.optim.Adagrad,
        lr=0.05,
        configs=(
            {},
            {"lr_decay": 0.01},
            {"initial_accumulator_value": 0.1},
            {"weight_decay": 0.1},
            {"maximize": True, "eps": 1e-6},
        ),
    ),
    OptimizerCase(
        "RMSprop",
        ours.RMSprop,
        torch.optim.RMSprop,
        lr=1e-3,
        configs=(
            {},
            {"centered": True},
            {"momentum": 0.9},
            {"centered": True, "momentum": 0.5, "alpha": 0.9},
            {"weight_decay": 0.1},
            {"maximize": True},
        ),
    ),
    OptimizerCase(
        "Adam",
        ours.Adam,
        torch.optim.Adam,
        lr=1e-2,
        configs=(
            {},
            {"amsgrad": True},
            {"weight_decay": 0.1},
            {"maximize": True},
            {"betas": (0.8, 0.99), "eps": 1e-6, "amsgrad": True, "weight_decay": 0.05},
            {"decoupled_weight_decay": True, "weight_decay": 0.1},
        ),
    ),
    OptimizerCase(
        "AdamW",
        ours.AdamW,
        torch.optim.AdamW,
        lr=1e-2,
        configs=({}, {"amsgrad": True}, {"weight_decay": 0.3}, {"maximize": True}),
    ),
    OptimizerCase(
        "Adamax",
        ours.Adamax,
        torch.optim.Adamax,
        lr=1e-2,
        configs=({}, {"weight_decay": 0.1}, {"betas": (0.5, 0.9)}, {"maximize": True}),
    ),
    OptimizerCase(
        "NAdam",
        ours.NAdam,
        torch.optim.NAdam,
        lr=1e-2,
        configs=(
            {},
            {"weight_decay": 0.1},
            {"weight_decay": 0.1, "decoupled_weight_decay": True},
            {"momentum_decay": 0.01},
            {"maximize": True},
        ),
    ),
    OptimizerCase(
        "Adadelta",
        ours.Adadelta,
        torch.optim.Adadelta,
        lr=1.0,
        configs=({}, {"rho": 0.5}, {"weight_decay": 0.1}, {"maximize": True, "eps": 1e-4}),
    ),
    OptimizerCase(
        "Lion",
        ours.Lion,
        ReferenceLion,
        lr=1e-3,
        configs=({}, {"weight_decay": 0.5}, {"betas": (0.95, 0.98)}, {"maximize": True}),
    ),
    # RAdam, Rprop, ASGD (torch's), AdaBelief (pytorch-optimizer's), Schedule-Free AdamW
    # (schedulefree's).
    OptimizerCase(
        "RAdam",
        ours.RAdam,
        torch.optim.RAdam,
        lr=1e-2,
        configs=(
            {},
            {"weight_decay": 0.1},
            {"betas": (0.8, 0.99), "eps": 1e-6},
            {"maximize": True},
            {"weight_decay": 0.1, "decoupled_weight_decay": True},
        ),
    ),
    OptimizerCase(
        "Rprop",
        ours.Rprop,
        torch.optim.Rprop,
        lr=1e-2,
        configs=(
            {},
            {"etas": (0.3, 1.5)},
            {"step_sizes": (1e-3, 0.05)},
            # Ascent grows the weights: a smaller step keeps the run well conditioned.
            {"maximize": True, "lr": 1e-3, "step_sizes": (1e-6, 0.01)},
        ),
    ),
    OptimizerCase(
        "ASGD",
        ours.ASGD,
        torch.optim.ASGD,
        lr=1e-2,
        configs=(
            {},
            {"lambd": 0.1, "alpha": 0.5},
            {"t0": 10},
            {"maximize": True},
            {"weight_decay": 0.1, "t0": 20, "lambd": 0.01},
        ),
    ),
    OptimizerCase(
        "AdaBelief",
        ours.AdaBelief,
        pytorch_optimizer.AdaBelief,
        lr=1e-2,
        configs=(
            {},
            {"weight_decay": 0.1},
            {"weight_decay": 0.1, "weight_decouple": False},
            {"weight_decay": 0.1, "fixed_decay": True},
            {"maximize": True, "eps": 1e-12},
            {"ams_bound": True, "betas": (0.8, 0.99), "weight_decay": 0.05},
        ),
        reference_loads_our_state=False,
    ),
    OptimizerCase(
        "ScheduleFreeAdamW",
        TrainingScheduleFreeAdamW,
        TrainingAdamWScheduleFree,
        lr=1e-2,
        configs=(
            {},
            {"warmup_steps": 10},
            {"weight_decay": 0.1, "r": 1.0},
            {"betas": (0.8, 0.99), "weight_lr_power": 0.0, "eps": 1e-6},
        ),
        reference_loads_our_state=False,
    ),
    # Per-tensor blocks (factored second moment): the fast path fuses the decay and the step.
    OptimizerCase(
        "Adafactor",
        ours.Adafactor,
        torch.optim.Adafactor,
        lr=1e-2,
        configs=(
            {},
            {"weight_decay": 0.1},
            {"beta2_decay": -1.0, "d": 1.5},
            {"eps": (1e-30, 1e-2)},
            {"maximize": True, "weight_decay": 0.1},
        ),
    ),
)

CASES_BY_NAME = {case.name: case for case in CASES}


def config_id(config: dict[str, Any]) -> str:
    if not config:
        return "default"
    return "-".join(f"{k}={v}" for k, v in sorted(config.items()))
