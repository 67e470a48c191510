"""First-moment blocks: heavy-ball and Nesterov momentum, moving averages, NAdam's moment."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from dltricks.optim.base import Hyper, Hyperparameter, State, Transform, power, resolve, select
from dltricks.optim.combine import zeros_like_state


def trace(
    momentum: Hyperparameter = "momentum",
    dampening: Hyperparameter = "dampening",
    *,
    nesterov: bool = False,
    key: str = "momentum_buffer",
) -> Transform:
    """Heavy-ball or Nesterov momentum, as in ``torch.optim.SGD``.

    Math (``mu`` = momentum, ``d`` = dampening)::

        b_1 = u_1                           (the first step copies the input, no dampening)
        b_t = mu * b_{t-1} + (1 - d) * u_t
        u'  = b_t                           (heavy ball)
        u'  = u_t + mu * b_t                (Nesterov, ``nesterov=True``)

    With ``d = 0`` this is the lecture's momentum ``v_t = lambda v_{t-1} - eta g_t`` after
    scaling by ``-eta`` (Polyak 1964); the Nesterov form is Sutskever et al. 2013's
    reformulation used by torch.
    """

    def init(param: Tensor, hyper: Hyper) -> State:
        return zeros_like_state(param, key)

    def update(
        u: Tensor, state: Mapping[str, Tensor], param: Tensor, hyper: Hyper
    ) -> tuple[Tensor, State]:
        mu = resolve(momentum, hyper)
        damp = resolve(dampening, hyper)
        buffer = select(hyper["step"] == 1, u, mu * state[key] + (1 - damp) * u)
        out = u + mu * buffer if nesterov else buffer
        return out, {key: buffer}

    name = "nesterov" if nesterov else "heavy_ball"
    return Transform(
        name=f"{name}({momentum}, {dampening})",
        init=init,
        update=update,
        state_keys=(key,),
        elementwise=True,
    )


def ema(decay: Hyperparameter = "beta1", *, key: str = "exp_avg") -> Transform:
    """Exponential moving average of the input, from zero (Adam's first moment).

    Math::

        m_0 = 0
        m_t = beta * m_{t-1} + (1 - beta) * u_t
        u'  = m_t

    Momentum in Adam's form (Kingma & Ba 2015); biased toward zero early on, which
    :func:`~dltricks.optim.blocks.correction.bias_correction` undoes.
    """

    def init(param: Tensor, hyper: Hyper) -> State:
        return zeros_like_state(param, key)

    def update(
        u: Tensor, state: Mapping[str, Tensor], param: Tensor, hyper: Hyper
    ) -> tuple[Tensor, State]:
        beta = resolve(decay, hyper)
        if isinstance(beta, Tensor):  # the fast path's 0-dim hyperparameter: inlined by inductor
            m = state[key] + (1 - beta) * (u - state[key])
        else:  # one pass and one new tensor, as torch's exp_avg.lerp_(grad, 1 - beta)
            m = torch.lerp(state[key], u, 1 - beta)
        return m, {key: m}

    return Transform(
        name=f"ema({decay})", init=init, update=update, state_keys=(key,), elementwise=True
    )


def nesterov_first_moment(
    beta1: Hyperparameter = "beta1",
    momentum_decay: Hyperparameter = "momentum_decay",
    *,
    key: str = "exp_avg",
    product_key: str = "mu_product",
) -> Transform:
    """NAdam's Nesterov-style first moment with a momentum schedule (Dozat 2016).

    Math (``psi`` = momentum_decay)::

        mu_t   = beta1 * (1 - 0.5 * 0.96 ** (t * psi))
        P_t    = prod_{i<=t} mu_i
        m_t    = beta1 * m_{t-1} + (1 - beta1) * u_t
        u'     = (1 - mu_t) / (1 - P_t) * u_t + mu_{t+1} / (1 - P_t * mu_{t+1}) * m_t

    The second term looks one step ahead with the *next* momentum coefficient, which is
    Nesterov's idea applied to Adam's moving average. Matches ``torch.optim.NAdam``.
    """

    def init(param: Tensor, hyper: Hyper) -> State:
        state = zeros_like_state(param, key)
        # The running product is a scalar; keep it at least float32 so bfloat16 params do not
        # round it away.
        dtype = param.dtype if param.dtype == torch.float64 else torch.float32
        state[product_key] = torch.ones((), dtype=dtype, device=param.device)
        return state

    def update(
        u: Tensor, state: Mapping[str, Tensor], param: Tensor, hyper: Hyper
    ) -> tuple[Tensor, State]:
        b1 = resolve(beta1, hyper)
        psi = resolve(momentum_decay, hyper)
        t = hyper["step"]
        mu = b1 * (1.0 - 0.5 * power(0.96, t * psi))
        mu_next = b1 * (1.0 - 0.5 * power(0.96, (t + 1) * psi))
        product = state[product_key] * mu
        m = state[key] + (1 - b1) * (u - state[key])
        out = u * ((1.0 - mu) / (1.0 - product)) + m * (mu_next / (1.0 - product * mu_next))
        return out, {key: m, product_key: product}

    return Transform(
        name=f"nesterov_first_moment({beta1}, {momentum_decay})",
        init=init,
        update=update,
        state_keys=(key, product_key),
        elementwise=True,
    )
