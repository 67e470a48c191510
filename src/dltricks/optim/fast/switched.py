"""Two compiled variants of one chain, chosen at each step by a per-parameter scalar state.

A chain may hold a value that is the same for a long stretch of steps and lets a kernel skip
work: ASGD's ``mu`` is 1 for its first ``t0`` steps, and while it is the average ``ax`` is a
copy of the parameters, so a kernel that writes ``ax = theta`` without reading ``ax`` gives the
same numbers and moves 16 bytes per float32 parameter instead of 20. :class:`SwitchedUpdate`
holds the general kernel and the special one (compiled from a variant of the chain that is
valid only while the scalar has that value, with the same layout) and calls the special one
when the run's scalar says so. Reading the scalar is a host read, so this is for CPU buckets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from dltricks.optim.fast.kernel import BoundUpdate, FusedUpdate


class SwitchedUpdate:
    """:class:`FusedUpdate`'s calling convention over two kernels of the same layout:
    ``special`` when argument ``position`` (a run's scalar state, one element) equals
    ``value``, ``general`` otherwise."""

    def __init__(
        self, general: FusedUpdate, special: FusedUpdate, position: int, value: float
    ) -> None:
        if general.layout != special.layout:
            raise ValueError("the two variants of a switched update must share their layout")
        self.general = general
        self.special = special
        self.position = position
        self.value = value
        self.layout = general.layout
        self.writes_param = general.writes_param

    @property
    def failure(self) -> str | None:
        """Why a variant could not be compiled (None while none failed)."""
        return self.general.failure or self.special.failure

    @property
    def compilations(self) -> int:
        return self.general.compilations + self.special.compilations

    def pick(self, args: Sequence[Tensor | None]) -> FusedUpdate:
        """The variant for these arguments."""
        scalar = args[self.position]
        assert scalar is not None
        return self.special if float(scalar) == self.value else self.general

    def __call__(self, *args: Tensor) -> None:
        self.pick(args)(*args)

    def bind(self, args: Sequence[Tensor]) -> BoundSwitch:
        """Run once on ``args`` and return a caller of the same arguments (as
        :meth:`FusedUpdate.bind`); each variant is bound at its first use."""
        bound = BoundSwitch(self, args)
        bound()
        return bound


class BoundSwitch:
    """A :class:`SwitchedUpdate` bound to its arguments; each variant's own
    :class:`BoundUpdate` is made (by running it) the first time the variant is picked."""

    def __init__(self, update: SwitchedUpdate, args: Sequence[Tensor]) -> None:
        self.update = update
        self.args: list[Tensor | None] = list(args)
        self._bound: dict[int, BoundUpdate] = {}

    @property
    def direct(self) -> bool:
        """Whether calls of every bound variant skip dynamo's guard checks."""
        return bool(self._bound) and all(b.direct for b in self._bound.values())

    def replace(self, position: int, tensor: Tensor | None) -> None:
        """Use ``tensor`` as argument ``position`` from now on (None: none until replaced)."""
        self.args[position] = tensor
        for bound in self._bound.values():
            bound.replace(position, tensor)

    def __call__(self) -> Any:
        if any(a is None for a in self.args):
            raise RuntimeError("a fused update was called with a released argument")
        variant = self.update.pick(self.args)
        bound = self._bound.get(id(variant))
        if bound is None:
            self._bound[id(variant)] = variant.bind(self.args)  # type: ignore[arg-type]
        else:
            bound()
