"""``amsgrad``: Adam can converge to the worst point of a convex problem; AMSGrad does not.

Claim (Reddi, Kale & Kumar 2018, "On the Convergence of Adam and Beyond", theorem 1 and
section 5): on the online linear problem over ``x in [-1, 1]``::

    f_t(x) = C x   if t mod 3 == 1        f_t(x) = -x   otherwise          (C > 2)

the sum of three rounds is ``(C - 2) x``, so the optimum is ``x = -1``. With beta1 = 0 and
beta2 = 1 / (1 + C^2), Adam's denominator forgets the rare large gradient C within a round
or two, so the two steps of size ~eta toward +1 outweigh the one step of size ~eta toward -1:
Adam drifts to ``x = +1``, the worst point, and its average regret does not go to zero.
AMSGrad divides by the running *maximum* of v, so the large gradient keeps its weight and
x goes to -1. The paper's synthetic experiment uses the same structure with
``f_t(x) = 1010 x`` if ``t mod 101 == 1`` else ``-10 x`` and practical betas.

Setup: one float64 parameter ``x_1 = 0``; at each round the gradient of ``f_t`` is written into
``x.grad``, one step of :class:`dltricks.optim.Adam` (``amsgrad=False`` or ``True``) is taken
and ``x`` is projected back onto [-1, 1] (clamp), as in the paper's projected algorithm. Two
learning-rate schedules: the paper's ``eta_t = eta / sqrt(t)`` (set in the param group before
each step) and a constant ``eta``. Everything is deterministic (no seed enters). The average
regret is ``R_T / T`` with ``R_T = sum_t f_t(x_t) - min_{x in [-1,1]} sum_t f_t(x)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any, ClassVar

import matplotlib.pyplot as plt
import torch

from dltricks.lab.context import RunContext
from dltricks.lab.registry import Experiment, register
from dltricks.lab.settings import (
    BETA,
    LEARNING_RATE,
    SEEDS,
    Choice,
    ExperimentConfig,
    Float,
    Int,
    ListOf,
    Record,
    SettingError,
    Text,
)
from dltricks.lab.verdicts import Verdict, judged
from dltricks.optim import Adam
from dltricks.palette import optimizer_colour

OPTIMIZERS = ("Adam", "AMSGrad")
SCHEDULES = ("inverse_sqrt", "constant")
TRAJECTORY_POINTS = 300


_POSITION = Float(-1e6, 1e6)
#: One online problem: the gradient is ``large`` once every ``period`` steps, else ``small``.
VARIANT = Record(
    required={
        "name": Text(),
        "large": _POSITION,
        "small": _POSITION,
        "period": Int(2, 1_000_000),
        "beta1": BETA,
        "beta2": BETA,
        "lr": Record(required={schedule: LEARNING_RATE for schedule in SCHEDULES}),
        "steps": Int(1, 10_000_000),
    }
)


@dataclass(frozen=True)
class AmsgradConfig(ExperimentConfig):
    """The settings of ``amsgrad``: the online problems (``variants``, distinct names) and
    the learning-rate schedules to run each with."""

    experiment: ClassVar[str] = "amsgrad"

    variants: Annotated[list[dict[str, Any]], ListOf(VARIANT, max_length=20)]
    schedules: Annotated[list[str], ListOf(Choice(SCHEDULES), unique=True)]
    seeds: Annotated[int, SEEDS]

    def check_together(self) -> None:
        names = [v["name"] for v in self.variants]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise SettingError(
                f"setting 'variants': each variant needs its own name; "
                f"repeated: {', '.join(repeated)}"
            )


def configure(quick: bool) -> AmsgradConfig:
    theorem_c = 3.0
    return AmsgradConfig(
        variants=[
            {
                # Theorem 1 with C = 3: beta2 = 1 / (1 + C^2) = 0.1.
                "name": "theorem",
                "large": theorem_c,
                "small": -1.0,
                "period": 3,
                "beta1": 0.0,
                "beta2": 1.0 / (1.0 + theorem_c**2),
                "lr": {"inverse_sqrt": 0.1, "constant": 0.1},
                "steps": 3000 if quick else 20000,
            },
            {
                # Section 5's synthetic sequence with beta2 = 0.99 (the paper tries 0.99, 0.999).
                "name": "synthetic",
                "large": 1010.0,
                "small": -10.0,
                "period": 101,
                "beta1": 0.9,
                "beta2": 0.99,
                "lr": {"inverse_sqrt": 0.5, "constant": 0.01},
                "steps": 10000 if quick else 100000,
            },
            {
                "name": "synthetic-beta2-0.999",
                "large": 1010.0,
                "small": -10.0,
                "period": 101,
                "beta1": 0.9,
                "beta2": 0.999,
                "lr": {"inverse_sqrt": 0.5, "constant": 0.01},
                "steps": 10000 if quick else 100000,
            },
        ],
        schedules=list(SCHEDULES),
        seeds=1,
    )


def gradient(variant: dict[str, Any], t: int) -> float:
    """The gradient of ``f_t`` (rounds count from 1): the large one once per period."""
    return float(variant["large"] if t % variant["period"] == 1 else variant["small"])


def _run_one(variant: dict[str, Any], optimizer: str, schedule: str) -> dict[str, Any]:
    x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    base_lr = float(variant["lr"][schedule])
    adam = Adam(
        [x],
        lr=base_lr,
        betas=(variant["beta1"], variant["beta2"]),
        amsgrad=optimizer == "AMSGrad",
    )
    steps = int(variant["steps"])
    # Sample at whole periods, so the samples do not alias with the gradient's period.
    period = int(variant["period"])
    every = period * max(1, steps // (TRAJECTORY_POINTS * period))
    loss_sum = 0.0  # sum_t f_t(x_t), with x_t the point played before round t's update
    grad_sum = 0.0
    trajectory_steps: list[int] = [0]
    trajectory: list[float] = [0.0]
    regret: list[float] = []
    for t in range(1, steps + 1):
        g = gradient(variant, t)
        loss_sum += g * float(x.detach())
        grad_sum += g
        if schedule == "inverse_sqrt":
            adam.param_groups[0]["lr"] = base_lr / math.sqrt(t)
        x.grad = torch.tensor([g], dtype=torch.float64)
        adam.step()
        with torch.no_grad():
            x.clamp_(-1.0, 1.0)  # projection onto the feasible set [-1, 1]
        if t % every == 0:
            trajectory_steps.append(t)
            trajectory.append(float(x.detach()))
            # min over [-1, 1] of x * grad_sum is -|grad_sum|.
            regret.append((loss_sum + abs(grad_sum)) / t)
    return {
        "final_x": float(x.detach()),
        "optimum": -1.0 if grad_sum > 0 else 1.0,
        "average_regret": (loss_sum + abs(grad_sum)) / steps,
        "lr": base_lr,
        "steps": steps,
        "trajectory_steps": trajectory_steps,
        "trajectory": trajectory,
        "average_regret_curve": regret,
    }


def _plot(ctx: RunContext, records: list[dict[str, Any]]) -> None:
    cfg = ctx.config
    variants = cfg["variants"]
    fig, axes = plt.subplots(len(variants), 2, figsize=(12, 3.6 * len(variants)), squeeze=False)
    styles = {"inverse_sqrt": "-", "constant": "--"}
    for row, variant in zip(axes, variants, strict=True):
        for r in records:
            if r["variant"] != variant["name"]:
                continue
            lr_text = (
                f"eta={r['lr']}/sqrt(t)" if r["schedule"] == "inverse_sqrt" else f"eta={r['lr']}"
            )
            label = f"{r['optimizer']}, {lr_text}"
            kwargs = {"color": optimizer_colour(r["optimizer"]), "linestyle": styles[r["schedule"]]}
            row[0].plot(r["trajectory_steps"], r["trajectory"], label=label, **kwargs)
            row[1].plot(r["trajectory_steps"][1:], r["average_regret_curve"], label=label, **kwargs)
        row[0].axhline(-1.0, color="grey", linestyle=":", label="optimum x = -1")
        row[0].set_ylim(-1.1, 1.1)
        row[0].set_ylabel("x_t")
        row[1].set_ylabel("average regret R_t / t")
        regrets = [v for r in records if r["variant"] == variant["name"]
                   for v in r["average_regret_curve"]]  # fmt: skip
        if min(regrets) > 0:
            row[1].set_yscale("log")
        problem = (
            f"f_t = {variant['large']:g}x if t mod {variant['period']} = 1 "
            f"else {variant['small']:g}x; beta1={variant['beta1']:g}, "
            f"beta2={variant['beta2']:.4g}"
        )
        row[0].set_title(f"{variant['name']}: {problem}", fontsize=9)
        row[1].set_title(
            f"{variant['name']}: average regret (sampled once every few periods)",
            fontsize=9,
        )
        for ax in row:
            ax.set_xlabel("round t")
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=7, loc="center right")
    fig.suptitle(
        "Reddi et al. 2018's counterexample: Adam drifts to the wrong end of [-1, 1], "
        "AMSGrad goes to the optimum -1 (projected steps, x_1 = 0)"
    )
    ctx.save_figure(fig, "amsgrad_trajectories")
    plt.close(fig)


def run(ctx: RunContext) -> dict[str, Any]:
    cfg = ctx.config
    settings = [
        (variant, optimizer, schedule)
        for variant in cfg["variants"]
        for schedule in cfg["schedules"]
        for optimizer in OPTIMIZERS
    ]
    ctx.progress.plan(len(settings))
    records = [
        ctx.unit(
            {"variant": v["name"], "optimizer": o, "schedule": s},
            partial(_run_one, v, o, s),
        )
        for v, o, s in settings
    ]
    _plot(ctx, records)
    final = {f"{r['variant']}/{r['schedule']}/{r['optimizer']}": r["final_x"] for r in records}
    reproduced = {
        f"{v['name']}/{s}": final[f"{v['name']}/{s}/Adam"] > 0 > final[f"{v['name']}/{s}/AMSGrad"]
        for v in cfg["variants"]
        for s in cfg["schedules"]
    }
    parts = [
        f"{key}: Adam ends at x={final[key + '/Adam']:+.3f}, AMSGrad at "
        f"x={final[key + '/AMSGrad']:+.3f} ({'reproduced' if ok else 'not reproduced'})"
        for key, ok in reproduced.items()
    ]
    return {
        "final_x": final,
        "reproduced": reproduced,
        "finding": f"Adam on the wrong side (x > 0) and AMSGrad on the optimum's side (x < 0) in "
        f"{sum(reproduced.values())} of {len(reproduced)} settings; " + "; ".join(parts) + ".",
    }


def judge(results: dict[str, Any]) -> list[Verdict]:
    """Rule, in each (variant, schedule) setting: Adam ends on the wrong side (x > 0) and
    AMSGrad on the optimum's side (x < 0)."""
    reproduced = results["summary"]["reproduced"]
    return [
        judged(
            "On Reddi et al.'s counterexample Adam converges to the worst point x = +1 while "
            "AMSGrad converges to the optimum x = -1.",
            dict(reproduced),
            rule="in each setting Adam's final x > 0 and AMSGrad's final x < 0",
            measured=f"{sum(reproduced.values())} of {len(reproduced)} settings",
        )
    ]


EXPERIMENT = register(
    Experiment(
        name="amsgrad",
        question="Can Adam converge to the worst point of a convex problem?",
        judge=judge,
        claim="On Reddi et al.'s online convex counterexample Adam converges to the worst point "
        "x = +1 while AMSGrad converges to the optimum x = -1.",
        source="Reddi, Kale & Kumar 2018, On the Convergence of Adam and Beyond (theorem 1, "
        "section 5)",
        tricks=("adaptive learning rate",),
        configure=configure,
        run=run,
    )
)
