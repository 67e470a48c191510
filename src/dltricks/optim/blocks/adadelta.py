"""AdaDelta: the ratio of the RMS of past updates to the RMS of gradients."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from dltricks.optim.base import Hyper, Hyperparameter, State, Transform, resolve
from dltricks.optim.combine import zeros_like_state


def scale_by_adadelta(
    rho: Hyperparameter = "rho",
    eps: Hyperparameter = "eps",
    *,
    key: str = "square_avg",
    delta_key: str = "acc_delta",
) -> Transform:
    """AdaDelta's unit-corrected step (Zeiler 2012).

    Math::

        v_t     = rho * v_{t-1} + (1 - rho) * u_t^2
        delta_t = sqrt(D_{t-1} + eps) / sqrt(v_t + eps) * u_t
        D_t     = rho * D_{t-1} + (1 - rho) * delta_t^2
        u'      = delta_t

    The numerator (the RMS of past updates) gives the step the units of the parameter, so the
    method needs no learning rate in principle; torch still multiplies by ``lr`` (default 1).
    The update depends on a statistic of its own past outputs, so it is one block rather than a
    ratio of two independent statistics.
    """

    def init(param: Tensor, hyper: Hyper) -> State:
        return zeros_like_state(param, key, delta_key)

    def update(
        u: Tensor, state: Mapping[str, Tensor], param: Tensor, hyper: Hyper
    ) -> tuple[Tensor, State]:
        r = resolve(rho, hyper)
        e = resolve(eps, hyper)
        v = state[key] * r + (1 - r) * (u * u)
        delta = (state[delta_key] + e).sqrt() / (v + e).sqrt() * u
        accumulated = state[delta_key] * r + (1 - r) * (delta * delta)
        return delta, {key: v, delta_key: accumulated}

    return Transform(
        name=f"scale_by_adadelta({rho})",
        init=init,
        update=update,
        state_keys=(key, delta_key),
        elementwise=True,
    )
