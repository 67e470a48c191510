"""Schedule-Free AdamW: no learning-rate schedule, an average of the iterates instead."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch

from dltricks.optim.adapter import ComposedOptimizer, NonFinitePolicy
from dltricks.optim.base import Transform
from dltricks.optim.blocks import (
    add_decayed_weights,
    bias_correction,
    ema_of_squares,
    root,
    schedule_free_interpolation,
)
from dltricks.optim.combine import chain, identity, ratio
from dltricks.optim.validation import check_flag


class ScheduleFreeAdamW(ComposedOptimizer):
    r"""Schedule-Free AdamW, with the keywords, defaults and ``train()``/``eval()`` switch of
    ``schedulefree.AdamWScheduleFree`` (Defazio et al. 2024, "The Road Less Scheduled"; the
    AlgoPerf 2024 self-tuning winner).

    Math (``y`` is held in the parameters during training, ``x`` after ``eval()``)::

        v_t     = beta2 v_{t-1} + (1 - beta2) g_t^2                          (exp_avg_sq)
        u_t     = g_t / (sqrt(v_t / (1 - beta2^t)) + eps) + lambda y_{t-1}
        eta_t   = eta min(1, t / warmup_steps)
        c_t     = w_t / sum_{i<=t} w_i,   w_t = t^r (max_{i<=t} eta_i)^weight_lr_power
        z_t     = z_{t-1} - eta_t u_t                                        (z, z_0 = y_0)
        x_t     = (1 - c_t) x_{t-1} + c_t z_t
        y_t     = (1 - beta1) z_t + beta1 x_t

    The last line is written as ``y_t = (1 - c_t) y_{t-1} + c_t z_{t-1} + eta_t (beta1 (1 - c_t)
    - 1) u_t``, so only ``y`` and ``z`` are stored. ``x``, a weighted average of the SGD
    iterates ``z``, plays the role of the schedule's annealed weights: evaluate and save
    with the optimizer in ``eval()`` mode (parameters = ``x``), train in ``train()`` mode
    (parameters = ``y``, where gradients are taken). As in schedulefree, a new optimizer is in
    eval mode: call :meth:`train` before the first step. No scheduler is needed; warm up with
    ``warmup_steps``.

    The running ``max eta`` and ``sum w`` are kept per parameter (``lr_max``, ``weight_sum``
    in ``optimizer.state[p]``), with the step count, where schedulefree keeps them per group
    (``k``, ``lr_max``, ``weight_sum``): the same numbers while every parameter of a group gets
    a gradient at every step.

    Chain: ``ratio(identity, ema_of_squares(beta2) -> bias_correction(beta2) -> root(eps)) ->
    add_decayed_weights -> schedule_free_interpolation(beta1, warmup_steps, r,
    weight_lr_power)``.
    """

    non_negative = ("lr", "eps", "weight_decay", "warmup_steps", "r", "weight_lr_power")
    flag_defaults: ClassVar[Mapping[str, Any]] = {"train_mode": False, "differentiable": False}

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.0025,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
        foreach: bool | None = hasattr(torch, "_foreach_mul_"),
        *,
        nonfinite: NonFinitePolicy = "raise",
        fast: bool | None = None,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": tuple(betas) if isinstance(betas, list) else betas,
            "eps": eps,
            "r": r,
            "warmup_steps": warmup_steps,
            "train_mode": False,
            "weight_lr_power": weight_lr_power,
            "weight_decay": weight_decay,
            "foreach": foreach,
        }
        super().__init__(params, defaults, nonfinite=nonfinite, fast=fast)

    def validate_group(self, group: Mapping[str, Any]) -> None:
        super().validate_group(group)
        check_flag("train_mode", group["train_mode"])
        beta1 = group["betas"][0]
        if beta1 == 0:
            raise ValueError(
                "Invalid beta parameter at index 0: 0.0: ScheduleFreeAdamW needs beta1 > 0 "
                "(eval() recovers x = (y - (1 - beta1) z) / beta1)"
            )

    def build_chain(self, options: Mapping[str, Any]) -> Transform:
        normalise = ratio(
            identity(), chain(ema_of_squares("beta2"), bias_correction("beta2"), root("eps"))
        )
        return chain(normalise, add_decayed_weights(), schedule_free_interpolation())

    @torch.no_grad()
    def train(self) -> None:
        """Training mode: the parameters become ``y = (1 - beta1) z + beta1 x``."""
        self._switch(to_train=True)

    @torch.no_grad()
    def eval(self) -> None:
        """Evaluation mode: the parameters become the average ``x`` (evaluate and save here)."""
        self._switch(to_train=False)

    def _switch(self, *, to_train: bool) -> None:
        for group in self.param_groups:
            if group["train_mode"] == to_train:
                continue
            beta1 = float(group["betas"][0])
            weight = 1 - beta1 if to_train else 1 - 1 / beta1
            for p in group["params"]:
                z = self.state[p].get("z") if p in self.state else None
                if z is not None:
                    p.lerp_(z.to(p.device), weight)
            group["train_mode"] = to_train

    def _step_without_grad(self) -> None:
        if not self.param_groups[0]["train_mode"]:
            raise RuntimeError(
                "ScheduleFreeAdamW is in eval mode: call optimizer.train() before training "
                "steps and optimizer.eval() before evaluating or saving (a new optimizer "
                "starts in eval mode, as schedulefree's)"
            )
        super()._step_without_grad()
