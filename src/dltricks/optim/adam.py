"""Adam and AdamW: Momentum divided by RMSProp."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch

from dltricks.optim.adapter import ComposedOptimizer, NonFinitePolicy
from dltricks.optim.base import Transform
from dltricks.optim.blocks import (
    add_decayed_weights,
    add_l2_penalty,
    bias_correction,
    ema,
    ema_of_squares,
    negate,
    root,
    running_max,
    scale_by_learning_rate,
)
from dltricks.optim.combine import chain, ratio
from dltricks.optim.state_precision import StateCodec


def adam_direction(*, amsgrad: bool = False) -> Transform:
    """Adam's step direction: bias-corrected first moment over the root of the second.

    Math::

        m_t = beta1 m_{t-1} + (1 - beta1) g_t         v_t = beta2 v_{t-1} + (1 - beta2) g_t^2
        u'  = (m_t / (1 - beta1^t)) / (sqrt(vhat_t / (1 - beta2^t)) + eps)

    with ``vhat_t = v_t`` or, for AMSGrad, ``vhat_t = max(vhat_{t-1}, v_t)``. Both moments are
    statistics of the same gradient, hence :func:`ratio`, not :func:`chain`.
    """
    second = [ema_of_squares("beta2")]
    if amsgrad:
        second.append(running_max())
    second += [bias_correction("beta2"), root("eps")]
    return ratio(chain(ema("beta1"), bias_correction("beta1")), chain(*second))


class Adam(ComposedOptimizer):
    r"""Adam; drop-in for ``torch.optim.Adam``.

    Math (Kingma & Ba 2015, with torch's placement of eps)::

        g_t     = grad L(theta_{t-1}) + lambda * theta_{t-1}       (L2, coupled)
        m_t     = beta1 * m_{t-1} + (1 - beta1) * g_t              (exp_avg)
        v_t     = beta2 * v_{t-1} + (1 - beta2) * g_t^2            (exp_avg_sq)
        vhat_t  = max(vhat_{t-1}, v_t) if amsgrad else v_t         (max_exp_avg_sq)
        theta_t = theta_{t-1} - eta * (m_t / (1 - beta1^t)) / (sqrt(vhat_t / (1 - beta2^t)) + eps)

    The lecture's "Adam = RMSProp + Momentum": the numerator is Momentum's moving average,
    the denominator RMSProp's. ``eps`` sits outside the root and after bias correction, as in
    torch and the paper's algorithm 1 (TensorFlow/Keras use the paper's ``eps-hat``, which
    differs by a factor ``sqrt(1 - beta2^t)``). With ``decoupled_weight_decay=True`` this is
    :class:`AdamW`.

    Chain: ``[negate] -> add_l2_penalty -> ratio(ema(beta1) -> bias_correction(beta1),
    ema_of_squares(beta2) -> [running_max] -> bias_correction(beta2) -> root(eps)) ->
    scale_by_learning_rate``. AMSGrad: Reddi, Kale & Kumar 2018.

    ``state_precision="bf16"`` or ``"int8"`` stores ``m`` and ``v`` in 2 or about 1 byte each
    (stochastically rounded bfloat16; 8-bit block codes): see
    :mod:`dltricks.optim.state_precision`.
    """

    structural_options = ("amsgrad", "maximize", "decoupled_weight_decay")
    non_negative = ("lr", "eps", "weight_decay")
    flags = structural_options
    flag_defaults: ClassVar[Mapping[str, Any]] = {
        "amsgrad": False,
        "maximize": False,
        "foreach": None,
        "capturable": False,
        "differentiable": False,
        "decoupled_weight_decay": False,
        "fused": None,
    }

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool = False,
        nonfinite: NonFinitePolicy = "raise",
        fast: bool | None = None,
        state_precision: str = "fp32",
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": tuple(betas) if isinstance(betas, list) else betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "maximize": maximize,
            "foreach": foreach,
            "capturable": capturable,
            "differentiable": differentiable,
            "fused": fused,
            "decoupled_weight_decay": decoupled_weight_decay,
        }
        super().__init__(
            params, defaults, nonfinite=nonfinite, fast=fast, state_precision=state_precision
        )

    def build_chain(self, options: Mapping[str, Any]) -> Transform:
        blocks = [negate()] if options["maximize"] else []
        if options["decoupled_weight_decay"]:
            blocks += [adam_direction(amsgrad=options["amsgrad"]), add_decayed_weights()]
        else:
            blocks += [add_l2_penalty(), adam_direction(amsgrad=options["amsgrad"])]
        blocks.append(scale_by_learning_rate())
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
        """bf16 and int8 state of float32 CPU parameters: the hand-written C kernels, where
        they build (:func:`~dltricks.optim.fast.native.native_update_for`)."""
        if codec is None:
            return fused
        from dltricks.optim.fast.native import native_update_for

        return native_update_for(self, group, codec, dtype, device, fused)


class AdamW(Adam):
    r"""AdamW: Adam with decoupled weight decay; drop-in for ``torch.optim.AdamW``.

    Math::

        theta_t = theta_{t-1} - eta * (Adam direction_t + lambda * theta_{t-1})

    i.e. the weights shrink by ``(1 - eta lambda)`` at every step whatever the adaptive
    denominator, which makes the best ``lambda`` independent of ``eta`` (Loshchilov & Hutter
    2019). Chain: ``[negate] -> adam_direction -> add_decayed_weights ->
    scale_by_learning_rate``. Default ``weight_decay=1e-2``, as torch.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        nonfinite: NonFinitePolicy = "raise",
        fast: bool | None = None,
        state_precision: str = "fp32",
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            foreach=foreach,
            maximize=maximize,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
            decoupled_weight_decay=True,
            nonfinite=nonfinite,
            fast=fast,
            state_precision=state_precision,
        )

    def __setstate__(self, state: dict[str, Any]) -> None:
        # As torch's AdamW: whatever a loaded group says, AdamW decays decoupled.
        super().__setstate__(state)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True
