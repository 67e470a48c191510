"""Bias correction of moving averages started at zero."""

from __future__ import annotations

from torch import Tensor

from dltricks.optim.base import Hyper, Hyperparameter, Transform, power, resolve, stateless


def bias_correction(decay: Hyperparameter = "beta1") -> Transform:
    """Undo the zero start of a moving average (Kingma & Ba 2015, section 3).

    Math::

        u' = u / (1 - beta ** t)

    After ``m_t = beta m_{t-1} + (1 - beta) g_t`` from ``m_0 = 0``, ``E[m_t] = (1 - beta^t) E[g]``
    for a stationary gradient, so dividing by ``1 - beta^t`` gives an unbiased estimate. Without
    it Adam's first step is ``eta (1 - beta1) / sqrt(1 - beta2)`` (3.16 eta at the defaults)
    instead of about ``eta``.
    """

    def update(u: Tensor, param: Tensor, hyper: Hyper) -> Tensor:
        beta = resolve(decay, hyper)
        # A multiplication by the scalar reciprocal: a division per element costs compute
        # that a single-threaded fused step cannot hide behind memory traffic.
        return u * (1 / (1 - power(beta, hyper["step"])))

    return stateless(f"bias_correction({decay})", update, elementwise=True)
