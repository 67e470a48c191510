"""ASGD: SGD with a decaying step and a running average of the iterates."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch

from dltricks.optim.adapter import ComposedOptimizer, NonFinitePolicy
from dltricks.optim.base import Transform
from dltricks.optim.blocks import add_l2_penalty, averaged_sgd, negate
from dltricks.optim.combine import chain
from dltricks.optim.state_precision import StateCodec
from dltricks.optim.validation import check_non_negative


class ASGD(ComposedOptimizer):
    r"""Averaged stochastic gradient descent; drop-in for ``torch.optim.ASGD``.

    Math (torch's defaults: ``lambd = 1e-4``, ``alpha = 0.75``, ``t0 = 1e6``)::

        g_t     = grad L(theta_{t-1}) + lambda * theta_{t-1}
        theta_t = (1 - lambd eta_{t-1}) theta_{t-1} - eta_{t-1} g_t          (eta_0 = eta)
        a_t     = theta_t if mu_{t-1} = 1 else a_{t-1} + mu_{t-1} (theta_t - a_{t-1})   (ax)
        eta_t   = eta / (1 + lambd eta t)^alpha                                         (eta)
        mu_t    = 1 / max(1, t - t0)                                                    (mu)

    Polyak & Juditsky 1992: averaging the iterates of SGD with a slowly decaying step gives
    the optimal asymptotic rate. The parameters stay the last iterate; the average is
    ``optimizer.state[p]["ax"]`` (until ``t0`` steps it is the iterate itself).

    Chain: ``[negate] -> add_l2_penalty -> averaged_sgd(lambd, alpha, t0)``.
    """

    structural_options = ("maximize",)
    non_negative = ("lr", "weight_decay")
    flags = ("maximize",)
    flag_defaults: ClassVar[Mapping[str, Any]] = {
        "foreach": None,
        "maximize": False,
        "differentiable": False,
        "capturable": False,
    }

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        lambd: float = 1e-4,
        alpha: float = 0.75,
        t0: float = 1e6,
        weight_decay: float = 0,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
        *,
        nonfinite: NonFinitePolicy = "raise",
        fast: bool | None = None,
    ) -> None:
        defaults = {
            "lr": lr,
            "lambd": lambd,
            "alpha": alpha,
            "t0": t0,
            "weight_decay": weight_decay,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "capturable": capturable,
        }
        super().__init__(params, defaults, nonfinite=nonfinite, fast=fast)

    def validate_group(self, group: Mapping[str, Any]) -> None:
        """torch's checks (``lr``, ``weight_decay``), then the ones torch leaves out: ``lambd``
        and ``alpha`` and ``t0`` >= 0 (a negative one grows the step without bound)."""
        super().validate_group(group)
        check_non_negative("lambd", group["lambd"])
        check_non_negative("alpha", group["alpha"])
        check_non_negative("t0", group["t0"])

    def build_chain(self, options: Mapping[str, Any], before_averaging: bool = False) -> Transform:
        blocks = [negate()] if options["maximize"] else []
        blocks += [add_l2_penalty(), averaged_sgd(before_averaging=before_averaging)]
        return chain(*blocks)

    def fast_update(
        self,
        group: Mapping[str, Any],
        key: Any,
        fused: Any,
        device: torch.device,
        dtype: torch.dtype,
        codec: StateCodec | None = None,
    ) -> Any:
        """On CPU buckets: the chain's kernel beside one for the steps before averaging starts
        (``mu = 1``: ``ax`` is written, not read; 16 bytes per float32 parameter instead of
        20), picked at each step by the run's ``mu``
        (:class:`~dltricks.optim.fast.switched.SwitchedUpdate`)."""
        from dltricks.optim.fast.kernel import FusedUpdate, fused_update_for
        from dltricks.optim.fast.switched import SwitchedUpdate

        if device.type != "cpu" or not isinstance(fused, FusedUpdate) or codec is not None:
            return fused
        options = dict(zip(self.structural_options, self.structure_of(group), strict=True))
        variant = self.build_chain(options, before_averaging=True)
        special = fused_update_for(
            (key, "before averaging"), variant, self.group_hyper(group), bindable=True
        )
        layout = fused.layout
        if (
            not isinstance(special, FusedUpdate)
            or special.failure is not None
            or special.layout != layout
            or "mu" not in layout.scalar_keys
        ):
            return fused
        position = 3 + len(layout.tensor_keys) + layout.scalar_keys.index("mu")
        return SwitchedUpdate(fused, special, position, 1.0)
