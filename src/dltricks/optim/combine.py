"""Combinators: build transformations out of smaller ones."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from dltricks.optim.base import Hyper, State, Transform


def _merged_keys(transforms: tuple[Transform, ...], where: str) -> tuple[str, ...]:
    keys: list[str] = []
    for transform in transforms:
        for key in transform.state_keys:
            if key in keys:
                raise ValueError(
                    f"{where}: state key {key!r} is owned by two blocks; "
                    "give one of them another key"
                )
            keys.append(key)
    return tuple(keys)


def chain(*transforms: Transform) -> Transform:
    """Apply transformations one after another: ``u <- T_k(...T_2(T_1(u)))``.

    Each block sees the previous block's output. That is the right composition for
    "add weight decay, then scale by the learning rate", and the wrong one for Adam:
    ``chain(ema(beta1), scale_by_rms(beta2))`` would feed the second-moment estimate the
    *first moment* instead of the raw gradient. Use :func:`ratio` for statistics of the same
    gradient.
    """
    if not transforms:
        raise ValueError("chain needs at least one transformation")
    keys = _merged_keys(transforms, "chain")

    def init(param: Tensor, hyper: Hyper) -> State:
        state: State = {}
        for transform in transforms:
            state.update(transform.init(param, hyper))
        return state

    def update(
        u: Tensor, state: Mapping[str, Tensor], param: Tensor, hyper: Hyper
    ) -> tuple[Tensor, State]:
        changed: State = {}
        for transform in transforms:
            u, block_changed = transform.update(u, state, param, hyper)
            changed.update(block_changed)
        return u, changed

    name = " -> ".join(t.name for t in transforms)
    # A chain is elementwise only if every block declares it is.
    elementwise = all(t.elementwise for t in transforms)
    return Transform(
        name=f"chain({name})", init=init, update=update, state_keys=keys, elementwise=elementwise
    )


def ratio(numerator: Transform, denominator: Transform) -> Transform:
    """Divide two statistics of the *same* input: ``u' = N(u) / D(u)``.

    This is how adaptive methods are built: Adam is ``ratio(first moment, root of second
    moment)`` — the lecture's "Adam = Momentum + RMSProp" — and RMSProp is
    ``ratio(identity(), root of second moment)``. Both branches receive the same ``u``.
    """
    keys = _merged_keys((numerator, denominator), "ratio")

    def init(param: Tensor, hyper: Hyper) -> State:
        return {**numerator.init(param, hyper), **denominator.init(param, hyper)}

    def update(
        u: Tensor, state: Mapping[str, Tensor], param: Tensor, hyper: Hyper
    ) -> tuple[Tensor, State]:
        top, top_state = numerator.update(u, state, param, hyper)
        bottom, bottom_state = denominator.update(u, state, param, hyper)
        return top / bottom, {**top_state, **bottom_state}

    return Transform(
        name=f"ratio({numerator.name} / {denominator.name})",
        init=init,
        update=update,
        state_keys=keys,
        elementwise=numerator.elementwise and denominator.elementwise,
    )


def identity() -> Transform:
    """``u' = u``: the numerator of RMSProp and AdaGrad."""

    def init(param: Tensor, hyper: Hyper) -> State:
        return {}

    def update(
        u: Tensor, state: Mapping[str, Tensor], param: Tensor, hyper: Hyper
    ) -> tuple[Tensor, State]:
        return u, {}

    return Transform(name="identity", init=init, update=update, elementwise=True)


def zeros_like_state(param: Tensor, *keys: str) -> State:
    """Fresh zero state for ``keys``, shaped, typed and placed like ``param``."""
    return {key: torch.zeros_like(param, memory_format=torch.preserve_format) for key in keys}
