"""Flat buffers: a group's parameters, gradients and state side by side in memory.

A :class:`Bucket` holds the parameters of one param group that share a dtype and a device.
It owns one contiguous buffer for the parameters, one for the gradients, one per elementwise
state entry and one vector per scalar state entry, and rebinds everything the user sees to
slices of them:

* ``p.data`` becomes a slice of the parameter buffer (the Parameter object is unchanged, so the
  model, its ``state_dict`` and autograd keep working);
* ``p.grad`` becomes a slice of the gradient buffer, and autograd accumulates into it in place
  (``AccumulateGrad`` adds into an existing ``.grad``), so a step reads the gradients where
  backward left them, without a copy. Where ``p.grad`` is None when backward reaches ``p``, a
  tensor hook binds it to its zeroed slice first, so ``zero_grad(set_to_none=True)`` really sets
  every ``p.grad`` to None and frees the gradient buffer, as torch frees its gradients;
* ``optimizer.state[p]["exp_avg"]`` and friends are slices of the state buffers, so state
  reads, ``state_dict`` and in-place edits behave as with ``torch.optim``.

Slices are made with ``Tensor.set_`` on the buffer's storage rather than by indexing: each has
its own version counter and no autograd view link to the buffer. The slices a user sees of
parameters and elementwise state go one step further: each is a storage of its own over the
buffer's memory (see :func:`alias`), so ``torch.save(model[0].state_dict())`` writes that
layer's bytes only, not the whole bucket.

Which parameters have a gradient at a step is what ``torch.optim`` sees: ``p.grad`` is None or
not. ``zero_grad(set_to_none=False)`` zeroes the gradients that exist and leaves None as None,
as torch does; a gradient the user assigns (a new tensor) is copied into the slice at the next
step. Parameters without a gradient are not updated and their state does not advance, exactly
as on the eager path.

Parameters that have taken different numbers of steps (one was absent at some step) cannot
share a kernel call, since ``t`` is one scalar per call. Each parameter carries a *history
label*: parameters updated together at every step share it, and so share ``t`` and every scalar
state (NAdam's ``mu_product``). A step runs the kernel once per maximal *run* of adjacent
parameters that are present and share a label: normally one run, the whole bucket.
"""

from __future__ import annotations

import itertools
import operator
import weakref
from collections.abc import Mapping
from typing import Any

import torch
import torch.utils.dlpack
from torch import Tensor
from torch.autograd.graph import increment_version

from dltricks.optim.base import Scalar, State, Transform
from dltricks.optim.fast.kernel import BoundUpdate, FusedUpdate
from dltricks.optim.fast.native import BoundNative, NativeAdamUpdate
from dltricks.optim.fast.segments import SegmentedUpdate
from dltricks.optim.grads import reject_sparse
from dltricks.optim.state_precision import SEED_KEY, StateCodec, blocks_of

ALIGN = 16
"""Every parameter's slice starts at a multiple of 16 elements (64 bytes in float32): vector
loads stay aligned, and a run can start at any parameter without a misaligned-input copy."""

_labels = itertools.count(1)
_grad_of = operator.attrgetter("grad")


def alias(
    buffer: Tensor, offset: int, shape: torch.Size | tuple[int, ...], *, own_storage: bool = False
) -> Tensor:
    """A contiguous tensor of ``shape`` over ``buffer[offset:]``.

    By default it shares the buffer's storage. With ``own_storage`` it is a storage of its own
    that covers exactly its elements, over the same memory (and keeps the buffer alive): what a
    user saves of it with ``torch.save`` is its own bytes, not the whole buffer, as for a
    parameter of a model that no optimizer touched. Made through DLPack, torch's public way to
    wrap memory; where the device has no DLPack support the shared-storage tensor is returned.
    """
    strides: list[int] = []
    running = 1
    for size in reversed(shape):
        strides.append(running)
        running *= size
    out = buffer.new_empty(0).set_(
        buffer.untyped_storage(), buffer.storage_offset() + offset, shape, tuple(reversed(strides))
    )
    if own_storage and out.numel() > 0:
        try:
            return torch.utils.dlpack.from_dlpack(torch.utils.dlpack.to_dlpack(out))
        except (RuntimeError, BufferError, TypeError):  # a device without DLPack support
            return out
    return out


