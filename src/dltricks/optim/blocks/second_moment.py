"""Second-moment blocks: the denominators of adaptive learning rates."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from dltricks.optim.base import Hyper, Hyperparameter, State, Transform, resolve
from dltricks.optim.combine import zeros_like_state


def sum_of_squares(
    initial_accumulator_value: Hyperparameter = "initial_accumulator_value",
    *,
    key: str = "sum",
) -> Transform:
    """AdaGrad's accumulator: the sum of all squared gradients so far (Duchi et al. 2011).

    Math::

        s_0 = c                   (initial_accumulator_value)
        s_t = s_{t-1} + u_t^2
        u'  = s_t

    Followed by :func:`root` this gives AdaGrad's denominator ``sqrt(s_t) + eps``: every
    parameter's step shrinks with the history of its own gradients.
    """

    def init(param: Tensor, hyper: Hyper) -> State:
        start = float(resolve(initial_accumulator_value, hyper))
        return {key: torch.full_like(param, start, memory_format=torch.preserve_format)}

    def update(
        u: Tensor, state: Mapping[str, Tensor], param: Tensor, hyper: Hyper
    ) -> tuple[Tensor, State]:
        s = state[key] + u * u
        return s, {key: s}

    return Transform(
        name="sum_of_squares", init=init, update=update, state_keys=(key,), elementwise=True
    )


def ema_of_squares(decay: Hyperparameter = "beta2", *, key: str = "exp_avg_sq") -> Transform:
    """Exponential moving average of the squared input (RMSProp; Adam's second moment).

    Math::

        v_0 = 0
        v_t = beta * v_{t-1} + (1 - beta) * u_t^2
        u'  = v_t

    The lecture's RMSProp ``sigma_t = sqrt(alpha sigma_{t-1}^2 + (1 - alpha) g_t^2)`` is this
    followed by :func:`root` (Tieleman & Hinton 2012).
    """

    def init(param: Tensor, hyper: Hyper) -> State:
        return zeros_like_state(param, key)

    def update(
        u: Tensor, state: Mapping[str, Tensor], param: Tensor, hyper: Hyper
    ) -> tuple[Tensor, State]:
        beta = resolve(decay, hyper)
        v = state[key] * beta + (1 - beta) * (u * u)
        return v, {key: v}

    return Transform(
        name=f"ema_of_squares({decay})",
        init=init,
        update=update,
        state_keys=(key,),
        elementwise=True,
    )


def centered_ema_of_squares(
    decay: Hyperparameter = "alpha",
    *,
    key: str = "square_avg",
    mean_key: str = "grad_avg",
) -> Transform:
    """A moving estimate of the variance of the input (centered RMSProp, Graves 2013).

    Math::

        v_t = beta * v_{t-1} + (1 - beta) * u_t^2
        a_t = beta * a_{t-1} + (1 - beta) * u_t
        u'  = v_t - a_t^2

    Dividing by the root of the variance instead of the uncentered second moment normalises by
    the gradient's noise rather than its magnitude.
    """

    def init(param: Tensor, hyper: Hyper) -> State:
        return zeros_like_state(param, key, mean_key)

    def update(
        u: Tensor, state: Mapping[str, Tensor], param: Tensor, hyper: Hyper
    ) -> tuple[Tensor, State]:
        beta = resolve(decay, hyper)
        v = state[key] * beta + (1 - beta) * (u * u)
        a = state[mean_key] + (1 - beta) * (u - state[mean_key])
        return v - a * a, {key: v, mean_key: a}

    return Transform(
        name=f"centered_ema_of_squares({decay})",
        init=init,
        update=update,
        state_keys=(key, mean_key),
        elementwise=True,
    )


def running_max(*, key: str = "max_exp_avg_sq") -> Transform:
    """AMSGrad's running maximum of the second moment (Reddi et al. 2018).

    Math::

        vmax_0 = 0
        vmax_t = max(vmax_{t-1}, u_t)
        u'     = vmax_t

    Placed after :func:`ema_of_squares` it keeps the denominator from shrinking, which is what
    repairs Adam's non-convergence on Reddi et al.'s counterexample.
    """

    def init(param: Tensor, hyper: Hyper) -> State:
        return zeros_like_state(param, key)

    def update(
        u: Tensor, state: Mapping[str, Tensor], param: Tensor, hyper: Hyper
    ) -> tuple[Tensor, State]:
        peak = torch.maximum(state[key], u)
        return peak, {key: peak}

    return Transform(
        name="running_max", init=init, update=update, state_keys=(key,), elementwise=True
    )


def infinity_norm(
    decay: Hyperparameter = "beta2", eps: Hyperparameter = "eps", *, key: str = "exp_inf"
) -> Transform:
    """Adamax's exponentially weighted infinity norm (Kingma & Ba 2015, section 7.1).

    Math::

        r_0 = 0
        r_t = max(beta * r_{t-1}, |u_t| + eps)
        u'  = r_t

    The limit p -> infinity of Adam's L2 second moment; it needs no bias correction.
    """

    def init(param: Tensor, hyper: Hyper) -> State:
        return zeros_like_state(param, key)

    def update(
        u: Tensor, state: Mapping[str, Tensor], param: Tensor, hyper: Hyper
    ) -> tuple[Tensor, State]:
        beta = resolve(decay, hyper)
        r = torch.maximum(state[key] * beta, u.abs() + resolve(eps, hyper))
        return r, {key: r}

    return Transform(
        name=f"infinity_norm({decay})",
        init=init,
        update=update,
        state_keys=(key,),
        elementwise=True,
    )


def root(eps: Hyperparameter = "eps", *, eps_inside: bool = False) -> Transform:
    """Square root with a guard: ``u' = sqrt(u) + eps``, or ``sqrt(u + eps)`` if ``eps_inside``.

    torch (and the Adam paper) add ``eps`` outside the root; TensorFlow/Keras put an
    ``eps-hat`` inside, and AdaDelta adds it inside as well. With ``eps_inside=False`` this is
    torch's convention.
    """

    def init(param: Tensor, hyper: Hyper) -> State:
        return {}

    def update(
        u: Tensor, state: Mapping[str, Tensor], param: Tensor, hyper: Hyper
    ) -> tuple[Tensor, State]:
        e = resolve(eps, hyper)
        return ((u + e).sqrt() if eps_inside else u.sqrt() + e), {}

    where = "inside" if eps_inside else "outside"
    return Transform(name=f"root(eps {where})", init=init, update=update, elementwise=True)
