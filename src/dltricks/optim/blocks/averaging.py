"""Averaged SGD: a decaying step and a running average of the iterates."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from dltricks.optim.base import Hyper, Hyperparameter, State, Transform, resolve, select
from dltricks.optim.blocks._scalars import choose
from dltricks.optim.combine import zeros_like_state


def _scalar_dtype(param: Tensor) -> torch.dtype:
    # torch keeps these scalars in float32 (float64 for float64 parameters).
    return param.dtype if param.dtype == torch.float64 else torch.float32


def averaged_sgd(
    lr: Hyperparameter = "lr",
    lambd: Hyperparameter = "lambd",
    alpha: Hyperparameter = "alpha",
    t0: Hyperparameter = "t0",
    *,
    eta_key: str = "eta",
    mu_key: str = "mu",
    average_key: str = "ax",
    before_averaging: bool = False,
) -> Transform:
    """Averaged SGD's step and average (Polyak & Juditsky 1992), as ``torch.optim.ASGD``.

    Math (the input ``u_t`` is the gradient, weight decay already added)::

        eta_0 = eta (the learning rate at the first step),  mu_0 = 1,  a_0 = 0
        theta_t = (1 - lambd eta_{t-1}) theta_{t-1} - eta_{t-1} u_t
        a_t     = theta_t                              if mu_{t-1} = 1
        a_t     = a_{t-1} + mu_{t-1} (theta_t - a_{t-1})   otherwise          (ax)
        eta_t   = eta / (1 + lambd eta t)^alpha                                 (eta)
        mu_t    = 1 / max(1, t - t0)                                            (mu)
        u'      = theta_t - theta_{t-1}

    The step size decays as ``t^-alpha`` and, after ``t0`` steps, ``a_t`` averages the
    iterates; the average, not ``theta``, is the estimate with the optimal rate (read it from
    ``optimizer.state[p]["ax"]``). The output is the whole increment, learning rate included:
    this block ends a chain. ``eta_t`` reads the learning rate of step ``t`` and is used at
    step ``t + 1``, as in torch.

    ``before_averaging=True``: the same block for the steps where ``mu_{t-1} = 1`` only (steps
    1 to ``t0 + 2``), which writes ``a_t = theta_t`` without reading ``a_{t-1}``. The
    fast path runs it in those steps (4 bytes per float32 parameter fewer); anywhere else
    it is wrong.
    """

    def init(param: Tensor, hyper: Hyper) -> State:
        dtype = _scalar_dtype(param)
        start = float(resolve(lr, hyper))
        state = zeros_like_state(param, average_key)
        state[eta_key] = torch.tensor(start, dtype=dtype, device=param.device)
        state[mu_key] = torch.ones((), dtype=dtype, device=param.device)
        return state

    def update(
        u: Tensor, state: Mapping[str, Tensor], param: Tensor, hyper: Hyper
    ) -> tuple[Tensor, State]:
        eta, mu, average = state[eta_key], state[mu_key], state[average_key]
        decay = resolve(lambd, hyper)
        theta = param * (1 - decay * eta) - u * eta
        if before_averaging:
            new_average = theta
        else:
            moved = average + (theta - average) * mu
            new_average = select(mu != 1, moved, theta)
        rate, t = resolve(lr, hyper), hyper["step"]
        new_eta = rate / ((1 + decay * rate * t) ** resolve(alpha, hyper))
        excess = t - resolve(t0, hyper)
        new_mu = 1 / choose(excess > 1, excess, 1.0)
        changed = {
            average_key: new_average,
            eta_key: torch.as_tensor(new_eta, dtype=eta.dtype, device=eta.device),
            mu_key: torch.as_tensor(new_mu, dtype=mu.dtype, device=mu.device),
        }
        return theta - param, changed

    phase = ", before averaging" if before_averaging else ""
    return Transform(
        name=f"averaged_sgd({lambd}, {alpha}, {t0}{phase})",
        init=init,
        update=update,
        state_keys=(average_key, eta_key, mu_key),
        elementwise=True,
    )
