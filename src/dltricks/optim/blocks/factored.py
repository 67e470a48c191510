"""Adafactor's blocks: a factored second moment, update clipping, a relative step size."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from dltricks.optim.base import (
    Hyper,
    Hyperparameter,
    State,
    Transform,
    power,
    resolve,
    stateless,
)


def _eps1(eps1: Hyperparameter | None, hyper: Hyper, param: Tensor) -> float:
    """eps1, or the parameter dtype's machine epsilon where it is None or not set."""
    if eps1 is None or (isinstance(eps1, str) and eps1 not in hyper):
        return torch.finfo(param.dtype).eps
    return float(resolve(eps1, hyper))


def factored_second_moment(
    beta2_decay: Hyperparameter = "beta2_decay", eps1: Hyperparameter | None = "eps1"
) -> Transform:
    """Adafactor's preconditioner with a factored second moment (per tensor).

    Math (``tau`` = beta2_decay, ``G`` the input; for a matrix of shape ``(n, m)``, and for
    the last two dimensions of a bigger tensor)::

        beta2hat_t = 1 - t^tau
        R_t = beta2hat_t R_{t-1} + (1 - beta2hat_t) mean_j G_ij^2       (row_var, (n, 1))
        C_t = beta2hat_t C_{t-1} + (1 - beta2hat_t) mean_i G_ij^2       (col_var, (1, m))
        V_t = R_t C_t / max(mean_i R_t, eps1)
        u'  = G / sqrt(max(V_t, eps1^2))

    A vector (or scalar) keeps the full ``V_t`` (``variance``). The state is O(n + m) per
    matrix instead of O(n m): the rank-1 ``R C / sum R`` is the moment matrix's best
    approximation in I-divergence (Shazeer & Stern 2018). ``eps1`` placed as torch places it
    (None: the dtype's machine epsilon). Matches the preconditioner of
    ``torch.optim.Adafactor``.
    """

    def init(param: Tensor, hyper: Hyper) -> State:
        if param.dim() > 1:
            row_shape = list(param.shape)
            row_shape[-1] = 1
            col_shape = list(param.shape)
            col_shape[-2] = 1
            return {"row_var": param.new_zeros(row_shape), "col_var": param.new_zeros(col_shape)}
        return {"variance": torch.zeros_like(param, memory_format=torch.preserve_format)}

    def update(
        u: Tensor, state: Mapping[str, Tensor], param: Tensor, hyper: Hyper
    ) -> tuple[Tensor, State]:
        if u.numel() == 0:
            return u, {}  # an empty tensor: its row or column means would be 0 / 0
        weight = power(float(hyper["step"]), resolve(beta2_decay, hyper))
        eps = _eps1(eps1, hyper, param)
        changed: State
        if u.dim() > 1:
            # (g * g).mean(dim) without a tensor of g's size, as torch computes it.
            row_mean = torch.norm(u, dim=-1, keepdim=True).square_().div_(u.size(-1))
            col_mean = torch.norm(u, dim=-2, keepdim=True).square_().div_(u.size(-2))
            row = torch.lerp(state["row_var"], row_mean, weight)
            col = torch.lerp(state["col_var"], col_mean, weight)
            estimate = row @ col
            estimate.div_(row.mean(dim=-2, keepdim=True).clamp_(min=eps))
            changed = {"row_var": row, "col_var": col}
        else:
            variance = torch.lerp(state["variance"], u * u, weight)
            estimate = variance.clone()
            changed = {"variance": variance}
        out = estimate.clamp_(min=eps * eps).rsqrt_().mul_(u)
        return out, changed

    return Transform(
        name=f"factored_second_moment({beta2_decay})",
        init=init,
        update=update,
        state_keys=("row_var", "col_var", "variance"),
        per_tensor=True,
    )


def clip_by_block_rms(d: Hyperparameter = "d") -> Transform:
    """Adafactor's update clipping (per tensor): ``u' = u / max(1, RMS(u) / d)``.

    The root mean square of the whole tensor's update is capped at ``d``, which tames the
    large updates a stale second moment gives (Shazeer & Stern 2018, section 6).
    """

    def update(u: Tensor, param: Tensor, hyper: Hyper) -> Tensor:
        if u.numel() == 0:
            return u  # nothing to clip (torch's step divides 0 by 0 there and raises)
        threshold = float(resolve(d, hyper))
        rms = u.norm(2).item() / (u.numel() ** 0.5)
        denominator = max(1.0, rms / threshold)
        # Under the threshold the update is itself: no pass over the tensor.
        return u if denominator == 1.0 else u / denominator

    return stateless(f"clip_by_block_rms({d})", update, per_tensor=True)


def scale_by_relative_step(lr: Hyperparameter = "lr", eps2: Hyperparameter = "eps2") -> Transform:
    """Adafactor's step size, relative to the parameter's scale (per tensor).

    Math::

        rho_t   = min(eta, 1 / sqrt(t))
        alpha_t = max(eps2, RMS(theta_{t-1})) rho_t
        u'      = -alpha_t u

    A step moves each matrix by a fraction of its own size (Shazeer & Stern 2018, section 8);
    torch lets ``lr`` cap ``rho_t`` (the paper's 0.01).
    """

    def update(u: Tensor, param: Tensor, hyper: Hyper) -> Tensor:
        eta = float(resolve(lr, hyper))
        t = float(hyper["step"])
        rho = min(eta, 1 / (t**0.5))
        rms = param.norm(2).item() / (param.numel() ** 0.5) if param.numel() else 0.0
        alpha = max(float(resolve(eps2, hyper)), rms) * rho
        return u * -alpha

    return stateless(f"scale_by_relative_step({lr}, {eps2})", update, per_tensor=True)


def decay_weights(
    lr: Hyperparameter = "lr", weight_decay: Hyperparameter = "weight_decay"
) -> Transform:
    """Decoupled weight decay added after the step is scaled: ``u' = u - eta lambda theta``.

    Last in a chain whose step size is not ``eta`` (Adafactor's relative step), so the
    weights still shrink by ``(1 - eta lambda)`` per step, as torch.optim.Adafactor's do.
    """

    def update(u: Tensor, param: Tensor, hyper: Hyper) -> Tensor:
        decay = resolve(lr, hyper) * resolve(weight_decay, hyper)
        if not isinstance(decay, Tensor):
            if decay == 0:
                return u  # no decay (the default): no pass over the tensor
            return torch.add(u, param, alpha=-decay)
        return u - decay * param

    return stateless(f"decay_weights({lr}, {weight_decay})", update, elementwise=True)