class _BindGradient:
    """Tensor hook, run before autograd accumulates a parameter's gradient: where ``p.grad``
    is None, bind it to its zeroed slice of the gradient buffer, so that autograd
    accumulates there in place instead of allocating a gradient of its own."""

    def __init__(self, bucket: Bucket, index: int) -> None:
        self.bucket = weakref.ref(bucket)
        self.index = index

    def __call__(self, grad: Tensor) -> None:
        bucket = self.bucket()
        if bucket is not None:
            bucket.bind_grad(self.index)


class _GradAccumulated:
    """Post-accumulate-grad hook: backward did write the gradient :class:`_BindGradient`
    bound. ``torch.autograd.grad`` runs tensor hooks but accumulates nothing; a binding it
    left behind is undone (``p.grad`` back to None) before the gradients are read."""

    def __init__(self, bucket: Bucket, index: int) -> None:
        self.bucket = weakref.ref(bucket)
        self.index = index

    def __call__(self, param: Tensor) -> None:
        bucket = self.bucket()
        if bucket is not None:
            bucket.pending[self.index] = False


class Bucket:
    """Parameters of one group with one dtype and device, bound to flat buffers."""

    def __init__(
        self,
        params: list[Tensor],
        state: dict[Any, Any],
        transform: Transform,
        fused: FusedUpdate | SegmentedUpdate | NativeAdamUpdate,
        hyper: Mapping[str, Scalar],
        *,
        codec: StateCodec | None = None,
        seed: float = 0.0,
    ) -> None:
        self.params = params
        self.owner_state = state
        self.transform = transform
        self.fused = fused
        # Low-precision moments (see dltricks.optim.state_precision); ``seed`` is what a
        # fresh bf16 state's sr_seed holds.
        self.codec = codec
        self.seed = seed
        layout = fused.layout
        dtype, device = params[0].dtype, params[0].device
        self.offsets: list[int] = []
        self.numels = [p.numel() for p in params]
        # int8: every parameter starts a block, and a run covers its parameters' whole blocks.
        self.align = ALIGN if codec is None else max(ALIGN, codec.align)
        total = 0
        for n in self.numels:
            self.offsets.append(total)
            total += -(-n // self.align) * self.align
        self.numel = total
        self.param_buf = torch.zeros(total, dtype=dtype, device=device)
        # None while no parameter has a gradient (after zero_grad(set_to_none=True)).
        self.grad_buf: Tensor | None = torch.zeros(total, dtype=dtype, device=device)
        # In layout order: run_fused passes the values positionally. With a codec, each
        # moment's stored buffers (bf16 values, or int8 codes and one absmax per block).
        self.state_bufs: dict[str, Tensor] = {}
        for k in layout.tensor_keys:
            if codec is None:
                self.state_bufs[k] = torch.zeros(total, dtype=dtype, device=device)
            elif codec.precision == "int8":
                codes, absmax = codec.stored_names(k)
                self.state_bufs[codes] = torch.zeros(total, dtype=torch.uint8, device=device)
                self.state_bufs[absmax] = torch.zeros(
                    total // codec.align, dtype=torch.float32, device=device
                )
            else:
                self.state_bufs[k] = torch.zeros(total, dtype=torch.bfloat16, device=device)
        self.scalar_bufs: dict[str, Tensor] = {}
        # A segmented chain (elementwise stretches around per-tensor blocks) passes ``u``
        # from stage to stage through these buffers: a kernel never writes the buffer it
        # reads (compiled code may not expect its inputs to overlap), so a stretch between
        # two per-tensor blocks writes the second one.
        self.out_bufs: list[Tensor] = []
        if isinstance(fused, SegmentedUpdate):
            self.out_bufs = [
                torch.zeros(total, dtype=dtype, device=device) for _ in range(fused.buffers)
            ]
        # torch.optim keeps ``step`` as a float32 CPU tensor per parameter (eager does too).
        # At least two elements: the kernel counts steps in it (see FusedUpdate), and a length
        # of one would make dynamo compile a second graph. On other devices than the CPU, or
        # for part of the bucket, the kernel counts in a scratch vector and this one is
        # counted separately.
        self.step_buf = torch.zeros(max(len(params), 2), dtype=torch.float32)
        self.step_scratch = torch.zeros(2, dtype=torch.float32, device=device)
        self.counts_steps_in_kernel = device.type == "cpu"
        self.steps: list[int] = []
        self.labels: list[int] = []
        self.exposed: list[bool] = []
        self.param_alias: list[Tensor] = []
        self.grad_alias: list[Tensor] = []
        # Whether a gradient slice may hold something else than zeros.
        self.dirty: list[bool] = []
        # Bound by _BindGradient, not yet written by backward (see _GradAccumulated).
        self.pending: list[bool] = [False] * len(params)
        self.state_alias: list[State] = []
        self.state_dicts: list[dict[str, Any]] = []
        self.ptrs: list[int] = []
        self._hooks: list[Any] = []
        # The whole-bucket kernel call (without dynamo where possible), and the hyperparameter
        # tensors it reads.
        self._bound: BoundUpdate | BoundNative | None = None
        self._bound_hyper: list[Tensor] = []
        # What is_bound watches: (state dict, key, slice) of exposed parameters, and the
        # state dicts that must stay empty; rebuilt when a parameter is first exposed.
        self._watch: list[list[Any]] | None = None
        self._unexposed: list[dict[str, Any]] = []
        interned: dict[tuple[Any, ...], int] = {}
        for i, p in enumerate(params):
            self._bind(i, p, state, hyper, interned)
        # The first element of each scalar state vector, as the whole-bucket call passes it.
        # Made with alias (no view link): dynamo would otherwise also see the whole vector
        # and tie its length to other inputs' lengths (duck sizing), then recompile.
        self.scalar_heads = [alias(self.scalar_bufs[k], 0, (1,)) for k in layout.scalar_keys]
        # Whether every parameter carries the same label (the usual case: one run per step).
        self.uniform = len(set(self.labels)) == 1
        self._finalizer = weakref.finalize(self, _remove_hooks, self._hooks)

    def _bind(
        self,
        i: int,
        p: Tensor,
        state: dict[Any, Any],
        hyper: Mapping[str, Scalar],
        interned: dict[tuple[Any, ...], int],
    ) -> None:
        layout = self.fused.layout
        offset = self.offsets[i]
        pa = alias(self.param_buf, offset, p.shape, own_storage=True)
        pa.copy_(p.detach())
        assert self.grad_buf is not None  # allocated by __init__
        ga = alias(self.grad_buf, offset, p.shape)
        old = state.get(p)
        codec = self.codec
        if old:
            missing = [k for k in (*self.state_bufs, *layout.scalar_keys, "step") if k not in old]
            if missing:
                raise ValueError(
                    f"optimizer state of a parameter of shape {tuple(p.shape)} lacks "
                    f"{', '.join(missing)}: it does not belong to this optimizer"
                )
            source: Mapping[str, Any] = old
            step = int(float(old["step"]))
        else:
            source = self.transform.init(pa, {**hyper, "step": 1.0})
            step = 0
            if codec is not None:
                source = self._encode_fresh(source)
        entries: State = {}
        if isinstance(self.fused, SegmentedUpdate):
            # The per-tensor blocks' state (row and column statistics...) stays per tensor,
            # updated in place from now on: a copy of its own, as the flat entries are (a
            # loaded state dict may share its tensors with another optimizer's).
            flat = {*layout.tensor_keys, *layout.scalar_keys, "step"}
            entries.update(
                (k, torch.as_tensor(v).clone()) for k, v in source.items() if k not in flat
            )
        for key in layout.tensor_keys:
            if codec is not None and codec.precision == "int8":
                codes_key, absmax_key = codec.stored_names(key)
                view = alias(self.state_bufs[codes_key], offset, p.shape, own_storage=True)
                view.copy_(source[codes_key])
                entries[codes_key] = view
                scales = alias(
                    self.state_bufs[absmax_key],
                    offset // codec.align,
                    (blocks_of(p.numel()),),
                    own_storage=True,
                )
                scales.copy_(source[absmax_key])
                entries[absmax_key] = scales
                continue
            view = alias(self.state_bufs[key], offset, p.shape, own_storage=True)
            view.copy_(source[key])
            entries[key] = view
        for key in layout.scalar_keys:
            value = torch.as_tensor(source[key])
            if key not in self.scalar_bufs:
                self.scalar_bufs[key] = torch.zeros(
                    len(self.params), dtype=value.dtype, device=value.device
                )
            vector = self.scalar_bufs[key]
            vector[i] = value.to(vector.device)
            entries[key] = alias(vector, i, ())
        self.step_buf[i] = float(step)
        entries["step"] = alias(self.step_buf, i, ())
        # Parameters with the same step and scalar state start with one label.
        scalars = tuple(float(entries[k]) for k in layout.scalar_keys)
        self.labels.append(interned.setdefault((step, scalars), next(_labels)))
        self.steps.append(step)
        if p.grad is not None:
            reject_sparse(p.grad)
            ga.copy_(p.grad)
        with torch.no_grad():
            p.data = pa
        if p.grad is not None:
            p.grad = ga
        self.dirty.append(p.grad is not None)
        self.param_alias.append(pa)
        self.grad_alias.append(ga)
        self.state_alias.append(entries)
        self.ptrs.append(pa.data_ptr())
        st = state[p]
        self.exposed.append(bool(old))
        if old:
            st.update(entries)
        self.state_dicts.append(st)
        self._hooks.append(p.register_hook(_BindGradient(self, i)))
        self._hooks.append(p.register_post_accumulate_grad_hook(_GradAccumulated(self, i)))

    def _encode_fresh(self, source: Mapping[str, Any]) -> dict[str, Any]:
        """A fresh float32 state in the codec's stored form (bf16 rounds to nearest here)."""
        codec = self.codec
        assert codec is not None
        out: dict[str, Any] = {}
        keys = self.fused.layout.tensor_keys
        for key, value in source.items():
            if key not in keys:
                out[key] = value
            elif codec.precision == "int8":
                out.update(codec.encode_nearest(key, value))
            else:
                out[key] = value.to(torch.bfloat16)
        if SEED_KEY in codec.scalar_names:
            out[SEED_KEY] = torch.tensor(self.seed, dtype=torch.float32)
        return out

    # -- checks ------------------------------------------------------------------------

    def is_bound(self, state: dict[Any, Any]) -> bool:
        """Whether every parameter and state entry still points into this bucket.

        False after ``load_state_dict`` (a new ``optimizer.state``), a move of the model
        (``p.data`` replaced) or an assignment of a new tensor into ``optimizer.state[p]``: the
        caller then rebuilds the bucket from what the user now sees. Runs at every step, so it
        touches only what it must (no hashing of parameters).
        """
        if state is not self.owner_state:
            return False
        if list(map(Tensor.data_ptr, self.params)) != self.ptrs:
            return False
        if self._watch is None:
            watched = [
                (st, key, view)
                for st, entries, exposed in zip(
                    self.state_dicts, self.state_alias, self.exposed, strict=True
                )
                if exposed
                for key, view in entries.items()
            ]
            # Three parallel lists (dicts, keys, slices): checked with C-level map calls.
            self._watch = [list(column) for column in zip(*watched, strict=True)]
            self._unexposed = [
                st for st, e in zip(self.state_dicts, self.exposed, strict=True) if not e
            ]
        watch = self._watch
        if watch and not all(map(operator.is_, map(dict.get, *watch[:2]), watch[2])):
            return False
        return not any(self._unexposed)

    def release(self) -> None:
        """Remove the autograd hooks (the bucket is being replaced)."""
        self._finalizer()

    # -- gradients -----------------------------------------------------------------------

    def zero_grad(self, set_to_none: bool) -> None:
        """``Optimizer.zero_grad`` for this bucket's parameters, with torch's semantics.

        ``set_to_none=True``: every ``p.grad`` becomes None and the gradient buffer is freed
        (the next backward allocates it again, through :class:`_BindGradient`).
        ``set_to_none=False``: existing gradients are zeroed in place, None stays None.
        """
        params, aliases = self.params, self.grad_alias
        if set_to_none:
            for p in params:
                p.grad = None
            self.pending = [False] * len(params)
            self._release_grads()
            return
        self._undo_pending()
        grads = list(map(_grad_of, params))
        if self.grad_buf is not None and all(map(operator.is_, grads, aliases)):
            self.grad_buf.zero_()  # the usual case: one pass over the whole buffer
            self.dirty = [False] * len(params)
            return
        for i, g in enumerate(grads):
            if g is None:
                continue
            if g is aliases[i]:
                g.zero_()
                self.dirty[i] = False
                continue
            # A gradient of the user's own: what torch.optim.Optimizer.zero_grad does.
            if g.grad_fn is not None:
                g.detach_()
            else:
                g.requires_grad_(False)
            g.zero_()

    def _release_grads(self) -> None:
        if self.grad_buf is None:
            return
        self.grad_buf = None
        self.grad_alias = []
        if self._bound is not None:
            self._bound.replace(1, None)  # the kernel call must not keep the buffer alive

    def _allocate_grads(self) -> Tensor:
        buf = torch.zeros_like(self.param_buf)
        self.grad_buf = buf
        self.grad_alias = [
            alias(buf, offset, p.shape) for offset, p in zip(self.offsets, self.params, strict=True)
        ]
        self.dirty = [False] * len(self.params)
        if self._bound is not None:
            self._bound.replace(1, buf)
        return buf

    def grad_slice(self, i: int, *, zeroed: bool = True) -> Tensor:
        """Parameter ``i``'s slice of the gradient buffer (allocated if freed), zeroed unless
        ``zeroed`` is False (the caller overwrites it); marked as written."""
        if self.grad_buf is None:
            self._allocate_grads()
        slice_ = self.grad_alias[i]
        if zeroed and self.dirty[i]:
            slice_.zero_()
        self.dirty[i] = True
        return slice_

    def bind_grad(self, i: int) -> None:
        """Bind ``p.grad`` of parameter ``i`` to its zeroed slice where it is None."""
        p = self.params[i]
        if p.grad is None:
            p.grad = self.grad_slice(i)
            self.pending[i] = True

    def _undo_pending(self) -> None:
        """``p.grad = None`` again where a binding was not followed by an accumulation."""
        if not any(self.pending):
            return
        for i, p in enumerate(self.params):
            if self.pending[i]:
                self.pending[i] = False
                if self.grad_buf is not None and p.grad is self.grad_alias[i]:
                    p.grad = None

    def gather_grads(self) -> list[bool]:
        """Which parameters have a gradient now; copies user-assigned gradients in."""
        self._undo_pending()
        grads = list(map(_grad_of, self.params))
        if self.grad_buf is not None and all(map(operator.is_, grads, self.grad_alias)):
            return [True] * len(grads)  # the usual loop: every p.grad is still its slice
        out = []
        for i, (p, g) in enumerate(zip(self.params, grads, strict=True)):
            if g is None:
                out.append(False)
                continue
            if self.grad_buf is None or g is not self.grad_alias[i]:
                reject_sparse(g)
                target = self.grad_slice(i, zeroed=False)
                target.copy_(g)
                p.grad = target
            out.append(True)
        return out

    def runs(self, present: list[bool]) -> list[tuple[int, int]]:
        """Maximal ranges ``[a, b)`` of adjacent present parameters sharing a label."""
        if self.uniform and all(present):
            return [(0, len(present))]  # the usual step: one run, the whole bucket
        out: list[tuple[int, int]] = []
        start = None
        for i, here in enumerate(present):
            if start is not None and (not here or self.labels[i] != self.labels[start]):
                out.append((start, i))
                start = None
            if here and start is None:
                start = i
        if start is not None:
            out.append((start, len(present)))
        return out

    def span(self, a: int, b: int) -> tuple[int, int]:
        """The element range ``[lo, hi)`` of parameters ``a..b-1`` in the flat buffers (with
        int8 state: to the end of the last parameter's last block)."""
        end = self.numels[b - 1]
        if self.align != ALIGN:
            end = -(-end // self.align) * self.align
        return self.offsets[a], self.offsets[b - 1] + end

    def _state_slices(self, lo: int, hi: int) -> list[Tensor]:
        """The stored state buffers over elements ``[lo, hi)``, in layout order."""
        out = []
        for key, buf in self.state_bufs.items():
            if self.codec is not None and key.endswith("_absmax"):
                out.append(buf[lo // self.align : hi // self.align])
            else:
                out.append(buf[lo:hi])
        return out

    # -- the step ------------------------------------------------------------------------

    def run_fused(
        self, a: int, b: int, hyper: list[Tensor], values: Mapping[str, Scalar] | None = None
    ) -> None:
        """One kernel call over parameters ``a..b-1`` (same label, hence same ``t``).

        ``hyper``: the kernel's hyperparameter tensors, ``t = steps[a] + 1`` among them; the
        path passes the same tensors at every step, refilled in place. ``values``: the
        group's hyperparameters as numbers, for the per-tensor blocks of a segmented chain.
        """
        if isinstance(self.fused, SegmentedUpdate):
            self._run_stages(self.fused, a, b, hyper, values or {})
            return
        layout = self.fused.layout
        t = self.steps[a] + 1
        if a == 0 and b == len(self.params):
            scalars = self.scalar_heads
            # The usual case: the whole buffers, the same tensors at every step, so the
            # compiled code can be called without dynamo's checks (FusedUpdate.bind), or,
            # where that cannot be shown, through torch.compile with the same arguments.
            bound = self._bound
            if bound is not None and all(map(operator.is_, self._bound_hyper, hyper)):
                bound()
            else:
                assert self.grad_buf is not None  # a run has gradients
                steps = self.step_buf if self.counts_steps_in_kernel else self.step_scratch
                args = [self.param_buf, self.grad_buf, steps, *self.state_bufs.values()]
                args += [*scalars, *hyper]
                self._bound = self.fused.bind(args)
                self._bound_hyper = hyper
            if not self.counts_steps_in_kernel:
                self.step_buf.add_(1.0)
        else:
            lo, hi = self.span(a, b)
            scalars = [alias(self.scalar_bufs[k], a, (1,)) for k in layout.scalar_keys]
            assert self.grad_buf is not None  # a run has gradients
            args = [self.param_buf[lo:hi], self.grad_buf[lo:hi], self.step_scratch]
            args += self._state_slices(lo, hi)
            self.fused(*args, *scalars, *hyper)
            self.step_buf[a:b].add_(1.0)
        if b - a > 1:
            for key, head in zip(layout.scalar_keys, scalars, strict=True):
                self.scalar_bufs[key][a + 1 : b].copy_(head)  # the run shares the value
        self._advance(range(a, b), t)

    def _run_stages(
        self,
        fused: SegmentedUpdate,
        a: int,
        b: int,
        tensors: list[Tensor],
        values: Mapping[str, Scalar],
    ) -> None:
        """A segmented chain over parameters ``a..b-1``: each elementwise stretch one kernel
        call over the run's span of the buffers, each per-tensor block per parameter."""
        layout = fused.layout
        t = self.steps[a] + 1
        whole = a == 0 and b == len(self.params)
        lo, hi = self.span(a, b)
        assert self.grad_buf is not None  # a run has gradients
        by_name = dict(zip(layout.hyper_keys, tensors, strict=True))
        if whole:
            scalars = dict(zip(layout.scalar_keys, self.scalar_heads, strict=True))
        else:
            scalars = {k: alias(self.scalar_bufs[k], a, (1,)) for k in layout.scalar_keys}
        step_hyper = {**values, "step": float(t)}
        counted = False
        source = self.grad_buf  # where this stage reads u: the gradients, then out_bufs
        for index, stage in enumerate(fused.stages):
            if stage.fused is None:
                # Written in place over its input unless that is the gradient.
                target = self.out_bufs[0] if source is self.grad_buf else source
                into = stage.transform.update_into
                for i in range(a, b):
                    entries = self.state_alias[i]
                    shape = self.params[i].shape
                    u = alias(source, self.offsets[i], shape)
                    out = alias(target, self.offsets[i], shape)
                    if into is not None:  # straight into the buffer, no temporary
                        changed = into(u, entries, self.param_alias[i], step_hyper, out)
                    else:
                        new, changed = stage.transform.update(
                            u, entries, self.param_alias[i], step_hyper
                        )
                        out.copy_(new)
                    for key, value in changed.items():
                        entries[key].copy_(value)
                source = target
                continue
            stage_layout = stage.fused.layout
            if stage.fused.writes_param:
                counted = whole and self.counts_steps_in_kernel
                third = self.step_buf if counted else self.step_scratch
            else:
                target = next(buf for buf in self.out_bufs if buf is not source)
                third = target[lo:hi]
            args = [self.param_buf[lo:hi], source[lo:hi], third]
            args += [self.state_bufs[k][lo:hi] for k in stage_layout.tensor_keys]
            args += [scalars[k] for k in stage_layout.scalar_keys]
            args += [by_name[k] for k in stage_layout.hyper_keys]
            try:
                stage.fused(*args)
            except Exception as error:
                if index == 0:
                    raise  # nothing changed yet: the path may take the eager step instead
                raise RuntimeError(
                    f"a fused stretch of {self.transform.name} failed after earlier stages of "
                    f"this step had changed the state ({error}); the step cannot be retried. "
                    "Build the optimizer with fast=False"
                ) from error
            if not stage.fused.writes_param:
                source = target
        if not fused.writes_param:
            self.param_buf[lo:hi].add_(source[lo:hi])
        if not counted:
            self.step_buf[a:b].add_(1.0)
        if b - a > 1:
            for key, head in scalars.items():
                self.scalar_bufs[key][a + 1 : b].copy_(head)  # the run shares the value
        self._advance(range(a, b), t)

    def run_eager(self, i: int, hyper: Mapping[str, Scalar]) -> None:
        """The eager update of parameter ``i``, written into its slices."""
        t = self.steps[i] + 1
        entries = self.state_alias[i]
        codec = self.codec
        state: Mapping[str, Tensor] = entries
        if codec is not None:
            keys = self.fused.layout.tensor_keys
            state = {**entries, **{key: codec.decode(key, entries) for key in keys}}
        update, changed = self.transform.update(
            self.grad_alias[i], state, self.param_alias[i], {**hyper, "step": float(t)}
        )
        self.param_alias[i].add_(update)
        if codec is not None:
            changed = codec.encode_changed(
                changed, keys, torch.tensor(float(t)), entries.get(SEED_KEY)
            )
        for key, value in changed.items():
            entries[key].copy_(value)
        entries["step"].add_(1.0)
        self._advance(range(i, i + 1), t)
        # Eager and compiled rounding may differ in the last bit: a fresh label keeps this
        # parameter out of runs whose scalar state it might not match exactly.
        self.labels[i] = next(_labels)
        self.uniform = len(self.params) == 1

    def _advance(self, indices: range, t: int) -> None:
        # The kernel wrote through the buffers, whose version counters are not the
        # parameters': bump these, so that autograd still refuses a backward through a graph
        # that saved a parameter this step changed (as it does after torch's own step).
        whole = len(indices) == len(self.params)
        _bump_versions(self.params if whole else self.params[indices.start : indices.stop])
        if whole:  # one run holds one label
            # The usual step: the whole bucket moves together and keeps one label.
            self.steps = [t] * len(indices)
            if not self.uniform:
                self.labels = [next(_labels)] * len(indices)
                self.uniform = True
        else:
            self.uniform = False
            fresh: dict[int, int] = {}
            for i in indices:
                self.steps[i] = t
                self.labels[i] = fresh.setdefault(self.labels[i], next(_labels))
        if not all(self.exposed):
            for i in indices:
                if not self.exposed[i]:
                    self.state_dicts[i].update(self.state_alias[i])
                    self.exposed[i] = True
            self._watch = None


def _bump_versions(params: list[Tensor]) -> None:
    try:
        increment_version(params)
    except TypeError:  # torch versions whose increment_version takes one tensor
        for p in params:
            increment_version(p)


def _remove_hooks(hooks: list[Any]) -> None:
    for handle in hooks:
        handle.remove()
    hooks.clear()
