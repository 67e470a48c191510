"""One compiled kernel per chain: the whole update over flat buffers, in place.

A chain's ``update`` is a pure, elementwise function of ``(g, state, theta, hyper)``. Run over
one contiguous buffer per tensor (all parameters of a group side by side) and compiled with
``torch.compile``, the chain becomes one loop that reads ``theta, g`` and every state entry
once and writes ``theta`` and the changed state in place: one pass over memory, which is what
an optimizer step costs at best.

What makes the compiled artefact reusable:

* hyperparameters (and the step count ``t``) enter as 0-dim float64 tensors, so a scheduler
  changing ``lr`` or ``t`` growing never recompiles, and their float64 arithmetic matches the
  eager path's Python floats;
* the buffer length is symbolic (``dynamic=True``), so one kernel serves every group, every
  model size and every slice of a buffer (lengths 0 and 1 are specialised by dynamo: callers
  run such slices eagerly);
* every chain gets a function with its own code object: dynamo keeps its cache per code object,
  and closures of one ``def`` would share one cache and hit its recompile limit after eight
  chains in a process.

Only a chain whose every block declares itself elementwise (:attr:`Transform.elementwise`) is
fused: a block that reads a norm or the shape of its parameter cannot run over a concatenation
of parameters, and a block that declares nothing is taken for such a block (it runs on the
eager path, per tensor). Fusibility is never guessed by running the chain. Before compiling,
:func:`analyse` runs a declared-elementwise chain eagerly on a small probe to learn its
*layout*: which state entries are shaped like the parameter and which are per-parameter
scalars (NAdam's ``mu_product``), and which hyperparameters ``update`` reads.
"""

from __future__ import annotations

import itertools
import types
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from dltricks.optim.base import Hyper, Scalar, State, Transform
from dltricks.optim.fast import torch_internals
from dltricks.optim.state_precision import SEED_KEY, StateCodec

if TYPE_CHECKING:
    from dltricks.optim.fast.segments import SegmentedUpdate

_names = itertools.count()


@dataclass(frozen=True)
class Layout:
    """How a chain's state and hyperparameters map onto a fused kernel's arguments.

    Attributes:
        tensor_keys: state entries shaped like the parameter (one flat buffer each).
        scalar_keys: 0-dim state entries (one value per parameter, shared within a run).
        hyper_keys: hyperparameters that ``update`` reads, ``step`` included.
    """

    tensor_keys: tuple[str, ...]
    scalar_keys: tuple[str, ...]
    hyper_keys: tuple[str, ...]


class _RecordingHyper(Mapping[str, Scalar]):
    """A ``hyper`` mapping that remembers which names a chain reads, in order."""

    def __init__(self, values: Mapping[str, Scalar]) -> None:
        self.entries = dict(values)
        self.read: list[str] = []

    def __getitem__(self, key: str) -> Scalar:
        value = self.entries[key]
        if key not in self.read:
            self.read.append(key)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


_PROBE_SIZE = 6


def _probe_run(
    transform: Transform, hyper: Mapping[str, Scalar]
) -> tuple[Tensor, State, list[Tensor], list[str]]:
    """Two steps of ``transform`` on a fixed random probe, in float64."""
    gen = torch.Generator().manual_seed(0)
    param = torch.rand(_PROBE_SIZE, generator=gen, dtype=torch.float64) + 0.5
    grads = [torch.randn(_PROBE_SIZE, generator=gen, dtype=torch.float64) for _ in range(2)]
    state = transform.init(param.clone(), {**hyper, "step": 1.0})
    updates = []
    recorder = _RecordingHyper(hyper)
    for t, g in enumerate(grads, start=1):
        recorder.entries["step"] = float(t)
        u, changed = transform.update(g, state, param, recorder)
        if not set(changed) <= set(state):
            raise _NotFusableError(
                f"update returns state entries init does not create: {set(changed)}"
            )
        state = {**state, **changed}
        param = param + u
        updates.append(u)
    return param, state, updates, recorder.read


