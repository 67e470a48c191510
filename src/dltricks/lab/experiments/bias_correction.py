"""``bias-correction``: without bias correction Adam's first steps are far larger than eta.

Claim (Kingma & Ba 2015, section 3): the moving averages start at zero, so early on they are
biased toward zero. Without the correction ``1 / (1 - beta^t)`` the first step is::

    m_1 = (1 - beta1) g_1        v_1 = (1 - beta2) g_1^2
    |theta_1 - theta_0| = eta (1 - beta1) |g_1| / (sqrt(1 - beta2) |g_1| + eps)
                       ~= eta (1 - beta1) / sqrt(1 - beta2)

which is 1, 3.16 and 10 times eta for beta2 = 0.99, 0.999, 0.9999 (beta1 = 0.9); with the
correction the first step is ``eta |g| / (|g| + eps) ~= eta``. Uncorrected, the ratio keeps
growing for a while (the first moment warms up after ~1/(1-beta1) steps, the second only after
~1/(1-beta2)): with a constant gradient step t is ``eta (1 - beta1^t) / sqrt(1 - beta2^t)``.

Setup: a parameter vector of ``dim`` float64 coordinates, moved by a given gradient sequence
(no loss is needed: the step depends only on the gradients): ``constant`` (g = 1 everywhere)
and ``noisy`` (g = 1 + sigma * N(0, 1), i.i.d. per coordinate and step, seeded). Corrected Adam
is :class:`dltricks.optim.Adam`; uncorrected Adam is the same chain without the two
``bias_correction`` blocks, composed with :class:`dltricks.optim.ChainOptimizer`. The step
size of a step is the mean over coordinates of ``|theta_t - theta_{t-1}|``.
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
)
from dltricks.lab.verdicts import Verdict, finite, judged
from dltricks.optim import Adam, ChainOptimizer, chain, ratio
from dltricks.optim.blocks import ema, ema_of_squares, root, scale_by_learning_rate


@dataclass(frozen=True)
class BiasCorrectionConfig(ExperimentConfig):
    """The settings of ``bias-correction``; ``dim`` coordinates per parameter (memory:
    ``4 * dim`` bytes per tensor, so at most 10^7)."""

    experiment: ClassVar[str] = "bias-correction"

    beta2s: Annotated[list[float], ListOf(BETA, unique=True)]
    beta1: Annotated[float, BETA]
    lr: Annotated[float, LEARNING_RATE]
    eps: Annotated[float, Float(0.0, 1.0, low_open=True)]
    steps: Annotated[int, Int(1, 1_000_000)]
    problems: Annotated[list[str], ListOf(Choice(("constant", "noisy")), unique=True)]
    noise: Annotated[float, Float(0.0, 1e3)]
    dim: Annotated[int, Int(1, 10_000_000)]
    seeds: Annotated[int, SEEDS]


def configure(quick: bool) -> BiasCorrectionConfig:
    return BiasCorrectionConfig(
        beta2s=[0.99, 0.999, 0.9999],
        beta1=0.9,
        lr=1e-3,
        eps=1e-8,
        steps=50 if quick else 200,
        problems=["constant", "noisy"],
        noise=0.5,
        dim=100 if quick else 1000,
        seeds=1,
    )


def first_step_formula(lr: float, beta1: float, beta2: float) -> float:
    """The uncorrected first step as eps -> 0: ``eta (1 - beta1) / sqrt(1 - beta2)``."""
    return lr * (1 - beta1) / math.sqrt(1 - beta2)


def _optimizer(param: torch.Tensor, corrected: bool, beta2: float, cfg: dict[str, Any]) -> Any:
    if corrected:
        return Adam([param], lr=cfg["lr"], betas=(cfg["beta1"], beta2), eps=cfg["eps"])
    # Adam's chain minus both bias_correction blocks (see dltricks.optim.adam.adam_direction).
    uncorrected = chain(
        ratio(ema("beta1"), chain(ema_of_squares("beta2"), root("eps"))),
        scale_by_learning_rate(),
    )
    return ChainOptimizer(
        [param], uncorrected, lr=cfg["lr"], beta1=cfg["beta1"], beta2=beta2, eps=cfg["eps"]
    )


def _gradients(problem: str, cfg: dict[str, Any], seed: int) -> torch.Tensor:
    """The gradient sequence, shape (steps, dim); the same for every optimizer of a seed."""
    shape = (cfg["steps"], cfg["dim"])
    if problem == "constant":
        return torch.ones(shape, dtype=torch.float64)
    if problem == "noisy":
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn(shape, generator=generator, dtype=torch.float64)
        return 1.0 + cfg["noise"] * noise
    raise ValueError(f"unknown problem {problem!r}; use constant or noisy")


def _run_one(
    ctx: RunContext, problem: str, beta2: float, corrected: bool, seed: int
) -> dict[str, Any]:
    cfg = ctx.config
    grads = _gradients(problem, cfg, seed)
    param = torch.zeros(cfg["dim"], dtype=torch.float64, requires_grad=True)
    optimizer = _optimizer(param, corrected, beta2, cfg)
    steps: list[float] = []
    for g in grads:
        before = param.detach().clone()
        param.grad = g.clone()
        optimizer.step()
        steps.append(float((param.detach() - before).abs().mean()))
    lr = cfg["lr"]
    return {
        "step_sizes": steps,
        "first_step": steps[0],
        "max_step": max(steps),
        "last_step": steps[-1],
        "formula": first_step_formula(lr, cfg["beta1"], beta2) if not corrected else lr,
        "first_step_over_lr": steps[0] / lr,
        "max_step_over_lr": max(steps) / lr,
    }


def _plot(ctx: RunContext, records: list[dict[str, Any]], problem: str) -> None:
    cfg = ctx.config
    lr = cfg["lr"]
    fig, ax = plt.subplots(figsize=(8.5, 5))
    colors = plt.get_cmap("viridis")(torch.linspace(0.0, 0.85, len(cfg["beta2s"])).tolist())
    seed = ctx.seeds[0]
    for color, beta2 in zip(colors, cfg["beta2s"], strict=True):
        for corrected, style in ((False, "-"), (True, "--")):
            (r,) = [
                r
                for r in records
                if r["problem"] == problem
                and r["beta2"] == beta2
                and r["bias_correction"] == corrected
                and r["seed"] == seed
            ]
            steps = range(1, len(r["step_sizes"]) + 1)
            label = f"beta2={beta2}, {'corrected' if corrected else 'uncorrected'}"
            ax.plot(steps, r["step_sizes"], style, color=color, label=label)
        formula = first_step_formula(lr, cfg["beta1"], beta2)
        ax.scatter([1], [formula], marker="*", s=160, color=color, edgecolor="black", zorder=5)
    ax.axhline(lr, color="grey", linestyle=":", label="eta (corrected first step)")
    ax.scatter([], [], marker="*", s=160, color="white", edgecolor="black",
               label="formula eta(1-beta1)/sqrt(1-beta2)")  # fmt: skip
    ax.set_yscale("log")
    ax.set_xlabel("step t")
    ax.set_ylabel("step size mean |theta_t - theta_{t-1}|")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper right")
    what = "g = 1" if problem == "constant" else f"g = 1 + {cfg['noise']} N(0,1), seed {seed}"
    ax.set_title(
        f"Adam's first steps with and without bias correction\n"
        f"{problem} gradient ({what}), {cfg['dim']} coords, eta={lr}, beta1={cfg['beta1']}; "
        "corrected runs (dashed) nearly coincide",
        fontsize=10,
    )
    ctx.save_figure(fig, f"bias_correction_{problem}")
    plt.close(fig)


def run(ctx: RunContext) -> dict[str, Any]:
    cfg = ctx.config
    settings = [
        (problem, beta2, corrected, seed)
        for problem in cfg["problems"]
        for beta2 in cfg["beta2s"]
        for corrected in (False, True)
        for seed in (ctx.seeds if problem == "noisy" else ctx.seeds[:1])
    ]
    ctx.progress.plan(len(settings))
    records = [
        ctx.unit(
            {"problem": p, "beta2": b, "bias_correction": c, "seed": s},
            partial(_run_one, ctx, p, b, c, s),
        )
        for p, b, c, s in settings
    ]
    for problem in cfg["problems"]:
        _plot(ctx, records, problem)
    lr = cfg["lr"]
    first = {
        str(r["beta2"]): r["first_step_over_lr"]
        for r in records
        if not r["bias_correction"] and r["problem"] == cfg["problems"][0]
    }
    formula = {str(b): first_step_formula(lr, cfg["beta1"], b) / lr for b in cfg["beta2s"]}
    peak = {
        str(r["beta2"]): r["max_step_over_lr"]
        for r in records
        if not r["bias_correction"] and r["problem"] == cfg["problems"][0]
    }
    corrected_max = max(r["max_step_over_lr"] for r in records if r["bias_correction"])
    parts = ", ".join(
        f"beta2={b}: {first[b]:.3g} eta (formula {formula[b]:.3g} eta, up to {peak[b]:.3g} eta "
        f"within {cfg['steps']} steps)"
        for b in first
    )
    finding = (
        f"Without bias correction Adam's first step on the {cfg['problems'][0]} gradient is "
        f"{parts}; with it no step exceeds {corrected_max:.3g} eta."
    )
    return {
        "first_step_over_lr_uncorrected": first,
        "formula_over_lr": formula,
        "max_step_over_lr_uncorrected": peak,
        "max_step_over_lr_corrected": corrected_max,
        "finding": finding,
    }


#: Tolerances of :func:`judge`: the formula's first step within 5%; "about eta" within 10%.
FORMULA_TOLERANCE = 0.05
ABOUT_ETA = 0.1


def judge(results: dict[str, Any]) -> list[Verdict]:
    """Rules, on the first gradient problem: uncorrected, the first step is within 5% of
    ``eta (1 - beta1) / sqrt(1 - beta2)`` for every beta2; corrected, within 10% of eta."""
    s = results["summary"]
    problem = results["config"]["config"]["problems"][0]
    first, formula = s["first_step_over_lr_uncorrected"], s["formula_over_lr"]
    corrected = {
        str(r["beta2"]): r["first_step_over_lr"]
        for r in results["records"]
        if r["bias_correction"] and r["problem"] == problem
    }
    return [
        judged(
            "Without bias correction Adam's first step is eta (1 - beta1) / sqrt(1 - beta2), "
            "up to 10 eta.",
            {
                f"beta2={b}": finite(first[b])
                and abs(first[b] / formula[b] - 1) <= FORMULA_TOLERANCE
                for b in first
            },
            rule=f"first step within {FORMULA_TOLERANCE:.0%} of the formula for every beta2",
            measured="first steps "
            + ", ".join(f"{first[b]:.3g} eta (formula {formula[b]:.3g})" for b in first),
        ),
        judged(
            "With bias correction the first step is about eta.",
            {f"beta2={b}": finite(v) and abs(v - 1) <= ABOUT_ETA for b, v in corrected.items()},
            rule=f"first corrected step within {ABOUT_ETA:.0%} of eta for every beta2",
            measured="first steps " + ", ".join(f"{v:.3g} eta" for v in corrected.values()),
        ),
    ]


EXPERIMENT = register(
    Experiment(
        name="bias-correction",
        question="Why does Adam correct the bias of its moving averages?",
        judge=judge,
        claim="Without bias correction Adam's first step is eta (1 - beta1) / sqrt(1 - beta2), "
        "up to 10 eta for beta2 = 0.9999; with it the first step is about eta.",
        source="Kingma & Ba 2015, section 3 (initialization bias correction)",
        tricks=("adaptive learning rate",),
        configure=configure,
        run=run,
    )
)
