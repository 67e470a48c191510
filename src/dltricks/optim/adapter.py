"""The ``torch.optim`` adapter: runs a chain of transformations as a drop-in optimizer.

Only this module (and the fast path it drives, :mod:`dltricks.optim.fast`) writes into
parameters and optimizer state. For every parameter with a gradient it builds the
hyperparameters of the step from the parameter's group, runs the group's chain (a pure
function), adds the resulting increment to the parameter and stores the changed state.

Two execution paths compute the same update:

* **fast** (the default where it applies): each group's parameters, gradients and state live in
  flat buffers and the whole chain runs as one compiled kernel per step, one pass over memory
  (see :mod:`dltricks.optim.fast`);
* **eager**: the chain runs block by block, parameter by parameter.

``fast=None`` (default) takes the fast path for buckets of at least
:data:`~dltricks.optim.fast.MIN_FAST_NUMEL` floating elements on CPU or CUDA (float16 and
bfloat16 computed in float32 inside the kernel, as torch's fused optimizers do); ``fast=True``
for every bucket it can take; ``fast=False`` never. The environment variable
``DLTRICKS_FAST=0`` turns the fast path off everywhere, ``DLTRICKS_FAST=1`` makes ``fast=None``
behave as ``fast=True``. What stays eager on the fast path: DTensor parameters (FSDP2, tensor
parallel), non-contiguous parameters, parameters on other devices or sharing storage with
other tensors, chains with a block not declared elementwise or that fail to compile (with a
RuntimeWarning). A step traced by ``torch.compile`` is one operator of the graph that runs
the step as above (:mod:`dltricks.optim.fast.compiled_step`).
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor
from torch.optim import Optimizer

from dltricks.optim.base import Scalar, Transform
from dltricks.optim.fast import compiled_step, torch_internals
from dltricks.optim.fast.path import MIN_FAST_NUMEL, FlatPath
from dltricks.optim.finite import all_finite
from dltricks.optim.grads import params_with_grad, real_view
from dltricks.optim.state_precision import (
    ABSMAX_SUFFIX,
    INT8_MIN_NUMEL,
    INT8_SUFFIX,
    SEED_KEY,
    StateCodec,
    blocks_of,
    check_state_precision,
    decoded,
    form_of,
    is_quarter_root,
)
from dltricks.optim.validation import (
    check_betas,
    check_flag,
    check_implementation_flags,
    check_non_negative,
    check_unit_interval,
)

NonFinitePolicy = Literal["raise", "skip", "ignore"]

_INT8_DTENSOR = (
    'state_precision="int8" does not take DTensor parameters (FSDP2, tensor parallel): its '
    "blocks of 256 elements and their scales do not follow a sharding, so a checkpoint could "
    'not be resharded; use state_precision="bf16" (which does) or "fp32"'
)
DerivedOption = Callable[[Mapping[str, Any]], Any]
"""A structural option computed from a param group (see ``derived_options``)."""
NONFINITE_POLICIES: tuple[str, ...] = ("raise", "skip", "ignore")
NON_NEGATIVE_STATE: tuple[str, ...] = (
    "exp_avg_sq",
    "max_exp_avg_sq",
    "sum",
    "square_avg",
    "acc_delta",
    "exp_inf",
)
"""The state names of second moments and norms (Adam, Adagrad, RMSprop, Adadelta, Adamax)."""


class NonFiniteGradientError(FloatingPointError):
    """A gradient held NaN or infinity; the step was not taken and no state was changed."""


class ComposedOptimizer(Optimizer):
    """Base class of every dltricks optimizer: a chain of blocks as a ``torch.optim.Optimizer``.

    Subclasses say which group entries change the *shape* of the chain
    (:attr:`structural_options`, e.g. ``nesterov``) and build the chain from them in
    :meth:`build_chain`; numeric entries (``lr``, ``betas``...) are read at every step, so a
    learning-rate scheduler's change takes effect at the next step.

    Non-finite gradients (``nonfinite``): before touching anything, a step checks every
    gradient. ``"raise"`` (default) raises :class:`NonFiniteGradientError`; ``"skip"`` skips the
    whole step and counts it in :attr:`skipped_steps`; ``"ignore"`` does what ``torch.optim``
    does (the NaN flows into parameters and state) and saves the check's read of the gradients.
    In every case but ``"ignore"`` parameters and state are left exactly as they were. On the
    fast path the check is one read of the gradient buffer (a sum, confirmed elementwise only
    when it is not finite).

    ``state_precision`` (``"fp32"``, ``"bf16"`` or ``"int8"``) stores the moments of the state
    in fewer bytes, with the arithmetic in float32: see :mod:`dltricks.optim.state_precision`
    (rules, state names, checkpoint conversion). Both paths take it; the fast path fuses the
    decoding and encoding into its one kernel. Optimizers whose state is moments expose the
    keyword.

    ``fast`` chooses the execution path (see the module docstring). On the fast path
    ``p.data``, ``p.grad`` and the state tensors are slices of flat buffers; :meth:`zero_grad`
    behaves as torch's (``set_to_none=True`` sets every ``p.grad`` to None and frees the
    gradient buffer, the next backward writes into a fresh one in place).
    """

    structural_options: ClassVar[tuple[str, ...]] = ()
    derived_options: ClassVar[Mapping[str, DerivedOption]] = {}
    """Structural options computed from a group rather than stored in it, by name (SGD's
    ``momentum_on`` is ``momentum != 0``)."""
    chain_is_fixed: ClassVar[bool] = True
    """Whether a group's chain is decided by :attr:`structural_options` alone. Then the fast
    path calls its compiled kernel without ``torch.compile``'s per-call guard checks; a
    user's chain (:class:`~dltricks.optim.ChainOptimizer`) may read Python values that change
    between steps, which only those checks would notice."""
    implied_step: ClassVar[float | None] = None
    """The step count given to a loaded state that has none, or None to reject such a state.

    ``torch.optim.SGD`` keeps no ``step``; :class:`~dltricks.optim.SGD` sets 1.0 so that torch's
    SGD checkpoints load (its chain reads ``t`` only to tell the first step from the others)."""
    flag_defaults: ClassVar[Mapping[str, Any]] = {"differentiable": False}
    """The group entries that an older state_dict may lack, with the value a group lacking one
    gets on load, deepcopy and unpickle: the flags the torch namesake's ``__setstate__`` fills
    in (``maximize``, ``foreach``, ``capturable``, ...), and ``differentiable``, which
    ``torch.optim.Optimizer.__setstate__`` adds to every optimizer's ``defaults``."""
    non_negative_state: ClassVar[tuple[str, ...]] = NON_NEGATIVE_STATE
    """State entries that are sums or averages of squares (or of magnitudes), so never
    negative: a loaded negative one is refused (its root would be NaN)."""
    supports_sparse_grads: ClassVar[bool] = False
    """Whether a step takes sparse gradients (torch's SGD and Adagrad do); they are stepped
    eagerly as the dense gradient they stand for, which is the same update."""

    def __init__(
        self,
        params: Iterable[Any],
        defaults: dict[str, Any],
        *,
        nonfinite: NonFinitePolicy = "raise",
        fast: bool | None = None,
        state_precision: str = "fp32",
    ) -> None:
        self.state_precision = check_state_precision(state_precision)
        # The seed of bf16's stochastic rounding (kept in every parameter's state as sr_seed):
        # the same for every optimizer, so that data-parallel replicas (DDP, a replicated
        # DTensor) round alike whatever each process's random state.
        self.state_seed = 0.0
        if nonfinite not in NONFINITE_POLICIES:
            raise ValueError(
                f"nonfinite must be one of {', '.join(NONFINITE_POLICIES)}; got {nonfinite!r}"
            )
        if fast is not None and not isinstance(fast, bool):
            raise ValueError(f"fast must be True, False or None; got {fast!r}")
        self.nonfinite: NonFinitePolicy = nonfinite
        self.fast = fast
        self.skipped_steps = 0
        self._flat: FlatPath | None = None
        self._chains: dict[tuple[Any, ...], Transform] = {}
        # Hyperparameters first, as torch checks them: Adam(None, lr=-1) is a ValueError
        # about lr, not a TypeError about params.
        self.validate_group(defaults)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                self.codec_for(p)  # refuses what the state precision cannot store, now
        if defaults.get("fused"):
            # As torch's fused optimizers: the step takes GradScaler's scale and inf flag, and
            # runs fused (the fast path for every bucket it can take) unless fast=False.
            self._step_supports_amp_scaling = True
            if fast is None:
                self.fast = True
        compiled_step.register(self)

    # -- what subclasses provide ---------------------------------------------------------

    def build_chain(self, options: Mapping[str, Any]) -> Transform:
        """The chain for a group whose structural options are ``options``."""
        raise NotImplementedError

    #: Group entries that must be finite numbers >= 0.
    non_negative: ClassVar[tuple[str, ...]] = ()
    #: Group entries that must lie in [0, 1] (decay rates such as RMSprop's ``alpha``).
    unit_interval: ClassVar[tuple[str, ...]] = ()
    #: Group entries that must be True or False.
    flags: ClassVar[tuple[str, ...]] = ()

    def validate_group(self, group: Mapping[str, Any]) -> None:
        """Raise ValueError naming the first invalid hyperparameter of ``group``.

        Checks the entries the class declares in :attr:`non_negative`, ``betas`` (each in
        [0, 1)) when the group has them, :attr:`unit_interval`, :attr:`flags` and torch's
        implementation flags (``foreach``, ``fused``, ``capturable``, ``differentiable``: see
        :func:`~dltricks.optim.validation.check_implementation_flags`); subclasses add rules
        that tie entries together.
        """
        for name in self.non_negative:
            check_non_negative(name, group[name])
        if "betas" in group:
            check_betas(group["betas"])
        for name in self.unit_interval:
            check_unit_interval(name, group[name], include_one=True)
        for name in self.flags:
            check_flag(name, group[name])
        check_implementation_flags(group, type(self).__name__)

    # -- torch.optim contract ------------------------------------------------------------

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        # Validate the group as it will be, defaults filled in, before torch stores it, so an
        # invalid group leaves the optimizer unchanged.
        candidate = {**self.defaults, **{k: v for k, v in param_group.items() if k != "params"}}
        self.validate_group(candidate)
        params = param_group["params"]
        tensors = [params] if isinstance(params, Tensor) else list(params)
        param_group = {**param_group, "params": tensors}
        super().add_param_group(param_group)

    def chain_for(self, group: Mapping[str, Any]) -> Transform:
        """The (cached) chain for ``group``."""
        key = self.structure_of(group)
        chain = self._chains.get(key)
        if chain is None:
            chain = self.build_chain(dict(zip(self.structural_options, key, strict=True)))
            self._chains[key] = chain
        return chain

    def structure_of(self, group: Mapping[str, Any]) -> tuple[Any, ...]:
        """The values of :attr:`structural_options` in ``group``: what decides its chain.
        Read at every fast step, so it stays a few C-level lookups."""
        derived = self.derived_options
        if not derived:
            return tuple(map(group.__getitem__, self.structural_options))
        return tuple(
            [
                derived[name](group) if name in derived else group[name]
                for name in self.structural_options
            ]
        )

    def fast_update(
        self,
        group: Mapping[str, Any],
        key: Any,
        fused: Any,
        device: torch.device,
        dtype: torch.dtype,
        codec: StateCodec | None = None,
    ) -> Any:
        """The update a fast-path bucket of ``group`` (parameters of ``dtype`` on ``device``,
        moments stored as ``codec`` says) runs: ``fused``, the chain's compiled kernel, unless
        a subclass has a faster equivalent with its calling convention (Adam/AdamW: the C
        kernels for bf16 and int8 state on a CPU; ASGD: a second kernel for the steps before
        averaging starts)."""
        return fused

    def fast_key(self, group: Mapping[str, Any]) -> Any:
        """Identifies the group's chain across optimizer instances, to share its compiled
        kernel: equal keys must mean equal chains. Default: the class and the structural
        options; :class:`~dltricks.optim.ChainOptimizer` uses the structure of the user's
        chain."""
        return (type(self), self.structure_of(group))

    @staticmethod
    def group_hyper(group: Mapping[str, Any]) -> dict[str, Scalar]:
        """The numeric hyperparameters of ``group`` by name; ``betas`` become beta1, beta2."""
        hyper: dict[str, Scalar] = {}
        for name, value in group.items():
            if name == "betas":
                hyper["beta1"], hyper["beta2"] = value
            else:
                number = _as_number(value)
                if number is not None:
                    hyper[name] = number
        return hyper

    @staticmethod
    def group_value(group: Mapping[str, Any], name: str) -> Scalar:
        """``group_hyper(group)[name]``, without building the whole mapping (the fast path
        reads its few hyperparameters at every step). KeyError where that has no ``name``."""
        if name in ("beta1", "beta2") and "betas" in group:
            return group["betas"][name == "beta2"]  # type: ignore[no-any-return]
        number = _as_number(group[name])
        if number is None:
            raise KeyError(name)
        return number

    def step(  # type: ignore[override]
        self,
        closure: Callable[[], Any] | None = None,
        *,
        grad_scale: Tensor | None = None,
        found_inf: Tensor | None = None,
    ) -> Any:
        """Take one optimization step; ``closure`` re-evaluates the model and returns the loss.

        ``grad_scale`` and ``found_inf`` follow torch's fused optimizers (and
        ``torch.amp.GradScaler``, which sets them as attributes of an optimizer made with
        ``fused=True``, whose :attr:`_step_supports_amp_scaling` says the step reads them;
        the keywords work whatever ``fused`` says): when ``found_inf`` is
        nonzero the step changes nothing (parameters, state, step counts, gradients); otherwise
        every gradient is first divided in place by ``grad_scale``, as torch's fused kernels
        leave it, and the step proceeds. Keywords win over the attributes.

        Step hooks (``register_step_pre_hook``/``register_step_post_hook``, torch's global
        optimizer hooks) and the profiler's ``Optimizer.step#<class>.step`` range behave as for
        torch's optimizers: when any is in use, the step runs inside torch's own wrapper.
        Otherwise it skips that wrapper, whose profiler range costs a few microseconds per
        step even when no profiler runs (a small model's whole step takes tens).
        """
        if (
            grad_scale is None
            and found_inf is None
            and torch.compiler.is_compiling()
            and compiled_step.available()
        ):
            # Traced by torch.compile: the step becomes one opaque operator of the graph,
            # which runs the ordinary step below when the graph runs (see compiled_step).
            loss = None
            if closure is not None:
                with torch.enable_grad():
                    loss = closure()
            compiled_step.step_in_graph(self)
            return loss
        if grad_scale is not None or found_inf is not None:
            if _needs_torch_wrapper(self):
                return _step_in_torch_wrapper(
                    self, closure, grad_scale=grad_scale, found_inf=found_inf
                )
            return self._plain_step(closure, grad_scale=grad_scale, found_inf=found_inf)
        if _needs_torch_wrapper(self):
            return _step_in_torch_wrapper(self, closure)
        return self._plain_step(closure)

    def step_outside_compile(self) -> None:
        """One step without a closure, as :meth:`step` takes it outside ``torch.compile``
        (hooks and profiler range included); what the compiled step's operator runs."""
        if _needs_torch_wrapper(self):
            _step_in_torch_wrapper(self, None)
        else:
            self._plain_step(None)

    # torch wraps an optimizer class's step in its hook/profiler wrapper unless marked so;
    # ComposedOptimizer.step enters that wrapper itself when it is needed.
    step.hooked = True  # type: ignore[attr-defined]

    _step_supports_amp_scaling = False
    """True with ``fused=True``, as in torch: tells ``torch.amp.GradScaler`` to hand the scale
    and the inf check to :meth:`step` instead of unscaling in a pass of its own. (False by
    default because Lightning, for one, refuses gradient clipping with such an optimizer.)"""

    def _unscale(self, grad_scale: Tensor | None, found_inf: Tensor | None) -> bool:
        """GradScaler's protocol before a step: False (skip the step, change nothing) when
        ``found_inf`` is nonzero; else divide every gradient in place by ``grad_scale``."""
        if found_inf is not None and bool(found_inf.ne(0).any()):
            return False
        if grad_scale is not None:
            with torch.no_grad():
                for group in self.param_groups:
                    for p in group["params"]:
                        if p.grad is not None:
                            p.grad.div_(grad_scale.to(p.grad.device))
        return True

    def _plain_step(
        self,
        closure: Callable[[], Any] | None = None,
        *,
        grad_scale: Tensor | None = None,
        found_inf: Tensor | None = None,
    ) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # torch.amp.GradScaler hands these over as attributes (see _step_supports_amp_scaling).
        grad_scale = grad_scale if grad_scale is not None else getattr(self, "grad_scale", None)
        found_inf = found_inf if found_inf is not None else getattr(self, "found_inf", None)
        if (grad_scale is not None or found_inf is not None) and not self._unscale(
            grad_scale, found_inf
        ):
            return loss
        # Grad mode set by hand rather than by the no_grad decorator: a small model's step
        # takes tens of microseconds, and the decorator's context machinery costs a few.
        previous = torch.is_grad_enabled()
        torch.set_grad_enabled(False)
        try:
            self._step_without_grad()
        finally:
            torch.set_grad_enabled(previous)
        return loss

    def _step_without_grad(self) -> None:
        flat = self._fast_path()
        if flat is not None:
            flat.step()
            return
        work = self._collect()
        grads = [p.grad for _, params in work for p in params if p.grad is not None]
        if self.nonfinite != "ignore" and not all_finite(grads):
            self.reject_nonfinite(work)
            return
        for group, params in work:
            self.step_group_eagerly(group, params)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients as ``torch.optim.Optimizer.zero_grad`` does.

        ``set_to_none=True``: every ``p.grad`` becomes None (on the fast path the flat
        gradient buffers are freed too). ``set_to_none=False``: existing gradients are zeroed
        in place and None stays None, so a parameter that then gets no gradient is not moved.
        """
        flat = self._fast_path()
        if flat is None:
            super().zero_grad(set_to_none)
            return
        handled = flat.zero_grad(set_to_none)
        for group in self.param_groups:
            for p in group["params"]:
                if id(p) in handled or p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    if p.grad.grad_fn is not None:
                        p.grad.detach_()
                    else:
                        p.grad.requires_grad_(False)
                    p.grad.zero_()

    def load_state_dict(self, state_dict: Any) -> None:
        """Load a state saved by :meth:`state_dict` (ours or torch's counterpart's), checked.

        What torch does, plus checks that run *before* anything changes, so that a state that
        does not fit raises ``ValueError`` naming the group, parameter and entry at fault and
        leaves this optimizer (and its fast path) exactly as it was:

        * a dict with ``state`` and ``param_groups``, as many groups as this optimizer, as many
          parameters in each;
        * every group carries this class's hyperparameters, with valid values (a group saved by
          another optimizer class lacks some of them);
        * every parameter's state is empty (it never stepped) or holds exactly the entries this
          optimizer keeps with the loaded group's options (the chain's ``state_keys`` and
          ``step``), shaped like the parameter (or 0-dim for scalar entries such as ``step``).

        As in torch, the loaded groups' hyperparameters, flags such as ``amsgrad`` included,
        replace the current ones; floating state is cast to its parameter's dtype and moved to
        its device, ``step`` is kept as saved. On the fast path the loaded state is copied into
        the flat buffers at the next step. To resume, possibly on another device::

            checkpoint = torch.load(path, map_location=device, weights_only=True)
            model.load_state_dict(checkpoint["model"])  # the model first, already on device
            optimizer = Adam(model.parameters(), lr=1e-3)
            optimizer.load_state_dict(checkpoint["optimizer"])

        The continued run is bit-identical to an uninterrupted one on the same path (eager or
        fast), dtype and device.
        """
        if not isinstance(state_dict, Mapping):
            raise ValueError(
                f"{type(self).__name__}.load_state_dict expects a dict with 'state' and "
                f"'param_groups' (from optimizer.state_dict()), got {type(state_dict).__name__}"
            )
        candidate: Any = dict(state_dict)
        # torch runs the pre-hooks first (they may convert an old format): check what they
        # return, then let torch load it without running them twice.
        hooks = self._optimizer_load_state_dict_pre_hooks
        for hook in hooks.values():
            result = hook(self, candidate)
            if result is not None:
                candidate = result
        self._check_loadable(candidate)
        self._optimizer_load_state_dict_pre_hooks = OrderedDict()
        try:
            super().load_state_dict(candidate)
        finally:
            self._optimizer_load_state_dict_pre_hooks = hooks
        if self.state_precision != "fp32" or any(
            isinstance(e, Mapping) and form_of(e) != "fp32" for e in candidate["state"].values()
        ):
            self._convert_loaded(candidate)
        if self.implied_step is not None:
            for entry in self.state.values():
                # A post-hook may keep other things in the state: only fix a param's dict.
                if isinstance(entry, dict) and entry and "step" not in entry:
                    entry["step"] = torch.tensor(self.implied_step, dtype=torch.float32)

    def _convert_loaded(self, state_dict: Mapping[str, Any]) -> None:
        """After torch's load: every parameter's state in this optimizer's precision (low
        precision entries as saved, not cast to the parameter's dtype as torch casts them)."""
        saved_state = state_dict["state"]
        for saved, current in zip(state_dict["param_groups"], self.param_groups, strict=True):
            for saved_id, p in zip(saved["params"], current["params"], strict=True):
                raw = saved_state.get(saved_id)
                loaded = self.state.get(p)
                if isinstance(raw, Mapping) and raw and isinstance(loaded, dict):
                    self.state[p] = self._converted(raw, loaded, p)

    def _check_loadable(self, state_dict: Any) -> None:
        """Raise ValueError if ``state_dict`` does not fit this optimizer; change nothing."""
        name = type(self).__name__
        if not isinstance(state_dict, Mapping):
            raise ValueError(f"a load_state_dict pre-hook returned {type(state_dict).__name__}")
        saved_state, saved_groups = state_dict.get("state"), state_dict.get("param_groups")
        if not isinstance(saved_state, Mapping) or not isinstance(saved_groups, list | tuple):
            raise ValueError(
                "an optimizer state_dict has 'state' (a dict) and 'param_groups' (a list); "
                f"got keys {sorted(map(str, state_dict))}"
            )
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"the loaded state_dict has {len(saved_groups)} param groups, this {name} has "
                f"{len(self.param_groups)}"
            )
        owner: dict[Any, tuple[str, Tensor, dict[str, Any]]] = {}
        for gi, (saved, current) in enumerate(zip(saved_groups, self.param_groups, strict=True)):
            ids = saved.get("params") if isinstance(saved, Mapping) else None
            if not isinstance(ids, list | tuple):
                raise ValueError(f"param group {gi} of the loaded state_dict has no 'params' list")
            if len(ids) != len(current["params"]):
                raise ValueError(
                    f"param group {gi} of the loaded state_dict has {len(ids)} parameters, "
                    f"this {name}'s has {len(current['params'])}"
                )
            # As torch: a flag that an older version did not save gets its default.
            fillable = self.flag_defaults
            # torch's Optimizer.__setstate__ adds ``differentiable`` to the defaults of every
            # copy, also of optimizers that never save it (Adafactor, Muon).
            missing = [
                key
                for key in self.defaults
                if key not in saved and key not in fillable and key != "differentiable"
            ]
            if missing:
                raise ValueError(
                    f"param group {gi} of the loaded state_dict lacks {', '.join(missing)}: "
                    f"it was saved by another optimizer than {name}"
                )
            group = {**fillable, **saved, "params": current["params"]}
            try:
                self.validate_group(group)
            except ValueError as error:
                raise ValueError(f"param group {gi} of the loaded state_dict: {error}") from None
            for pi, (saved_id, p) in enumerate(zip(ids, current["params"], strict=True)):
                if saved_id in owner:
                    raise ValueError(
                        f"parameter id {saved_id!r} appears twice in the loaded param groups"
                    )
                where = f"param group {gi}, parameter {pi} (shape {tuple(p.shape)})"
                owner[saved_id] = (where, p, group)
        for saved_id, entry in saved_state.items():
            if saved_id not in owner:
                raise ValueError(
                    f"the loaded state_dict holds state for parameter id {saved_id!r}, which no "
                    "param group lists"
                )
            self._check_param_state(entry, *owner[saved_id])

    def _check_param_state(
        self, entry: Any, where: str, param: Tensor, group: dict[str, Any]
    ) -> None:
        if not isinstance(entry, Mapping):
            raise ValueError(f"the state of {where} is a {type(entry).__name__}, not a dict")
        if not entry:
            return  # the parameter never stepped; torch saves such a state empty
        if form_of(entry) != "fp32":
            entry = self._decoded_for_check(entry, where, param)
        shapes = self._expected_state(param, group)
        missing = [key for key in shapes if key not in entry]
        if self.implied_step is not None and "step" in missing:
            missing.remove("step")
        unexpected = [str(key) for key in entry if key not in shapes]
        if missing or unexpected:
            problems = [f"lacks {', '.join(missing)}"] if missing else []
            problems += [f"has unexpected {', '.join(unexpected)}"] if unexpected else []
            raise ValueError(
                f"the state of {where} {' and '.join(problems)}: {type(self).__name__} with "
                f"these options keeps {', '.join(shapes)}; was it saved by another optimizer?"
            )
        for key, shape in shapes.items():
            if key not in entry:
                continue
            value = entry[key]
            if not isinstance(value, Tensor):
                # Old torch checkpoints keep "step" as a number.
                if key == "step" and isinstance(value, int | float) and not isinstance(value, bool):
                    _check_step_count(float(value), where)
                    continue
                raise ValueError(
                    f"state {key!r} of {where} is a {type(value).__name__}, not a tensor"
                )
            if key != "step" and not (value.is_floating_point() or value.is_complex()):
                raise ValueError(
                    f"state {key!r} of {where} has dtype {value.dtype}; floating state expected"
                )
            scalar = value.dim() == 0 or (key == "step" and value.numel() == 1)
            if shape is None:  # declared but not known: parameter-shaped or a scalar
                fits = scalar or value.shape == param.shape
            else:
                fits = scalar if shape == () else tuple(value.shape) == shape
            if not fits:
                wanted = "a scalar" if shape == () else f"shape {shape or tuple(param.shape)}"
                raise ValueError(
                    f"state {key!r} of {where} has shape {tuple(value.shape)}, expected {wanted}: "
                    "was it saved for another model?"
                )
            self._check_state_values(key, value, where)

    def _check_state_values(self, key: str, value: Tensor, where: str) -> None:
        """Refuse values no step could have produced: they would turn the parameters into
        NaN at the next step (and, on the fast path, a NaN step count breaks every later
        step). One read of each loaded tensor."""
        if key == "step":
            _check_step_count(float(value.reshape(-1)[0]), where)
            return
        if value.device.type == "meta":
            return
        if value.is_sparse:  # torch's SGD keeps a sparse momentum for sparse gradients
            value = value.coalesce().values()
        value = real_view(value)
        if value.numel() == 0:
            return
        # A sum and a min read the tensor without allocating its size (isfinite would).
        if not all_finite([value]):
            raise ValueError(
                f"state {key!r} of {where} holds NaN or infinity: the checkpoint is corrupt "
                "(or was saved after a diverged step)"
            )
        if key in self.non_negative_state and float(value.min()) < 0:
            raise ValueError(
                f"state {key!r} of {where} holds negative values ({float(value.min())}); "
                "it is a sum or average of squares, so never negative: the checkpoint is corrupt"
            )

    def _expected_state(
        self, param: Tensor, group: dict[str, Any]
    ) -> dict[str, tuple[int, ...] | None]:
        """The state entries of ``param`` under ``group``'s chain: name -> shape (None: either
        the parameter's shape or a scalar)."""
        chain = self.chain_for(group)
        shapes: dict[str, tuple[int, ...] | None] = {}
        # Initialising on the meta device costs no memory and says which entries are
        # parameter-shaped and which are scalars (NAdam's mu_product); a user's block that
        # cannot run there falls back to its declared state_keys.
        dtype = param.dtype if param.is_floating_point() else torch.get_default_dtype()
        hyper = {**self.group_hyper(group), "step": 1.0}
        try:
            probe = torch.empty(param.shape, dtype=dtype, device="meta")
            fresh = chain.init(probe, hyper)
        except Exception:
            # A block that must see the parameter itself (a partition by parameter) gets it:
            # the fresh state is thrown away at once.
            try:
                with torch.no_grad():
                    fresh = chain.init(param, hyper)
            except Exception:
                fresh = {}
        shapes.update({key: tuple(value.shape) for key, value in fresh.items()})
        if not fresh:
            # The declared names, where init could not run; an init that ran says exactly
            # which entries this parameter keeps (Adafactor's depend on its dimension).
            for key in chain.state_keys:
                shapes.setdefault(key, None)
        shapes["step"] = ()
        return shapes

    # -- fast path -----------------------------------------------------------------------

    def _fast_mode(self) -> str | None:
        """``"on"``, ``"auto"`` or None (eager), from ``fast`` and ``DLTRICKS_FAST``."""
        env = os.environ.get("DLTRICKS_FAST", "")
        if env not in ("", "0", "1", "auto"):
            raise ValueError(f"DLTRICKS_FAST must be 0, 1 or auto; got {env!r}")
        if env == "0" or self.fast is False or torch.compiler.is_compiling():
            return None
        return "on" if self.fast is True or env == "1" else "auto"

    def _fast_path(self) -> FlatPath | None:
        mode = self._fast_mode()
        if mode is None:
            if self._flat is not None:
                self._flat.detach()
                self._flat = None
            return None
        min_numel = 2 if mode == "on" else MIN_FAST_NUMEL
        if self._flat is None or self._flat.min_numel != min_numel:
            if self._flat is not None:
                self._flat.detach()
            self._flat = FlatPath(self, min_numel=min_numel)
        return self._flat

    def reject_nonfinite(self, work: list[tuple[dict[str, Any], list[Tensor]]]) -> None:
        """Apply the non-finite policy to a step found to hold a non-finite gradient."""
        if self.nonfinite == "raise":
            raise NonFiniteGradientError(self._describe_nonfinite(work))
        self.skipped_steps += 1

    def __getstate__(self) -> dict[str, Any]:
        # torch pickles (and deep-copies) only defaults, state and param_groups; keep the
        # policies too. The fast path (compiled kernels, hooks) is rebuilt by the copy's first
        # step.
        state = dict(super().__getstate__())
        state.update(
            nonfinite=self.nonfinite,
            fast=self.fast,
            state_precision=self.state_precision,
            state_seed=self.state_seed,
            skipped_steps=self.skipped_steps,
            # A copy of a fused=True optimizer still takes GradScaler's protocol.
            _step_supports_amp_scaling=self._step_supports_amp_scaling,
            _chains={},
            _flat=None,
        )
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """What torch's optimizers do on load, deepcopy and unpickle: fill the flags that an
        older state lacks with their defaults (:attr:`flag_defaults`) and turn a step count
        saved as a number (torch < 1.12) into a tensor."""
        super().__setstate__(state)
        self.__dict__.setdefault("nonfinite", "raise")
        self.__dict__.setdefault("fast", None)
        self.__dict__.setdefault("state_precision", "fp32")
        self.__dict__.setdefault("state_seed", 0.0)
        self.__dict__.setdefault("skipped_steps", 0)
        self.__dict__.setdefault("_chains", {})
        self.__dict__.setdefault("_flat", None)
        for group in self.param_groups:
            for key, value in self.flag_defaults.items():
                group.setdefault(key, value)
            for p in group["params"]:
                entry = self.state.get(p)
                if (
                    isinstance(entry, dict)
                    and "step" in entry
                    and not isinstance(entry["step"], Tensor)
                ):
                    entry["step"] = torch.tensor(float(entry["step"]), dtype=torch.float32)
        if "_compile_handle" not in self.__dict__:
            # A copy or an unpickled optimizer is an optimizer of its own; a load keeps its handle.
            compiled_step.register(self)

    # -- internals -----------------------------------------------------------------------

    def _collect(self) -> list[tuple[dict[str, Any], list[Tensor]]]:
        work = []
        for group in self.param_groups:
            params = self.params_to_step(group, group["params"])
            if params:
                work.append((group, params))
        return work

    def params_to_step(self, group: Mapping[str, Any], params: Iterable[Tensor]) -> list[Tensor]:
        """The ``params`` of ``group`` that have a gradient this step; raises, before anything
        is updated, for a sparse gradient this optimizer (or this group) does not take."""
        out = params_with_grad(params)
        if any(p.grad is not None and p.grad.is_sparse for p in out):
            name = type(self).__name__
            if not self.supports_sparse_grads:
                # torch's type and message, and where to go instead.
                raise RuntimeError(
                    f"{name} does not support sparse gradients: dltricks SGD and Adagrad take "
                    "them, or use torch.optim.SparseAdam"
                )
            self.check_sparse_group(group)
        return out

    def check_sparse_group(self, group: Mapping[str, Any]) -> None:
        """Raise where ``group``'s options do not take a sparse gradient (Adagrad's weight
        decay, as in torch); called only for groups with one."""

    def _describe_nonfinite(self, work: list[tuple[dict[str, Any], list[Tensor]]]) -> str:
        for group_index, group in enumerate(self.param_groups):
            for param_index, p in enumerate(group["params"]):
                if p.grad is not None and not all_finite([p.grad]):
                    return (
                        f"non-finite gradient in param group {group_index}, parameter "
                        f"{param_index} (shape {tuple(p.shape)}); the step was not taken. "
                        "Pass nonfinite='skip' to skip such steps, or 'ignore' for torch's "
                        "behaviour"
                    )
        return "non-finite gradient; the step was not taken"

    def step_group_eagerly(self, group: dict[str, Any], params: list[Tensor]) -> None:
        """The eager update of ``params`` of ``group`` (also the fast path's fallback)."""
        chain = self.chain_for(group)
        hyper = self.group_hyper(group)
        lowbit = self.state_precision != "fp32"
        for p in params:
            grad = p.grad
            assert grad is not None
            state = self.state[p]
            codec = self.codec_for(p) if lowbit else None
            if not state:
                fresh = _init_state(chain, p, hyper)
                state.update(fresh if codec is None else self._encoded(codec, fresh, p))
                state["step"] = torch.zeros((), dtype=torch.float32)
            step = float(state["step"]) + 1.0
            if codec is not None:
                self._step_lowbit(chain, codec, p, grad, state, {**hyper, "step": step})
            elif p.is_complex() or grad.is_sparse:
                self._step_real_view(chain, p, grad, state, {**hyper, "step": step})
            else:
                update, changed = chain.update(grad, state, p, {**hyper, "step": step})
                p.add_(update)
                state.update(_not_aliasing(changed, grad))
            state["step"] += 1

    # -- low-precision state (dltricks.optim.state_precision) -----------------------------

    def codec_for(self, p: Tensor) -> StateCodec | None:
        """How ``p``'s moments are stored: None for the parameter's dtype (``"fp32"``, and
        for complex or 0-dim parameters, and under ``"int8"`` for tensors of fewer than
        :data:`~dltricks.optim.state_precision.INT8_MIN_NUMEL` elements)."""
        precision = self.state_precision
        if precision == "fp32" or not p.is_floating_point() or p.dim() == 0:
            return None
        if precision == "int8" and p.numel() < INT8_MIN_NUMEL:
            return None
        if precision == "int8" and torch_internals.is_distributed_tensor(p):
            raise NotImplementedError(_INT8_DTENSOR)
        return StateCodec(precision, frozenset(self.non_negative_state))

    def _encoded(self, codec: StateCodec, entry: Mapping[str, Any], p: Tensor) -> dict[str, Any]:
        """``entry`` (moments in full precision) in ``codec``'s form, rounded to nearest."""
        out: dict[str, Any] = {}
        for key, value in entry.items():
            if (
                key != "step"
                and isinstance(value, Tensor)
                and value.is_floating_point()
                and value.shape == p.shape
            ):
                out.update(codec.encode_nearest(key, value))
            else:
                out[key] = value
        for key in codec.scalar_names:
            out[key] = torch.tensor(self.state_seed, dtype=torch.float32)
        return out

    @staticmethod
    def _moment_keys(codec: StateCodec, state: Mapping[str, Any], p: Tensor) -> tuple[str, ...]:
        if codec.precision == "int8":
            return tuple(k[: -len(INT8_SUFFIX)] for k in state if k.endswith(INT8_SUFFIX))
        return tuple(
            k
            for k, v in state.items()
            if isinstance(v, Tensor) and v.dtype == torch.bfloat16 and v.shape == p.shape
        )

    def _step_lowbit(
        self,
        chain: Transform,
        codec: StateCodec,
        p: Tensor,
        grad: Tensor,
        state: dict[str, Any],
        hyper: dict[str, Any],
    ) -> None:
        """The eager update of ``p`` with moments stored by ``codec``: decoded to float32,
        the chain's update, encoded (bf16: stochastically) into the state."""
        keys = self._moment_keys(codec, state, p)
        # The arithmetic in float32, or the parameter's dtype if wider (as the fused kernel's).
        compute = torch.promote_types(p.dtype, torch.float32)
        work = {**state, **{key: codec.decode(key, state).to(compute) for key in keys}}
        if grad.is_sparse:
            before = dict(work)
            self._step_real_view(chain, p, grad.to(compute), work, hyper)
            changed = {k: v for k, v in work.items() if v is not before.get(k)}
        else:
            wide = p.detach().to(compute)
            update, changed = chain.update(grad.to(compute), work, wide, hyper)
            p.add_(update)
        step = torch.tensor(float(hyper["step"]))
        state.update(codec.encode_changed(changed, keys, step, state.get(SEED_KEY)))

    def _converted(self, raw: Mapping[str, Any], loaded: dict[str, Any], p: Tensor) -> Any:
        """A loaded parameter state in this optimizer's form for ``p`` (see the conversion
        rules in :mod:`dltricks.optim.state_precision`). ``raw``: as saved; ``loaded``: as
        torch's load made it (floating values cast to the parameter's dtype)."""
        form = form_of(raw)
        codec = self.codec_for(p) if self.state_precision != "fp32" else None
        target = "fp32" if codec is None else codec.precision
        if form == "fp32" and target == "fp32":
            return loaded
        step = loaded.get("step")
        if form == "fp32":
            full: dict[str, Any] = {k: v for k, v in loaded.items() if k != "step"}
        else:
            on_device = {
                k: v.to(device=p.device) if isinstance(v, Tensor) else v
                for k, v in raw.items()
                if k != "step"
            }
            if form == target and not is_quarter_root(on_device):
                return {**on_device, "step": step}  # as saved, bit for bit
            full = decoded(on_device, tuple(self.non_negative_state))
            full.pop(SEED_KEY, None)
        if codec is None:
            out = {
                k: v.to(p.dtype) if isinstance(v, Tensor) and v.is_floating_point() else v
                for k, v in full.items()
            }
        else:
            out = self._encoded(codec, full, p)
        out["step"] = step
        return out

    def _decoded_for_check(self, entry: Mapping[str, Any], where: str, param: Tensor) -> Any:
        """A saved low-precision state checked and decoded to float32 (its values are then
        checked as a float32 state's)."""
        form = form_of(entry)
        if form == "bf16":
            seed = entry[SEED_KEY]
            if not isinstance(seed, Tensor) or seed.numel() != 1:
                raise ValueError(f"state {SEED_KEY!r} of {where} is not a one-element tensor")
            value = float(seed.reshape(-1)[0])
            if not math.isfinite(value) or value != int(value) or not 0 <= value < 1 << 24:
                raise ValueError(
                    f"state {SEED_KEY!r} of {where} is {value}: a seed is a whole number in "
                    "[0, 2^24); the checkpoint is corrupt"
                )
        else:
            for key in [k for k in entry if str(k).endswith(INT8_SUFFIX)]:
                codes = entry[key]
                name = str(key)[: -len(INT8_SUFFIX)]
                absmax = entry.get(name + ABSMAX_SUFFIX)
                if not isinstance(codes, Tensor) or codes.dtype not in (torch.uint8, torch.int8):
                    raise ValueError(
                        f"state {key!r} of {where} is not a tensor of 8-bit codes (uint8; int8 "
                        "for checkpoints of the earlier quarter-root map)"
                    )
                if tuple(codes.shape) != tuple(param.shape):
                    raise ValueError(
                        f"state {key!r} of {where} has shape {tuple(codes.shape)}, expected "
                        f"{tuple(param.shape)}: was it saved for another model?"
                    )
                blocks = (blocks_of(param.numel()),)
                if (
                    not isinstance(absmax, Tensor)
                    or not absmax.is_floating_point()
                    or tuple(absmax.shape) != blocks
                ):
                    raise ValueError(
                        f"state {name + ABSMAX_SUFFIX!r} of {where} must be a float tensor of "
                        f"shape {blocks} (one scale per block of codes)"
                    )
                if not all_finite([absmax]) or float(absmax.min()) < 0:
                    raise ValueError(
                        f"state {name + ABSMAX_SUFFIX!r} of {where} holds NaN, infinity or "
                        "negative scales: the checkpoint is corrupt"
                    )
            orphans = [
                str(k)
                for k in entry
                if str(k).endswith(ABSMAX_SUFFIX)
                and str(k)[: -len(ABSMAX_SUFFIX)] + INT8_SUFFIX not in entry
            ]
            if orphans:
                raise ValueError(
                    f"the state of {where} has {', '.join(orphans)} without their int8 codes"
                )
        return decoded(entry, tuple(self.non_negative_state))

    @staticmethod
    def _step_real_view(
        chain: Transform, p: Tensor, grad: Tensor, state: dict[str, Any], hyper: dict[str, Any]
    ) -> None:
        """The update of a complex parameter (or with a sparse gradient) on real views, as
        torch's optimizers take it: a complex number is a pair of real parameters."""
        real_p = real_view(p)
        real_state = {
            key: real_view(value) if isinstance(value, Tensor) and value.is_complex() else value
            for key, value in state.items()
        }
        real_grad = real_view(grad)
        update, changed = chain.update(real_grad, real_state, real_p, hyper)
        real_p.add_(update)
        for key, value in _not_aliasing(changed, real_grad).items():
            previous = state.get(key)
            if isinstance(previous, Tensor) and previous.is_complex():
                value = torch.view_as_complex(value.contiguous())
            state[key] = value


