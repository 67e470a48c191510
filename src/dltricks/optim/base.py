"""The core abstraction: a gradient transformation with its own state.

Notation shared by every docstring of :mod:`dltricks.optim`:

* ``theta_t`` the parameter after step ``t``; ``g_t`` the gradient at step ``t``
  (``t`` counts from 1);
* ``u`` the tensor flowing through a chain (it starts as ``g_t`` and ends as the increment
  added to the parameter: ``theta_t = theta_{t-1} + u``);
* ``m_t`` a first-moment statistic, ``v_t`` a second-moment statistic;
* ``eta`` the learning rate, ``beta`` a decay rate, ``eps`` a small constant, ``lambda`` a
  weight-decay coefficient.

A transformation is a pair of pure functions, in the spirit of optax::

    init(theta, hyper) -> state
    update(u, state, theta, hyper) -> (u', new_state)

``state`` maps names to tensors (the names follow ``torch.optim`` so that ``optimizer.state[p]``
reads as it does in torch: ``exp_avg``, ``exp_avg_sq``, ``momentum_buffer``...). ``update``
returns only the entries it changed and never mutates its inputs: only the ``torch.optim``
adapter writes into parameters and state, which is what lets the same chain run eagerly or be
compiled into one fused kernel.

``hyper`` holds the hyperparameters at this step: the numeric entries of the parameter group
(``lr``, ``beta1``, ``beta2``, ``eps``, ``weight_decay``...) and ``step``, the count ``t`` of
this update. A block names the hyperparameters it reads; a user composing a new optimizer may
pass numbers instead of names (see :data:`Hyperparameter`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeAlias

import torch
from torch import Tensor

Scalar: TypeAlias = float | Tensor
"""A hyperparameter's value at a step: a Python number, or a 0-dim tensor on the fast path."""

Hyper: TypeAlias = Mapping[str, Scalar]
"""Hyperparameters of one step, by name, including ``step`` (t, counting from 1)."""

State: TypeAlias = dict[str, Tensor]
"""Per-parameter state of a transformation, by name."""

Hyperparameter: TypeAlias = float | str
"""How a block is told a hyperparameter: a constant, or the name of an entry of ``hyper``."""

InitFn: TypeAlias = Callable[[Tensor, Hyper], State]
UpdateFn: TypeAlias = Callable[[Tensor, Mapping[str, Tensor], Tensor, Hyper], tuple[Tensor, State]]
IntoFn: TypeAlias = Callable[[Tensor, Mapping[str, Tensor], Tensor, Hyper, Tensor], State]


@dataclass(frozen=True)
class Transform:
    """A gradient transformation: ``init(theta, hyper) -> state`` and
    ``update(u, state, theta, hyper) -> (u', changed_state)``.

    Attributes:
        name: a short description, used in ``repr`` and error messages.
        init: builds the state of one parameter tensor (``hyper`` carries the group's
            hyperparameters, e.g. AdaGrad's initial accumulator value).
        update: transforms ``u``; reads ``state`` and returns only the entries it changed.
        state_keys: the names of the state entries this transformation owns.
        elementwise: the block's declaration of what it is. True: every element of ``u'``
            and of the new state depends only on the same element of ``u``, ``theta`` and
            the state, and on the hyperparameters (``u' = f(u_i, theta_i, state_i, hyper)``
            for each index ``i``, whatever the tensor's shape): it may be fused over any
            layout (flat buffers of many parameters, local shards), and per-parameter 0-dim
            state entries (NAdam's ``mu_product``) are allowed. False (the default, and what
            a block that declares nothing is): a *per-tensor* block, which sees whole
            tensors (a norm, an orthogonalisation, anything reading the shape); it always
            runs on the eager path, one parameter at a time. Never guessed by running it.
        per_tensor: the declaration of a block that is *meant* to see whole tensors
            (Newton-Schulz orthogonalisation, Adafactor's row and column statistics, a
            partition by parameter): it runs per tensor, as an undeclared block does, and the
            fast path says nothing about it (an undeclared block draws a warning there, since
            it may be an elementwise block its author forgot to declare). A combinator is
            ``per_tensor`` when it is not elementwise and each of its parts declared itself
            one way or the other.
        parts: for a :func:`~dltricks.optim.chain`, its blocks in order (a chain inside it
            spliced in); empty for anything else. The fast path reads it to fuse the
            elementwise stretches of a chain around its per-tensor blocks (Muon: the momentum
            in one kernel over the flat buffers, Newton-Schulz per matrix, then the decay and
            the step in one kernel). The chain's ``update`` must be the parts' updates one
            after another, each block reading only the state it owns.
        update_into: optional, for a per-tensor block: ``update_into(u, state, theta, hyper,
            out) -> changed_state`` writes ``u'`` into ``out`` (a tensor of ``u``'s shape and
            dtype, possibly ``u`` itself: read ``u`` before writing) instead of returning a
            new tensor, with the same numbers as ``update``. The fast path calls it with the
            parameter's slice of its flat buffer, which saves a temporary and a copy
            (Newton-Schulz's bfloat16 result goes straight into the float32 buffer).
        route: for a :func:`~dltricks.optim.partition.partition`: ``route(theta) -> (label,
            transform)``, the transformation that parameter goes through (raising as the
            update would for a parameter without one). The fast path gives each label's
            transformation buckets of its own, fused as any chain.
    """

    name: str
    init: InitFn
    update: UpdateFn
    state_keys: tuple[str, ...] = ()
    elementwise: bool = False
    per_tensor: bool = False
    parts: tuple[Transform, ...] = ()
    update_into: IntoFn | None = None
    route: Callable[[Tensor], tuple[str, Transform]] | None = None

    @property
    def declared(self) -> bool:
        """Whether the block said what it is (elementwise or per tensor)."""
        return self.elementwise or self.per_tensor

    def __repr__(self) -> str:
        return f"Transform({self.name})"


