"""Rprop's per-weight step sizes, adapted from the signs of successive gradients."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from dltricks.optim.base import Hyper, Hyperparameter, State, Transform, resolve
from dltricks.optim.combine import zeros_like_state


def scale_by_resilient_step(
    etaminus: Hyperparameter = "etaminus",
    etaplus: Hyperparameter = "etaplus",
    step_size_min: Hyperparameter = "step_size_min",
    step_size_max: Hyperparameter = "step_size_max",
    initial_step_size: Hyperparameter = "lr",
    *,
    key: str = "step_size",
    previous_key: str = "prev",
) -> Transform:
    """Resilient backpropagation (Riedmiller & Braun 1993), as ``torch.optim.Rprop``.

    Math (``s`` the per-weight step size, ``p`` the gradient kept from the last step)::

        s_0 = eta_0                                     (the learning rate at the first step)
        p_0 = 0
        f_t = eta+ if u_t p_{t-1} > 0;  eta- if u_t p_{t-1} < 0;  1 otherwise
        s_t = clamp(f_t s_{t-1}, step_size_min, step_size_max)
        q_t = 0 if u_t p_{t-1} < 0 else u_t           (after a sign change, wait one step)
        p_t = q_t
        u'  = sign(q_t) s_t

    Only the sign of the gradient is used: every weight has its own step size, grown while
    its gradient keeps its sign and shrunk when it flips. The lecture's story of adaptive
    learning rates starts here; RMSProp is Rprop made to work with mini-batches.
    """

    def init(param: Tensor, hyper: Hyper) -> State:
        start = float(resolve(initial_step_size, hyper))
        state = zeros_like_state(param, previous_key)
        state[key] = torch.full_like(param, start, memory_format=torch.preserve_format)
        return state

    def update(
        u: Tensor, state: Mapping[str, Tensor], param: Tensor, hyper: Hyper
    ) -> tuple[Tensor, State]:
        agreement = u * state[previous_key]
        grew, flipped = agreement > 0, agreement < 0
        previous_size = state[key]
        grown = previous_size * resolve(etaplus, hyper)
        shrunk = previous_size * resolve(etaminus, hyper)
        lower, upper = resolve(step_size_min, hyper), resolve(step_size_max, hyper)
        size = torch.where(grew, grown, torch.where(flipped, shrunk, previous_size))
        # The bounds are numbers (eager) or 0-dim tensors (compiled): clamp takes either.
        size = size.clamp(lower, upper)  # type: ignore[arg-type]
        kept = torch.where(flipped, torch.zeros_like(u), u)
        return kept.sign() * size, {key: size, previous_key: kept}

    return Transform(
        name="scale_by_resilient_step",
        init=init,
        update=update,
        state_keys=(previous_key, key),
        elementwise=True,
    )
