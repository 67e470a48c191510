"""RAdam's variance rectification of the adaptive denominator."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from dltricks.optim.base import Hyper, Hyperparameter, State, Transform, power, resolve, select


def rectified_denominator(decay: Hyperparameter = "beta2") -> Transform:
    """RAdam's rectification (Liu et al. 2020), applied to ``sqrt(v_t) + eps``.

    Math (``beta`` = beta2)::

        rho_inf = 2 / (1 - beta) - 1
        rho_t   = rho_inf - 2 t beta^t / (1 - beta^t)
        r_t     = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
        u'      = u / (sqrt(1 - beta^t) r_t)     if rho_t > 5
        u'      = 1                               otherwise

    ``rho_t`` is the length of the simple moving average that the exponential one
    approximates; while it is short (``rho_t <= 5``) the variance of the adaptive learning rate
    is unbounded, so the step is plain bias-corrected momentum (a denominator of 1). Placed
    after ``ema_of_squares -> root(eps)`` as the denominator of a :func:`ratio` whose numerator
    is the bias-corrected first moment, this is ``torch.optim.RAdam``'s update, with torch's
    ``eps`` added to ``sqrt(v_t)`` before the bias correction.
    """

    def init(param: Tensor, hyper: Hyper) -> State:
        return {}

    def update(
        u: Tensor, state: Mapping[str, Tensor], param: Tensor, hyper: Hyper
    ) -> tuple[Tensor, State]:
        beta = resolve(decay, hyper)
        t = hyper["step"]
        beta_t = power(beta, t)
        correction = 1 - beta_t
        rho_inf = 2 / (1 - beta) - 1
        rho_t = rho_inf - 2 * t * beta_t / correction
        rectified = rho_t > 5.0
        if not isinstance(rectified, Tensor) and not rectified:
            return torch.ones_like(u), {}
        # power(x, 0.5) rather than x ** 0.5: on the compiled path it keeps the scalar out of
        # the fused loop over the elements (see base.power).
        r2 = (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
        scaled = u * (1 / power(correction * r2, 0.5))
        return select(rectified, scaled, torch.ones_like(u)), {}

    return Transform(
        name=f"rectified_denominator({decay})", init=init, update=update, elementwise=True
    )