def resolve(value: Hyperparameter, hyper: Hyper) -> Scalar:
    """The value of a hyperparameter at this step: ``value`` itself or ``hyper[value]``."""
    if isinstance(value, str):
        try:
            return hyper[value]
        except KeyError:
            known = ", ".join(sorted(hyper)) or "none"
            raise KeyError(
                f"hyperparameter {value!r} is not set for this step (known: {known})"
            ) from None
    return value


def stateless(
    name: str,
    update: Callable[[Tensor, Tensor, Hyper], Tensor],
    *,
    elementwise: bool = False,
    per_tensor: bool = False,
    into: Callable[[Tensor, Tensor, Hyper, Tensor], None] | None = None,
) -> Transform:
    """A transformation with no state: ``u' = update(u, theta, hyper)``.

    ``elementwise``: see :class:`Transform`; declare True only for an update that works on
    each element alone (it may then be fused). ``per_tensor``: declare True for an update
    that reads whole tensors (a norm, the shape). Undeclared blocks run per tensor, exactly.
    ``into(u, theta, hyper, out)``: optionally, the same update written into ``out``
    (:attr:`Transform.update_into`).
    """
    if elementwise and per_tensor:
        raise ValueError(f"block {name!r} cannot be both elementwise and per_tensor")

    def init(param: Tensor, hyper: Hyper) -> State:
        return {}

    def update_fn(
        u: Tensor, state: Mapping[str, Tensor], param: Tensor, hyper: Hyper
    ) -> tuple[Tensor, State]:
        return update(u, param, hyper), {}

    update_into: IntoFn | None = None
    if into is not None:
        write = into

        def update_into(
            u: Tensor, state: Mapping[str, Tensor], param: Tensor, hyper: Hyper, out: Tensor
        ) -> State:
            write(u, param, hyper, out)
            return {}

    return Transform(
        name=name,
        init=init,
        update=update_fn,
        elementwise=elementwise,
        per_tensor=per_tensor,
        update_into=update_into,
    )


def select(condition: bool | Tensor, if_true: Tensor, if_false: Tensor) -> Tensor:
    """``if_true if condition else if_false``, also when ``condition`` is a 0-dim tensor.

    On the eager path the step count is a Python number and a plain branch is cheapest; on
    the compiled path it is a tensor and ``torch.where`` keeps the graph free of branches.
    """
    if isinstance(condition, Tensor):
        return torch.where(condition, if_true, if_false)
    return if_true if condition else if_false


def power(base: Scalar, exponent: Scalar) -> Scalar:
    """``base ** exponent`` for hyperparameter scalars (``beta ** t`` of a bias correction).

    On the eager path both are Python numbers and this is ``base ** exponent``. On the compiled
    path they are 0-dim tensors, and it is written ``exp(exponent * log(base))``: inductor
    computes a scalar that contains ``exp`` once per step, in its own tiny kernel, whereas it
    inlines ``pow`` into every iteration of the fused loop over the parameters (measured:
    Adam 3x slower at 100K parameters on CPU). The two forms agree to a few ulp in float64.
    ``base = 0`` gives 0 for a positive exponent, as ``**`` does.
    """
    if not isinstance(base, Tensor) and not isinstance(exponent, Tensor):
        return float(base) ** float(exponent)
    if isinstance(base, Tensor):
        log_base: Scalar = torch.log(base)
    else:
        log_base = math.log(base) if base > 0 else -math.inf
    scaled = exponent * log_base
    assert isinstance(scaled, Tensor)
    return torch.exp(scaled)