class _NotFusableError(Exception):
    pass


def analyse(transform: Transform, hyper: Mapping[str, Scalar]) -> Layout | str:
    """The chain's :class:`Layout`, or the reason it cannot be fused.

    A chain that is not declared elementwise is not fused (see the module docstring). For
    one that is, two eager steps on a 6-element float64 probe tell which state entries are
    shaped like the parameter and which are scalars, and which hyperparameters the update
    reads. ``KeyError`` (a hyperparameter the group does not set) propagates, as it would on
    the eager path.
    """
    if not transform.elementwise:
        return (
            f"{transform.name} is not elementwise: not every block declares "
            "elementwise=True, so it runs per tensor"
        )
    try:
        param, state, _, read = _probe_run(transform, hyper)
    except _NotFusableError as reason:
        return str(reason)
    except KeyError:
        raise  # a hyperparameter the group lacks: the eager path would fail the same way
    except Exception as error:
        return f"the probe run failed ({type(error).__name__}: {error})"
    tensor_keys, scalar_keys = [], []
    for key, value in state.items():
        if value.shape == param.shape:
            tensor_keys.append(key)
        elif value.dim() == 0:
            scalar_keys.append(key)
        else:
            return f"state entry {key!r} is neither shaped like the parameter nor a scalar"
    return Layout(tuple(tensor_keys), tuple(scalar_keys), tuple(read))


FusedFn = Callable[..., None]

_INDUCTOR_OPTIONS = {
    # The wrapper's per-input size/stride/alignment asserts cost microseconds per call, which
    # is most of a small model's step; the inputs are slices of buffers this package made.
    "size_asserts": False,
    "alignment_asserts": False,
    "scalar_asserts": False,
}


_NARROW_DTYPES = (torch.float16, torch.bfloat16)


def _fused_update_source(transform: Transform, layout: Layout, writes_param: bool) -> FusedFn:
    tensor_keys, scalar_keys, hyper_keys = layout.tensor_keys, layout.scalar_keys, layout.hyper_keys
    n_tensor, n_scalar = len(tensor_keys), len(scalar_keys)

    def fused(param: Tensor, grad: Tensor, steps: Tensor, *args: Tensor) -> None:
        # A stretch of a chain that ends before a per-tensor block writes its output ``u``
        # into ``steps``'s place (the segment's output buffer) and leaves theta alone.
        stored = args[:n_tensor]
        # float16/bfloat16 buffers: the update computed in float32 and rounded once when
        # stored, as torch's fused optimizers do (dynamo specialises on the dtype, so this
        # branch is decided when tracing).
        narrow = param.dtype in _NARROW_DTYPES
        theta = param.float() if narrow else param
        grad = grad.float() if narrow else grad
        tensors = [t.float() for t in stored] if narrow else stored
        # Scalar state comes as one-element vectors, read and written in place, so the kernel
        # returns nothing and a call is all a step takes (the caller copies the new value to
        # the other parameters of the run, which share it). Not as 0-dim tensors: inductor
        # (torch 2.13) drops the in-place write to a 0-dim input that the graph also reads
        # elsewhere.
        vectors = args[n_tensor : n_tensor + n_scalar]
        hyper: Hyper = dict(zip(hyper_keys, args[n_tensor + n_scalar :], strict=True))
        state = dict(zip(tensor_keys, tensors, strict=True))
        state.update((key, vector[0]) for key, vector in zip(scalar_keys, vectors, strict=True))
        update, changed = transform.update(grad, state, theta, hyper)
        if not writes_param:
            steps.copy_(update)
        elif narrow:
            param.copy_(theta + update)
        else:
            param.add_(update)
        for key, buffer in zip(tensor_keys, stored, strict=True):
            if key in changed:
                buffer.copy_(changed[key])
        for key, vector in zip(scalar_keys, vectors, strict=True):
            if key in changed:
                vector.copy_(changed[key])
        # torch.optim's per-parameter step counts (float32): counted here rather than by one
        # more operation per step.
        if writes_param:
            steps.add_(1.0)

    return _own_code(fused)


