"""Weight decay: as an L2 penalty on the gradient, or decoupled from it."""

from __future__ import annotations

from torch import Tensor

from dltricks.optim.base import Hyper, Hyperparameter, Scalar, Transform, resolve, stateless


def _is_zero(value: Scalar) -> bool:
    """A Python number equal to 0: no decay, and no pass over the tensor (torch skips it too).

    A tensor (the fast path's traced hyperparameters, a tensor ``weight_decay``) is never
    inspected here: the kernel stays one graph whatever the value.
    """
    return not isinstance(value, Tensor) and value == 0


def add_l2_penalty(weight_decay: Hyperparameter = "weight_decay") -> Transform:
    """L2 regularization folded into the gradient: ``u' = u + lambda * theta``.

    This is the gradient of ``L + lambda/2 ||theta||^2``; with plain SGD it gives the lecture's
    ``theta <- (1 - eta lambda) theta - eta dL/dtheta``. Placed before an adaptive
    denominator, the decay is divided by it too, so under Adam this is *not* weight decay
    (Loshchilov & Hutter 2019): see :func:`add_decayed_weights`. torch's ``weight_decay`` of
    SGD, Adam, RMSprop, Adagrad, Adamax, NAdam and Adadelta.
    """

    def update(u: Tensor, param: Tensor, hyper: Hyper) -> Tensor:
        wd = resolve(weight_decay, hyper)
        return u if _is_zero(wd) else u + wd * param

    return stateless(f"add_l2_penalty({weight_decay})", update, elementwise=True)


def add_decayed_weights(weight_decay: Hyperparameter = "weight_decay") -> Transform:
    """Decoupled weight decay: ``u' = u + lambda * theta``, placed *after* the adaptive scaling.

    Followed by :func:`~dltricks.optim.blocks.scale.scale_by_learning_rate` this gives
    ``theta_t = theta_{t-1} - eta (u + lambda theta_{t-1})``, i.e. ``theta`` shrinks by
    ``(1 - eta lambda)`` whatever the adaptive denominator: AdamW (Loshchilov & Hutter 2019),
    Lion, and NAdam with ``decoupled_weight_decay=True``. The formula is the same as
    :func:`add_l2_penalty`; what differs is where the block sits in the chain.
    """

    def update(u: Tensor, param: Tensor, hyper: Hyper) -> Tensor:
        wd = resolve(weight_decay, hyper)
        return u if _is_zero(wd) else u + wd * param

    return stateless(f"add_decayed_weights({weight_decay})", update, elementwise=True)