def _needs_torch_wrapper(optimizer: ComposedOptimizer) -> bool:
    """Whether a step hook or a profiler is in use (or this torch hides where they live)."""
    hooks = torch_internals.optimizer_hook_dicts()
    if hooks is None:
        return True
    return bool(
        hooks[0]
        or hooks[1]
        or getattr(optimizer, "_optimizer_step_pre_hooks", True)
        or getattr(optimizer, "_optimizer_step_post_hooks", True)
        or torch_internals.profiler_enabled()
    )


_step_in_torch_wrapper = Optimizer.profile_hook_step(ComposedOptimizer._plain_step)
"""torch's own step wrapper (hooks, profiler range) around the step: the path when needed."""


def _shares_memory(a: Tensor, b: Tensor) -> bool:
    if a is b:
        return True
    distributed = torch_internals.is_distributed_tensor
    if a.is_sparse or b.is_sparse or distributed(a) or distributed(b):
        return False  # no storage of their own to compare; identity was checked above
    try:
        return bool(a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr())
    except (RuntimeError, NotImplementedError):  # a tensor subclass without a storage
        return False


def _not_aliasing(changed: Mapping[str, Any], grad: Tensor) -> dict[str, Any]:
    """The chain's new state, with any tensor that shares memory with the gradient copied.

    A block may pass its input through as state (SGD's momentum buffer is the gradient
    itself at the first step, ``b_1 = u_1``): kept as is, the buffer would be the gradient
    tensor, and the next backward (which accumulates into ``p.grad``), a
    ``zero_grad(set_to_none=False)`` or any in-place write to ``p.grad`` would change the
    optimizer's state. torch clones there too.
    """
    return {
        key: value.clone()
        if isinstance(value, Tensor) and value.numel() and _shares_memory(value, grad)
        else value
        for key, value in changed.items()
    }


def _init_state(chain: Transform, p: Tensor, hyper: Mapping[str, Scalar]) -> dict[str, Any]:
    """The chain's fresh state for ``p``. A complex parameter's state is initialised on its
    real view (so Adagrad's initial accumulator fills both parts, as torch's does) and kept
    complex, shaped like ``p``, as torch keeps it."""
    if not p.is_complex():
        return dict(chain.init(p, hyper))
    real_p = torch.view_as_real(p)
    return {
        key: torch.view_as_complex(value)
        if isinstance(value, Tensor) and value.shape == real_p.shape
        else value
        for key, value in chain.init(real_p, hyper).items()
    }


def _check_step_count(step: float, where: str) -> None:
    """A step count is a whole number >= 0."""
    if not math.isfinite(step) or step < 0 or step != int(step):
        raise ValueError(
            f"state 'step' of {where} is {step}: a step count is a whole number >= 0; "
            "the checkpoint is corrupt"
        )


def _as_number(value: Any) -> Scalar | None:
    """A group entry as a hyperparameter: a number, or a one-element tensor's value; None
    for anything else (flags, lists, the params)."""
    if isinstance(value, Tensor) and value.numel() == 1:
        return value.item()  # type: ignore[no-any-return]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return None