def _own_code(fused: Any) -> FusedFn:
    # A fresh code object gives this chain its own dynamo cache (see the module docstring).
    name = f"dltricks_fused_update_{next(_names)}"
    code = fused.__code__.replace(co_name=name)
    return types.FunctionType(code, fused.__globals__, name, None, fused.__closure__)


def lowbit_layout(layout: Layout, codec: StateCodec) -> Layout:
    """The kernel layout of ``layout``'s chain with moments stored by ``codec``: the codec's
    scalar state (bf16's ``sr_seed``) after the chain's, and ``step`` among the
    hyperparameters (the random bits of bf16 depend on it)."""
    hyper_keys = layout.hyper_keys if "step" in layout.hyper_keys else (*layout.hyper_keys, "step")
    return Layout(layout.tensor_keys, (*layout.scalar_keys, *codec.scalar_names), hyper_keys)


def _fused_lowbit_source(transform: Transform, layout: Layout, codec: StateCodec) -> FusedFn:
    """The fused update with moments stored by ``codec`` (see
    :mod:`~dltricks.optim.state_precision`): decoded to float32 when read, the chain's update
    in float32 (or the parameter's dtype, if wider), encoded when stored; one pass.

    Arguments: ``param, grad, steps``, then each moment's stored buffers (bf16: one buffer;
    int8: codes and one absmax per block), the scalar state vectors (the codec's last), and
    the hyperparameters. For int8 every tensor is viewed as ``(blocks, INT8_BLOCK)``."""
    tensor_keys, scalar_keys, hyper_keys = layout.tensor_keys, layout.scalar_keys, layout.hyper_keys
    per_key = len(codec.stored_names("x"))
    n_stored = per_key * len(tensor_keys)
    n_scalar = len(scalar_keys)
    chain_scalars = tuple(k for k in scalar_keys if k not in codec.scalar_names)

    def fused(param: Tensor, grad: Tensor, steps: Tensor, *args: Tensor) -> None:
        stored = args[:n_stored]
        vectors = dict(zip(scalar_keys, args[n_stored : n_stored + n_scalar], strict=True))
        hyper: Hyper = dict(zip(hyper_keys, args[n_stored + n_scalar :], strict=True))
        groups = [tuple(stored[i * per_key : (i + 1) * per_key]) for i in range(len(tensor_keys))]
        shape = codec.kernel_shape(param, groups[0]) if groups else (param.shape[0],)
        narrow = param.dtype in _NARROW_DTYPES
        theta = param.view(shape)
        theta = theta.float() if narrow else theta
        g = grad.view(shape)
        g = g.float() if narrow else g
        # float32 moments, widened for wider parameters (float64): the arithmetic in the
        # parameter's dtype, as the eager path's.
        state = {
            key: codec.kernel_decode(key, group, shape).to(theta.dtype)
            for key, group in zip(tensor_keys, groups, strict=True)
        }
        state.update((key, vectors[key][0]) for key in chain_scalars)
        update, changed = transform.update(g, state, theta, hyper)
        if narrow:
            param.view(shape).copy_(theta + update)
        else:
            param.view(shape).add_(update)
        seed = vectors[SEED_KEY][0] if SEED_KEY in vectors else None
        bits: dict[int, Tensor] = {}
        for salt, (key, group) in enumerate(zip(tensor_keys, groups, strict=True)):
            if key in changed:
                if seed is not None and salt // 2 not in bits:
                    # One hash per element serves two moments (16 bits each).
                    step = hyper["step"]
                    assert isinstance(step, Tensor)  # a 0-dim tensor inside the kernel
                    bits[salt // 2] = codec.kernel_bits(shape, step, seed, salt // 2)
                pair = bits.get(salt // 2)
                codec.kernel_store(key, changed[key], group, shape, pair, salt)
        for key in chain_scalars:
            if key in changed:
                vectors[key].copy_(changed[key])
        steps.add_(1.0)

    return _own_code(fused)


Signature = tuple[torch.dtype, torch.device, str]
"""What a compiled graph is specialised on besides sizes: the parameters' dtype and device,
and torch's global state as dynamo guards it (default dtype, thread count, autocast...)."""


def _global_state() -> Any:
    """Dynamo's own check of torch's global state, or None where this torch lacks it."""
    return torch_internals.dynamo_global_state()


def _signature(args: Sequence[Tensor]) -> Signature:
    state = _global_state()
    return (args[0].dtype, args[0].device, "" if state is None else state.__getstate__())


@dataclass
class _Graph:
    signature: Signature | None
    module: torch.fx.GraphModule
    example_inputs: list[Any]
    compiled: Any  # what inductor returned: a callable, except in ahead-of-time modes
    plan: list[tuple[int, bool]] | None = None


class _CapturingInductor:
    """A ``torch.compile`` backend: inductor, keeping each graph and what it compiled to.

    Dynamo calls the backend once per graph it builds, with the graph and its example inputs
    (the real tensors of the call being compiled, and symbolic sizes). Keeping them lets
    :meth:`FusedUpdate.bind` call the compiled code directly (see there).
    """

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = dict(options)
        self.graphs: list[_Graph] = []
        self.signature: Signature | None = None

    def __call__(self, module: torch.fx.GraphModule, example_inputs: list[Any]) -> Any:
        compile_fx = torch_internals.inductor_compile_fx()
        assert compile_fx is not None  # FusedUpdate uses this backend only when it exists
        compiled = compile_fx(module, example_inputs, config_patches=dict(self.options))
        self.graphs.append(_Graph(self.signature, module, list(example_inputs), compiled))
        return compiled


def _argument_plan(graph: _Graph, args: Sequence[Tensor]) -> list[tuple[int, bool]] | None:
    """For each input of ``graph``: which argument position feeds it, and whether as its
    length, learnt from the call that compiled it (``args``).

    Tensor inputs are found by identity among ``args`` (dynamo hands the backend the call's
    own tensors); a symbolic size input must be exactly the length of one of those tensors.
    Every call passes its arguments in the same order, so the plan holds for later calls.
    None when any input is something else (then only dynamo knows how to call the graph).
    """
    placeholders = [n for n in graph.module.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != len(graph.example_inputs):
        return None
    lengths: dict[Any, int] = {}
    plan: list[tuple[int, bool] | None] = []
    for node, example in zip(placeholders, graph.example_inputs, strict=True):
        if isinstance(example, Tensor):
            index = next((i for i, a in enumerate(args) if a is example), None)
            fake = torch_internals.placeholder_example(node)
            if index is None or fake is None:
                return None
            if fake.dim() == 1 and isinstance(fake.shape[0], torch.SymInt):
                symbol = torch_internals.symbol_of(fake.shape[0])
                if symbol is None:
                    return None
                lengths.setdefault(symbol, index)
            plan.append((index, False))
        elif isinstance(example, torch.SymInt):
            plan.append(None)  # resolved below, once every tensor's length is known
        else:
            return None
    out: list[tuple[int, bool]] = []
    for entry, example in zip(plan, graph.example_inputs, strict=True):
        if entry is None:
            index = lengths.get(torch_internals.symbol_of(example))
            if index is None:
                return None
            entry = (index, True)
        out.append(entry)
    return out


class FusedUpdate:
    """A chain's update compiled over flat buffers; one instance serves every optimizer.

    ``__call__(param, grad, steps, *tensor_state, *scalar_state, *hyper)`` writes ``param``
    and the state in place and adds one to ``steps`` (a float32 vector of at least two
    elements: dynamo would specialise a length of one); scalar state entries come as
    one-element vectors (the value of the run's first parameter). With ``writes_param=False``
    (a stretch of a chain followed by a per-tensor block) the third argument is instead a
    buffer like ``param`` that receives the update, and ``param`` is only read. The first
    call compiles (seconds); if compilation fails, :attr:`failure` says why and the caller
    falls back to eager.

    A call through ``torch.compile`` costs about 15 microseconds of guard checks and frame
    handling before the kernel runs, most of a small model's step. :meth:`bind` removes it
    for the buffers a bucket passes at every step, when :attr:`bindable`: the chain is fixed
    by its key (a built-in optimizer's class and structural options), so that the guards on
    the chain's own Python values cannot fail later.
    """

    def __init__(
        self,
        transform: Transform,
        layout: Layout,
        *,
        bindable: bool = True,
        codec: StateCodec | None = None,
        writes_param: bool = True,
    ) -> None:
        if codec is not None and not writes_param:
            raise ValueError("a low-precision state kernel writes the parameter")
        self.codec = codec
        if codec is not None:
            layout = lowbit_layout(layout, codec)
        self.layout = layout
        self.failure: str | None = None
        self.bindable = bindable
        self.writes_param = writes_param
        self._backend = _CapturingInductor(_INDUCTOR_OPTIONS)
        source = (
            _fused_update_source(transform, layout, writes_param)
            if codec is None
            else _fused_lowbit_source(transform, layout, codec)
        )
        if torch_internals.inductor_compile_fx() is not None:
            self._fn: Any = torch.compile(
                source, dynamic=True, fullgraph=True, backend=self._backend
            )
        else:  # the public path: inductor by name, its graphs not handed out (never direct)
            self._fn = torch.compile(
                source,
                dynamic=True,
                fullgraph=True,
                backend="inductor",
                options=dict[str, Any](_INDUCTOR_OPTIONS),
            )

    @property
    def compilations(self) -> int:
        """How many graphs this update has compiled in this process (1 in normal use)."""
        return len(self._backend.graphs)

    def __call__(self, *args: Tensor) -> None:
        graphs = self._backend.graphs
        known = len(graphs)
        self._backend.signature = _signature(args)
        try:
            self._fn(*args)
        except Exception as error:  # a missing compiler, an untraceable user block...
            self.failure = f"{type(error).__name__}: {error}"
            raise
        for graph in graphs[known:]:
            # The example inputs are this call's tensors: learn which argument position
            # feeds each graph input, then let go of them (they may be big buffers).
            graph.plan = _argument_plan(graph, args)
            graph.example_inputs = []

    def bind(self, args: Sequence[Tensor]) -> BoundUpdate:
        """Run the update once on ``args`` through ``torch.compile``, and return a caller
        that runs the same compiled code on the same tensors, without dynamo where it can.

        Dynamo checks its guards (dtypes, devices, sizes, torch's global state...) at every
        call to pick a compiled graph. For tensors that keep their identity, dtype, device and
        size (a bucket's buffers and the hyperparameter tensors, updated in place), the answer
        cannot change once a call has gone through, as long as the global state does not: if
        this update has exactly one graph for these tensors' dtype and device under this
        global state, that call used it, and every later call would too. The caller then
        checks the global state only (dynamo's own check, a few hundred nanoseconds) and calls
        that graph, or goes through dynamo when the state changed. Where that cannot be shown
        (two graphs for one signature, an input dynamo made of something else) or when the
        chain may change between calls (a user's transform: :attr:`bindable` is False), the
        caller goes through ``torch.compile`` at every call.
        """
        self(*args)
        state = _global_state()
        graph = None
        if self.bindable and state is not None:
            signature = _signature(args)
            graphs = [g for g in self._backend.graphs if g.signature == signature]
            if (
                len(graphs) == 1
                and graphs[0].plan is not None
                and torch_internals.calls_unboxed(graphs[0].compiled)
            ):
                graph = graphs[0]
        return BoundUpdate(self, args, graph, state)


class BoundUpdate:
    """A :class:`FusedUpdate` bound to its argument tensors (see :meth:`FusedUpdate.bind`).

    :meth:`replace` swaps one argument for a tensor of the same dtype, device and length (a
    bucket's gradient buffer, freed by ``zero_grad`` and allocated again by backward): the
    compiled code does not depend on which tensor it reads.
    """

    def __init__(
        self, update: FusedUpdate, args: Sequence[Tensor], graph: _Graph | None, state: Any
    ) -> None:
        self.update = update
        self.args: list[Tensor | None] = list(args)
        self._graph = graph
        self._state = state
        self._inputs: list[Any] = []
        self._refresh()

    @property
    def direct(self) -> bool:
        """Whether calls skip dynamo's guard checks."""
        return self._graph is not None

    def replace(self, position: int, tensor: Tensor | None) -> None:
        """Use ``tensor`` as argument ``position`` from now on (None: none until replaced)."""
        self.args[position] = tensor
        self._refresh()

    def _refresh(self) -> None:
        graph = self._graph
        if graph is None or graph.plan is None or any(a is None for a in self.args):
            self._inputs = []
            return
        args = self.args
        self._inputs = [
            args[i].shape[0] if as_length else args[i]  # type: ignore[union-attr]
            for i, as_length in graph.plan
        ]

    def __call__(self) -> None:
        graph = self._graph
        if graph is not None and self._inputs and self._state.check():
            graph.compiled(*self._inputs)
        else:  # not bound, or the global state changed since (a default dtype...)
            if any(a is None for a in self.args):
                raise RuntimeError("a fused update was called with a released argument")
            self.update(*self.args)  # type: ignore[arg-type]


CACHE_SIZE = 64
"""How many chains' fused updates a process keeps (least recently used first out). A bucket
holds its own, so an evicted update only costs a later optimizer of that chain a new trace."""

_CACHE: OrderedDict[Any, FusedUpdate | SegmentedUpdate | str] = OrderedDict()


def fused_update_for(
    key: Any,
    transform: Transform,
    hyper: Mapping[str, Scalar],
    *,
    bindable: bool = True,
    codec: StateCodec | None = None,
) -> FusedUpdate | SegmentedUpdate | str:
    """The (process-wide cached) fused update of ``transform``, or why it cannot be fused:
    a :class:`FusedUpdate` for an elementwise chain, a
    :class:`~dltricks.optim.fast.segments.SegmentedUpdate` for a chain of declared blocks
    with per-tensor ones among them (its elementwise stretches fused; full-precision state
    only), else a reason (str).

    ``key`` identifies the chain's structure across optimizer instances: equal keys must mean
    equal chains (the adapter uses the optimizer class and its structural options, or the
    structure of a user's chain: :mod:`~dltricks.optim.fast.structure`). The cache keeps the
    :data:`CACHE_SIZE` most recently used keys. ``bindable``: see :attr:`FusedUpdate.bindable`.
    ``codec``: the moments are stored in low precision (:mod:`~dltricks.optim.state_precision`).
    """
    if codec is not None:
        key = (key, codec)
    cached = _CACHE.get(key)
    if cached is not None:
        _CACHE.move_to_end(key)
        return cached
    layout = analyse(transform, hyper)
    made: FusedUpdate | SegmentedUpdate | str = (
        FusedUpdate(transform, layout, bindable=bindable, codec=codec)
        if isinstance(layout, Layout)
        else layout
    )
    if isinstance(made, str) and codec is None and transform.per_tensor and transform.parts:
        from dltricks.optim.fast.segments import segmented_update  # it builds on this module

        segmented = segmented_update(transform, hyper)
        made = segmented if not isinstance(segmented, str) else made
    _CACHE[key] = made
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return made
