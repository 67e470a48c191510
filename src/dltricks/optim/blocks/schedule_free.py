"""Schedule-Free's interpolation between a fast iterate and its weighted average."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from dltricks.optim.base import Hyper, Hyperparameter, Scalar, State, Transform, resolve
from dltricks.optim.blocks._scalars import choose


def _larger(a: Scalar, b: Scalar) -> Scalar:
    return choose(a >= b, a, b)


def schedule_free_interpolation(
    lr: Hyperparameter = "lr",
    beta1: Hyperparameter = "beta1",
    warmup_steps: Hyperparameter = "warmup_steps",
    r: Hyperparameter = "r",
    weight_lr_power: Hyperparameter = "weight_lr_power",
    *,
    key: str = "z",
    weight_sum_key: str = "weight_sum",
    lr_max_key: str = "lr_max",
) -> Transform:
    """Schedule-Free's step (Defazio et al. 2024), as ``schedulefree.AdamWScheduleFree``.

    Math (``theta`` holds ``y``, the point where gradients are taken; ``u_t`` the normalised
    gradient, weight decay at ``y`` included)::

        eta_t   = eta * min(1, t / warmup_steps)
        M_t     = max(M_{t-1}, eta_t)                                  (lr_max, M_0 = -1)
        w_t     = t^r * M_t^weight_lr_power,  W_t = W_{t-1} + w_t      (weight_sum)
        c_t     = w_t / W_t                   (0 while W_t = 0)
        y_t     = (1 - c_t) y_{t-1} + c_t z_{t-1} + eta_t (beta1 (1 - c_t) - 1) u_t
        z_t     = z_{t-1} - eta_t u_t                                   (z, z_0 = y_0)
        u'      = y_t - y_{t-1}

    ``z`` is plain SGD on the normalised gradient; ``x``, the average of the ``z`` with weights
    ``w``, is what is evaluated, and ``y = (1 - beta1) z + beta1 x`` is where the gradient is
    taken: the momentum-like interpolation that replaces a learning-rate schedule. Only ``y``
    and ``z`` are stored; ``x = (y - (1 - beta1) z) / beta1`` is recovered by the optimizer's
    ``eval()``. The output is the whole increment, learning rate included: this block ends a
    chain.
    """

    def init(param: Tensor, hyper: Hyper) -> State:
        dtype = param.dtype if param.dtype == torch.float64 else torch.float32
        return {
            key: param.detach().clone(memory_format=torch.preserve_format),
            weight_sum_key: torch.zeros((), dtype=dtype, device=param.device),
            lr_max_key: torch.full((), -1.0, dtype=dtype, device=param.device),
        }

    def update(
        u: Tensor, state: Mapping[str, Tensor], param: Tensor, hyper: Hyper
    ) -> tuple[Tensor, State]:
        t = hyper["step"]
        rate = resolve(lr, hyper) * (t / _larger(t, resolve(warmup_steps, hyper)))
        lr_max = _larger(state[lr_max_key], rate)
        weight = t ** resolve(r, hyper) * lr_max ** resolve(weight_lr_power, hyper)
        weight_sum = state[weight_sum_key] + weight
        positive = weight_sum > 0
        c = choose(positive, weight / choose(positive, weight_sum, 1.0), 0.0)
        b1 = resolve(beta1, hyper)
        z = state[key]
        increment = (z - param) * c + u * (rate * (b1 * (1 - c) - 1))
        changed = {
            key: z - u * rate,
            weight_sum_key: torch.as_tensor(weight_sum, dtype=state[weight_sum_key].dtype),
            lr_max_key: torch.as_tensor(lr_max, dtype=state[lr_max_key].dtype),
        }
        return increment, changed

    return Transform(
        name=f"schedule_free_interpolation({beta1})",
        init=init,
        update=update,
        state_keys=(key, weight_sum_key, lr_max_key),
        elementwise=True,
    )
