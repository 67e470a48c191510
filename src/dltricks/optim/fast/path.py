"""The fast path of one optimizer: its groups laid out in buckets, stepped by fused kernels."""

from __future__ import annotations

import math
import operator
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from dltricks.optim.fast.flat import Bucket
from dltricks.optim.fast.kernel import FusedUpdate, fused_update_for
from dltricks.optim.fast.segments import SegmentedUpdate
from dltricks.optim.fast.torch_internals import is_distributed_tensor
from dltricks.optim.finite import all_finite
from dltricks.optim.state_precision import StateCodec

if TYPE_CHECKING:
    from dltricks.optim.adapter import ComposedOptimizer
    from dltricks.optim.base import Transform

FAST_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
"""Dtypes the fast path takes. float16/bfloat16 parameters keep float16/bfloat16 state, and the
kernel computes the update in float32 and rounds once when it stores the parameter and the
state, as torch's fused optimizers do; the eager path rounds after every operation, so the two
paths agree only to the narrow dtype's rounding there."""

FAST_DEVICES = ("cpu", "cuda")

MIN_FAST_NUMEL = 1 << 15
"""In automatic mode (``fast=None``), buckets smaller than this stay eager: compiling costs
seconds (about one with a warm on-disk cache) and saves tens of microseconds per step, which
a small model repays only over very many steps. ``fast=True`` or ``DLTRICKS_FAST=1`` lifts it."""


@dataclass
class _GroupPlan:
    group: dict[str, Any]
    params: list[Tensor]
    chain_key: Any
    buckets: list[Bucket]
    eager: list[Tensor]


_Work = tuple[Bucket, int, int, dict[str, Any]]
"""One kernel call of a step: the bucket, its parameters ``a..b-1``, and their param group."""


