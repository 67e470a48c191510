"""Weight decay: as an L2 penalty on the gradient, or decoupled from it."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from dltricks.optim.base import Hyper, Hyperparameter, Transform, resolve, stateless


def _plus_decayed_weights(
    weight_decay: Hyperparameter,
) -> Callable[[Tensor, Tensor, Hyper], Tensor]:
    """``u + lambda * theta``, the update both placements of weight decay share.

    A Python ``lambda`` of 0 makes no pass over the tensor (torch skips it too); a tensor
    (the fast path's traced hyperparameters, a tensor ``weight_decay``) is never inspected,
    so the kernel stays one graph whatever the value.
    """

    def update(u: Tensor, param: Tensor, hyper: Hyper) -> Tensor:
        wd = resolve(weight_decay, hyper)
        return u if not isinstance(wd, Tensor) and wd == 0 else u + wd * param

    return update


def add_l2_penalty(weight_decay: Hyperparameter = "weight_decay") -> Transform:
    """L2 regularization folded into the gradient: ``u' = u + lambda * theta``.

    This is the gradient of ``L + lambda/2 ||theta||^2``; with plain SGD it gives the lecture's
    ``theta <- (1 - eta lambda) theta - eta dL/dtheta``. Placed before an adaptive
    denominator, the decay is divided by it too, so under Adam this is *not* weight decay
    (Loshchilov & Hutter 2019): see :func:`add_decayed_weights`. torch's ``weight_decay`` of
    SGD, Adam, RMSprop, Adagrad, Adamax, NAdam and Adadelta.
    """
    return stateless(
        f"add_l2_penalty({weight_decay})", _plus_decayed_weights(weight_decay), elementwise=True
    )


def add_decayed_weights(weight_decay: Hyperparameter = "weight_decay") -> Transform:
    """Decoupled weight decay: ``u' = u + lambda * theta``, placed *after* the adaptive scaling.

    Followed by :func:`~dltricks.optim.blocks.scale.scale_by_learning_rate` this gives
    ``theta_t = theta_{t-1} - eta (u + lambda theta_{t-1})``, i.e. ``theta`` shrinks by
    ``(1 - eta lambda)`` whatever the adaptive denominator: AdamW (Loshchilov & Hutter 2019),
    Lion, and NAdam with ``decoupled_weight_decay=True``. The formula is the same as
    :func:`add_l2_penalty`; what differs is where the block sits in the chain.
    """
    return stateless(
        f"add_decayed_weights({weight_decay})",
        _plus_decayed_weights(weight_decay),
        elementwise=True,
    )
