"""Scaling blocks: learning rate, its AdaGrad-style decay, maximisation."""

from __future__ import annotations

from torch import Tensor

from dltricks.optim.base import Hyper, Hyperparameter, Transform, resolve, stateless


def scale_by_learning_rate(lr: Hyperparameter = "lr") -> Transform:
    """The last block of a descent chain: ``u' = -eta * u`` (then ``theta += u'``)."""

    def update(u: Tensor, param: Tensor, hyper: Hyper) -> Tensor:
        return u * -resolve(lr, hyper)

    return stateless(f"scale_by_learning_rate({lr})", update, elementwise=True)


def scale(factor: float) -> Transform:
    """Multiply by a constant: ``u' = c * u``."""
    return stateless(f"scale({factor})", lambda u, param, hyper: u * factor, elementwise=True)


def inverse_time_decay(lr_decay: Hyperparameter = "lr_decay") -> Transform:
    """AdaGrad's learning-rate decay: ``u' = u / (1 + (t - 1) * d)``.

    torch's ``Adagrad(lr_decay=d)`` uses ``eta_t = eta / (1 + (t - 1) d)``.
    """

    def update(u: Tensor, param: Tensor, hyper: Hyper) -> Tensor:
        d = resolve(lr_decay, hyper)
        # Multiply by the scalar reciprocal rather than divide every element (see
        # bias_correction); torch folds the same factor into its step size.
        return u * (1 / (1 + (hyper["step"] - 1) * d))

    return stateless(f"inverse_time_decay({lr_decay})", update, elementwise=True)


def negate() -> Transform:
    """``u' = -u``: first in a chain, it turns descent into ascent (torch's ``maximize``)."""
    return stateless("negate", lambda u, param, hyper: -u, elementwise=True)