class FlatPath:
    """Buckets, grad bindings and fused kernel calls for one :class:`ComposedOptimizer`."""

    def __init__(self, optimizer: ComposedOptimizer, *, min_numel: int) -> None:
        self.optimizer = optimizer
        self.min_numel = min_numel
        self.plans: list[_GroupPlan | None] = []
        # Per device and kernel hyperparameter names: the tensors and the values they hold.
        self._hyper: dict[
            tuple[torch.device, tuple[str, ...]], tuple[list[Tensor], list[float]]
        ] = {}
        self._warned: set[Any] = set()

    # -- planning ------------------------------------------------------------------------

    def _plan(self, index: int, group: dict[str, Any]) -> _GroupPlan:
        opt = self.optimizer
        while len(self.plans) <= index:
            self.plans.append(None)
        plan = self.plans[index]
        key = opt.fast_key(group)
        params = group["params"]
        if (
            plan is not None
            and plan.group is group
            and plan.chain_key == key
            and len(plan.params) == len(params)
            and all(map(operator.is_, plan.params, params))
            and all(bucket.is_bound(opt.state) for bucket in plan.buckets)
        ):
            return plan
        previous = plan
        plan = self._build(group, key, previous)
        if previous is not None:
            for bucket in previous.buckets:
                bucket.release()
        self.plans[index] = plan
        return plan

    def _build(self, group: dict[str, Any], key: Any, previous: _GroupPlan | None) -> _GroupPlan:
        opt = self.optimizer
        params: list[Tensor] = list(group["params"])
        ours = {id(p) for b in previous.buckets for p in b.params} if previous else set()
        # One bucket per dtype, device and storage of the moments (state_precision).
        partitions: dict[tuple[torch.dtype, torch.device, StateCodec | None], list[Tensor]] = {}
        eager: list[Tensor] = []
        lowbit = opt.state_precision != "fp32"
        for p in params:
            if self._eligible(p, id(p) in ours):
                codec = opt.codec_for(p) if lowbit else None
                partitions.setdefault((p.dtype, p.device, codec), []).append(p)
            else:
                eager.append(p)
        if all(sum(p.numel() for p in members) < self.min_numel for members in partitions.values()):
            # Nothing to fuse: no need for the fused update (its first use in a process
            # imports torch's compiler, seconds).
            return _GroupPlan(group, params, key, [], list(params))
        chain = opt.chain_for(group)
        hyper = opt.group_hyper(group)
        buckets: list[Bucket] = []
        if chain.route is None:
            buckets = self._buckets(group, key, chain, hyper, partitions, eager)
        else:
            # A partition: each label's transformation is a chain of its own (Muon's
            # segmented, AdamW's one kernel), with buckets of its own.
            routed: dict[str, tuple[Transform, dict[Any, list[Tensor]]]] = {}
            for where, members in partitions.items():
                for p in members:
                    label, transform = chain.route(p)
                    entry = routed.setdefault(label, (transform, {}))
                    entry[1].setdefault(where, []).append(p)
            for label, (transform, parts) in routed.items():
                buckets += self._buckets(
                    group, (key, "partition", label), transform, hyper, parts, eager
                )
        # Keep the group's order for the eager leftovers (it decides nothing but reads well).
        order = {id(p): i for i, p in enumerate(params)}
        eager.sort(key=lambda p: order[id(p)])
        return _GroupPlan(group, params, key, buckets, eager)

    def _buckets(
        self,
        group: dict[str, Any],
        key: Any,
        chain: Transform,
        hyper: dict[str, Any],
        partitions: dict[Any, list[Tensor]],
        eager: list[Tensor],
    ) -> list[Bucket]:
        """Buckets of ``chain`` for ``partitions`` (by dtype, device and state storage);
        parameters that cannot be fused are added to ``eager``."""
        opt = self.optimizer
        fused = fused_update_for(key, chain, hyper, bindable=opt.chain_is_fixed)
        if isinstance(fused, str) or fused.failure is not None:
            # A chain declared per tensor with no elementwise stretch to fuse around its
            # per-tensor blocks runs eagerly by design; anything else fell back and says so.
            # (Muon and Adafactor are segmented: see fast/segments.py.)
            if not (isinstance(fused, str) and chain.per_tensor):
                self._warn_once(key, fused if isinstance(fused, str) else fused.failure)
            for members in partitions.values():
                eager.extend(members)
            return []
        buckets = []
        for (dtype, device, codec), members in partitions.items():
            if sum(p.numel() for p in members) < self.min_numel:
                eager.extend(members)
            elif codec is None:
                update = opt.fast_update(group, key, fused, device, dtype)
                buckets.append(Bucket(members, opt.state, chain, update, hyper))
            else:
                stored = fused_update_for(
                    key, chain, hyper, bindable=opt.chain_is_fixed, codec=codec
                )
                if isinstance(stored, str) or stored.failure is not None:
                    self._warn_once(
                        (key, codec), stored if isinstance(stored, str) else stored.failure
                    )
                    eager.extend(members)
                    continue
                update = (
                    opt.fast_update(group, key, stored, device, dtype, codec)
                    if isinstance(stored, FusedUpdate)
                    else stored
                )
                buckets.append(
                    Bucket(
                        members, opt.state, chain, update, hyper, codec=codec, seed=opt.state_seed
                    )
                )
        return buckets

    @staticmethod
    def _eligible(p: Tensor, ours: bool) -> bool:
        if is_distributed_tensor(p):
            # A DTensor (FSDP2's fully_shard, tensor parallel) is a view of a shard that its
            # owner re-points at will: it cannot be moved into a flat buffer. The eager path
            # runs the chain on DTensors as torch's optimizers do, exactly, per tensor.
            return False
        if p.dtype not in FAST_DTYPES or p.device.type not in FAST_DEVICES:
            return False
        if not p.requires_grad:
            return False  # frozen: it never gets a gradient, so it needs no state buffers
        if p.layout != torch.strided or not p.is_contiguous() or p.numel() == 0:
            return False
        if p.grad is not None and p.grad.is_sparse:
            return False
        # Rebinding p.data would silently untie a parameter that shares its storage with
        # another tensor (a slice of a bigger buffer): only a parameter that owns its storage,
        # or one already bound by this optimizer, is moved into a bucket.
        owns = p.storage_offset() == 0 and p.untyped_storage().nbytes() == (
            p.numel() * p.element_size()
        )
        return owns or ours

    def _warn_once(self, key: Any, reason: str | None) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(
                f"dltricks fast path unavailable for {type(self.optimizer).__name__} "
                f"({reason}); using the eager path",
                RuntimeWarning,
                stacklevel=4,
            )

    # -- hyperparameters as tensors ------------------------------------------------------

    def _hyper_tensors(
        self, device: torch.device, names: tuple[str, ...], group: Mapping[str, Any], t: int
    ) -> list[Tensor]:
        """The kernel's hyperparameters as the path's persistent 0-dim float64 tensors.

        The same tensors at every step (the kernel's direct call holds them), refilled in
        place when a value changes. Runs at every step: plain float values are read straight
        from the group; anything else goes through ``group_value`` (tensors, ints, betas).
        """
        cached = self._hyper.get((device, names))
        if cached is None:
            tensors = [torch.zeros((), dtype=torch.float64, device=device) for _ in names]
            cached = self._hyper[(device, names)] = (tensors, [math.nan] * len(names))
        tensors, values = cached
        for i, name in enumerate(names):
            if name == "step":
                value: Any = float(t)
            else:
                value = group.get(name)
                if type(value) is not float:
                    value = self._read(group, name)
            if value != values[i]:
                tensors[i].fill_(value)
                values[i] = value
        return tensors

    def _read(self, group: Mapping[str, Any], name: str) -> float:
        try:
            return float(self.optimizer.group_value(group, name))
        except KeyError:
            known = self.optimizer.group_hyper(group)
            raise KeyError(
                f"hyperparameter {name!r} is not set for this step "
                f"(known: {', '.join(sorted(known))})"
            ) from None

    # -- the step ------------------------------------------------------------------------

    def step(self) -> bool:
        """Take one step; False when it was skipped for a non-finite gradient."""
        opt = self.optimizer
        work: list[_Work] = []
        eager: list[tuple[dict[str, Any], list[Tensor]]] = []
        for index, group in enumerate(opt.param_groups):
            plan = self._plan(index, group)
            for bucket in plan.buckets:
                work += [(bucket, a, b, group) for a, b in bucket.runs(bucket.gather_grads())]
            if not plan.eager:
                continue
            leftovers = opt.params_to_step(group, plan.eager)
            if leftovers:
                eager.append((group, leftovers))
        if opt.nonfinite != "ignore" and not self._all_finite(work, eager):
            opt.reject_nonfinite([(g, ps) for g, ps in eager] + self._as_groups(work))
            return False
        for item in work:
            self._run(*item)
        for group, params in eager:
            opt.step_group_eagerly(group, params)
        return True

    @staticmethod
    def _as_groups(work: list[_Work]) -> list[tuple[dict[str, Any], list[Tensor]]]:
        return [({}, bucket.params[a:b]) for bucket, a, b, _ in work]

    @staticmethod
    def _all_finite(work: list[_Work], eager: list[tuple[dict[str, Any], list[Tensor]]]) -> bool:
        # A whole bucket is checked over its whole buffer: its padding is always zero.
        grads = []
        for bucket, a, b, _ in work:
            buf = bucket.grad_buf
            assert buf is not None  # a run has gradients
            grads.append(buf if b - a == len(bucket.params) else buf[slice(*bucket.span(a, b))])
        grads += [p.grad for _, params in eager for p in params if p.grad is not None]
        return all_finite(grads)

    def _run(self, bucket: Bucket, a: int, b: int, group: dict[str, Any]) -> None:
        lo, hi = bucket.span(a, b)
        # Dynamo specialises lengths 0 and 1; a one-element run is not worth a kernel.
        if hi - lo >= 2 and bucket.fused.failure is None:
            names = bucket.fused.layout.hyper_keys
            tensors = self._hyper_tensors(
                bucket.param_buf.device, names, group, bucket.steps[a] + 1
            )
            segmented = isinstance(bucket.fused, SegmentedUpdate)
            values = self.optimizer.group_hyper(group) if segmented else None
            try:
                bucket.run_fused(a, b, tensors, values)
                return
            except Exception:
                if bucket.fused.failure is None:
                    raise  # not the compiler: the eager path would fail the same way
                self._warn_once(("run", id(bucket.fused)), bucket.fused.failure)
        hyper = self.optimizer.group_hyper(group)
        for i in range(a, b):
            bucket.run_eager(i, hyper)

    # -- gradients and teardown ----------------------------------------------------------

    def zero_grad(self, set_to_none: bool) -> set[int]:
        """Zero the bound gradient buffers; returns the ids of the parameters handled."""
        handled: set[int] = set()
        for plan in self.plans:
            if plan is None:
                continue
            for bucket in plan.buckets:
                if bucket.is_bound(self.optimizer.state):
                    bucket.zero_grad(set_to_none)
                    handled.update(id(p) for p in bucket.params)
        return handled

    def detach(self) -> None:
        """Leave the fast path: the buckets' hooks are removed (gradients stay as they are)."""
        for plan in self.plans:
            if plan is None:
                continue
            for bucket in plan.buckets:
                bucket.release()
        self.plans = []
