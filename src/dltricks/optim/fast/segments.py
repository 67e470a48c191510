"""A chain with per-tensor blocks, fused around them: kernels for the elementwise stretches.

Muon is ``momentum (elementwise) -> Newton-Schulz (per matrix) -> decay and step
(elementwise)``. The per-tensor block must see each matrix whole, but the stretches before and
after it need not: each becomes one compiled kernel over the bucket's flat buffers (as a whole
elementwise chain does, :mod:`~dltricks.optim.fast.kernel`), and the per-tensor block runs
between them on each parameter's slice. A step of such a chain is then::

    stretch 1 (kernel)  reads g and its state, writes its state and u into the output buffer
    per-tensor block    for each parameter: reads its slice of u, writes its slice back
    ...
    last stretch        reads u, theta and its state, writes theta and its state

with the step count advanced as a whole elementwise chain's. A chain that ends with a
per-tensor block adds the output buffer to the parameters in one pass at the end.

State: the elementwise stretches' entries live in flat buffers (the bucket's), the per-tensor
blocks' (Adafactor's row and column statistics) stay tensors of their own, per parameter.
Segmenting keeps every number of the eager path as long as each block of the chain reads only
the state it owns, which :attr:`Transform.parts` requires of a chain.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from dltricks.optim.base import Scalar, Transform
from dltricks.optim.combine import chain
from dltricks.optim.fast.kernel import FusedUpdate, Layout, analyse


@dataclass(frozen=True)
class Stage:
    """One step of a segmented chain: an elementwise stretch compiled into ``fused``, or a
    per-tensor block (``fused`` None) run on each parameter's slice."""

    transform: Transform
    fused: FusedUpdate | None


class SegmentedUpdate:
    """A chain's elementwise stretches compiled, its per-tensor blocks in between.

    Attributes:
        stages: the chain as :class:`Stage` objects, in order.
        layout: the union of the stretches' layouts (their flat state entries and the
            hyperparameters their kernels read), as a bucket lays them out.
    """

    def __init__(self, stages: list[Stage]) -> None:
        self.stages = stages
        tensor_keys: list[str] = []
        scalar_keys: list[str] = []
        hyper_keys: list[str] = []
        for stage in stages:
            if stage.fused is None:
                continue
            layout = stage.fused.layout
            tensor_keys += [k for k in layout.tensor_keys if k not in tensor_keys]
            scalar_keys += [k for k in layout.scalar_keys if k not in scalar_keys]
            hyper_keys += [k for k in layout.hyper_keys if k not in hyper_keys]
        self.layout = Layout(tuple(tensor_keys), tuple(scalar_keys), tuple(hyper_keys))
        # Output buffers a bucket needs: one, or two when a stretch sits between per-tensor
        # blocks (it reads one and writes the other).
        self.buffers = 1 + any(
            s.fused is not None
            and not s.fused.writes_param
            and i > 0
            and stages[i - 1].fused is None
            for i, s in enumerate(stages)
        )

    @property
    def failure(self) -> str | None:
        """Why a stretch's kernel could not be compiled (None while none failed)."""
        return next((s.fused.failure for s in self.stages if s.fused and s.fused.failure), None)

    @property
    def compilations(self) -> int:
        """How many graphs the stretches have compiled in this process."""
        return sum(s.fused.compilations for s in self.stages if s.fused is not None)

    @property
    def writes_param(self) -> bool:
        """Whether the last stage is a kernel that writes the parameters (and counts steps)."""
        last = self.stages[-1].fused
        return last is not None


def segmented_update(transform: Transform, hyper: Mapping[str, Scalar]) -> SegmentedUpdate | str:
    """The stages of a chain declared per tensor, or why it cannot be segmented.

    Consecutive elementwise blocks of ``transform.parts`` form one stretch (one kernel); every
    other block is a stage of its own. Only a chain whose blocks all declare what they are
    (``transform.per_tensor``) and that has an elementwise stretch is segmented: anything else
    runs per tensor, as before.
    """
    parts = transform.parts
    if not parts or not transform.per_tensor:
        return f"{transform.name} is not a chain of declared blocks"
    groups: list[list[Transform] | Transform] = []
    for part in parts:
        if part.elementwise and groups and isinstance(groups[-1], list):
            groups[-1].append(part)
        elif part.elementwise:
            groups.append([part])
        else:
            groups.append(part)
    if not any(isinstance(g, list) for g in groups):
        return f"{transform.name} has no elementwise stretch to fuse"
    stages: list[Stage] = []
    for index, group in enumerate(groups):
        if not isinstance(group, list):
            stages.append(Stage(group, None))
            continue
        stretch = group[0] if len(group) == 1 else chain(*group)
        layout = analyse(stretch, hyper)
        if isinstance(layout, str):
            return f"the stretch {stretch.name} cannot be fused: {layout}"
        last = index == len(groups) - 1
        # Called through torch.compile at every step (never bound): a few microseconds
        # against a per-tensor block's work.
        fused = FusedUpdate(stretch, layout, bindable=False, writes_param=last)
        stages.append(Stage(stretch, fused))
    return SegmentedUpdate(stages)
