"""AdaBelief's second moment: the moving variance of the gradient around its own prediction."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from dltricks.optim.base import Hyper, Hyperparameter, State, Transform, resolve, stateless
from dltricks.optim.combine import zeros_like_state


def ema_of_squared_surprise(
    beta1: Hyperparameter = "beta1",
    beta2: Hyperparameter = "beta2",
    eps: Hyperparameter = "eps",
    *,
    key: str = "exp_avg_var",
    mean_key: str = "exp_avg",
) -> Transform:
    """AdaBelief's "belief" in the gradient (Zhuang et al. 2020, algorithm 2).

    Math::

        m_t = beta1 m_{t-1} + (1 - beta1) u_t          (read, not owned: ``mean_key``)
        s_t = beta2 s_{t-1} + (1 - beta2) (u_t - m_t)^2 + eps
        u'  = s_t

    Where Adam divides by the moving average of ``g^2``, AdaBelief divides by that of
    ``(g - m)^2``: the step is large when the gradient is where the momentum predicted it
    (a confident "belief") and small when it is not. ``m_t`` is the *new* first moment, which
    the numerator branch of a :func:`ratio` computes from the same old state: this block
    recomputes it with the formula of :func:`~dltricks.optim.blocks.ema` (bit for bit the
    same value), and owns only ``s``.
    """

    def init(param: Tensor, hyper: Hyper) -> State:
        return zeros_like_state(param, key)

    def update(
        u: Tensor, state: Mapping[str, Tensor], param: Tensor, hyper: Hyper
    ) -> tuple[Tensor, State]:
        b1, b2 = resolve(beta1, hyper), resolve(beta2, hyper)
        m = state[mean_key] + (1 - b1) * (u - state[mean_key])
        surprise = u - m
        s = state[key] * b2 + (1 - b2) * (surprise * surprise) + resolve(eps, hyper)
        return s, {key: s}

    return Transform(
        name=f"ema_of_squared_surprise({beta1}, {beta2})",
        init=init,
        update=update,
        state_keys=(key,),
        elementwise=True,
    )


def shrink_weights(weight_decay: Hyperparameter = "weight_decay") -> Transform:
    """Weight decay not scaled by the learning rate: ``u' = u - lambda * theta``.

    Placed *after* :func:`~dltricks.optim.blocks.scale_by_learning_rate`, the weights shrink
    by ``(1 - lambda)`` at every step whatever ``eta`` is (pytorch-optimizer's
    ``fixed_decay=True``); :func:`add_decayed_weights` before the learning rate gives
    ``(1 - eta lambda)``.
    """

    def update(u: Tensor, param: Tensor, hyper: Hyper) -> Tensor:
        return u - resolve(weight_decay, hyper) * param

    return stateless(f"shrink_weights({weight_decay})", update, elementwise=True)
