"""Combinators: build transformations out of smaller ones.

:func:`chain` (one after another), :func:`ratio` (two statistics of the same input, divided),
:func:`branch` (several statistics of the same input, merged by any rule; later branches see
the state earlier ones produced in the same step); :func:`~dltricks.optim.partition.partition`
gives different parameters different transformations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from dltricks.optim.base import Hyper, Hyperparameter, State, Transform, resolve


def declaration(transforms: Sequence[Transform]) -> tuple[bool, bool]:
    """``(elementwise, per_tensor)`` of a combination of ``transforms``: elementwise when every
    part is, declared per tensor when it is not but every part declared itself."""
    elementwise = all(t.elementwise for t in transforms)
    per_tensor = not elementwise and all(t.declared for t in transforms)
    return elementwise, per_tensor


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
    elementwise, per_tensor = declaration(transforms)
    return Transform(
        name=f"chain({name})",
        init=init,
        update=update,
        state_keys=keys,
        elementwise=elementwise,
        per_tensor=per_tensor,
        parts=tuple(part for t in transforms for part in (t.parts or (t,))),
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

    elementwise, per_tensor = declaration((numerator, denominator))
    return Transform(
        name=f"ratio({numerator.name} / {denominator.name})",
        init=init,
        update=update,
        state_keys=keys,
        elementwise=elementwise,
        per_tensor=per_tensor,
    )


@dataclass(frozen=True)
class Merge:
    """How :func:`branch` combines its branches' outputs: ``combine(outputs, hyper) -> u'``.

    ``elementwise`` declares that each element of ``u'`` depends only on the same element of
    the outputs (then a branch of elementwise parts may be fused); see :class:`Transform`.
    """

    name: str
    combine: Callable[[Sequence[Tensor], Hyper], Tensor]
    elementwise: bool = False


def lerp_merge(weight: Hyperparameter) -> Merge:
    """``u' = a + w (b - a)`` of two branches ``(a, b)``, as ``torch.lerp(a, b, w)``.

    Nesterov momentum in Muon's form: ``branch(identity(), ema("momentum"),
    merge=lerp_merge("momentum"))`` gives ``g_t + mu (m_t - g_t)``.
    """

    def combine(outputs: Sequence[Tensor], hyper: Hyper) -> Tensor:
        start, end = _two(outputs, "lerp_merge")
        w = resolve(weight, hyper)
        if isinstance(w, Tensor):  # the fast path's 0-dim hyperparameter, maybe another dtype
            # torch.lerp's own two formulas, in the tensors' precision: a large weight (Muon's
            # momentum 0.95) counts back from ``b``, so the fused step rounds as torch's.
            w = w.to(start.dtype)
            diff = end - start
            return torch.where(w < 0.5, start + w * diff, end - diff * (1 - w))
        return torch.lerp(start, end, w)

    return Merge(f"lerp({weight})", combine, elementwise=True)


def quotient() -> Merge:
    """``u' = a / b`` of two branches: :func:`ratio` with the state passed along."""

    def combine(outputs: Sequence[Tensor], hyper: Hyper) -> Tensor:
        top, bottom = _two(outputs, "quotient")
        return top / bottom

    return Merge("quotient", combine, elementwise=True)


def total() -> Merge:
    """``u' = a + b + ...``: the sum of the branches."""

    def combine(outputs: Sequence[Tensor], hyper: Hyper) -> Tensor:
        out = outputs[0]
        for other in outputs[1:]:
            out = out + other
        return out

    return Merge("sum", combine, elementwise=True)


def _two(outputs: Sequence[Tensor], name: str) -> tuple[Tensor, Tensor]:
    if len(outputs) != 2:
        raise ValueError(f"{name} merges two branches, got {len(outputs)}")
    return outputs[0], outputs[1]


def branch(*transforms: Transform, merge: Merge | Callable[..., Tensor]) -> Transform:
    """Run several transformations on the *same* input and merge their outputs.

    Math::

        o_1 = T_1(u; s)      o_2 = T_2(u; s + new state of T_1)     ...
        u'  = merge(o_1, ..., o_k)

    Unlike :func:`ratio`, each branch sees the state the branches before it produced in this
    step: AdaBelief's denominator can read the new first moment ``m_t``. ``merge`` is a
    :class:`Merge` (:func:`lerp_merge`, :func:`quotient`, :func:`total`, or your own, which
    declares whether it is elementwise) or a plain function ``merge(o_1, ..., o_k) -> u'``,
    which declares nothing, so the branch runs per tensor (exactly) on the fast path.
    """
    if not transforms:
        raise ValueError("branch needs at least one transformation")
    for transform in transforms:
        if not isinstance(transform, Transform):
            raise ValueError(
                f"branch takes dltricks.optim.Transform objects, got {type(transform).__name__}"
            )
    if isinstance(merge, Merge):
        rule = merge
    elif callable(merge):
        plain = merge
        rule = Merge(
            getattr(plain, "__name__", "merge"),
            lambda outputs, hyper: plain(*outputs),
        )
    else:
        raise ValueError(f"merge must be a Merge or a function, got {type(merge).__name__}")
    keys = _merged_keys(transforms, "branch")

    def init(param: Tensor, hyper: Hyper) -> State:
        state: State = {}
        for transform in transforms:
            state.update(transform.init(param, hyper))
        return state

    def update(
        u: Tensor, state: Mapping[str, Tensor], param: Tensor, hyper: Hyper
    ) -> tuple[Tensor, State]:
        seen = dict(state)
        changed: State = {}
        outputs = []
        for transform in transforms:
            out, block_changed = transform.update(u, seen, param, hyper)
            seen.update(block_changed)
            changed.update(block_changed)
            outputs.append(out)
        return rule.combine(outputs, hyper), changed

    elementwise, per_tensor = declaration(transforms)
    if not rule.elementwise:
        elementwise, per_tensor = False, isinstance(merge, Merge) and (elementwise or per_tensor)
    names = ", ".join(t.name for t in transforms)
    return Transform(
        name=f"branch({names}; {rule.name})",
        init=init,
        update=update,
        state_keys=keys,
        elementwise=elementwise,
        per_tensor=per_tensor,
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
