"""Lion's sign of an interpolated momentum."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from dltricks.optim.base import Hyper, Hyperparameter, State, Transform, resolve, stateless
from dltricks.optim.combine import zeros_like_state


def sign_of_interpolation(
    beta1: Hyperparameter = "beta1",
    beta2: Hyperparameter = "beta2",
    *,
    key: str = "exp_avg",
) -> Transform:
    """Lion's update direction (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms").

    Math::

        c_t = beta1 * m_{t-1} + (1 - beta1) * u_t
        u'  = sign(c_t)
        m_t = beta2 * m_{t-1} + (1 - beta2) * u_t

    The step has the same magnitude in every coordinate, so Lion wants a learning rate 3-10x
    smaller than AdamW's; two decay rates let the direction react faster (beta1) than the
    memory (beta2).
    """

    def init(param: Tensor, hyper: Hyper) -> State:
        return zeros_like_state(param, key)

    def update(
        u: Tensor, state: Mapping[str, Tensor], param: Tensor, hyper: Hyper
    ) -> tuple[Tensor, State]:
        b1 = resolve(beta1, hyper)
        b2 = resolve(beta2, hyper)
        m = state[key]
        direction = (m + (1 - b1) * (u - m)).sign()
        return direction, {key: m + (1 - b2) * (u - m)}

    return Transform(
        name=f"sign_of_interpolation({beta1}, {beta2})",
        init=init,
        update=update,
        state_keys=(key,),
        elementwise=True,
    )


def sign() -> Transform:
    """``u' = sign(u)``: signSGD (Bernstein et al. 2018), the stateless core of Lion."""
    return stateless("sign", lambda u, param, hyper: u.sign(), elementwise=True)
