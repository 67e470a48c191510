"""The ``torch.optim`` adapter: runs a chain of transformations as a drop-in optimizer.

Only this module writes into parameters and optimizer state. For every parameter with a
gradient it builds the hyperparameters of the step from the parameter's group, runs the group's
chain (a pure function), adds the resulting increment to the parameter and stores the changed
state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor
from torch.optim import Optimizer

from dltricks.optim.base import Scalar, Transform

NonFinitePolicy = Literal["raise", "skip", "ignore"]
NONFINITE_POLICIES: tuple[str, ...] = ("raise", "skip", "ignore")


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
    In every case but ``"ignore"`` parameters and state are left exactly as they were.
    """

    structural_options: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        params: Iterable[Any],
        defaults: dict[str, Any],
        *,
        nonfinite: NonFinitePolicy = "raise",
    ) -> None:
        if nonfinite not in NONFINITE_POLICIES:
            raise ValueError(
                f"nonfinite must be one of {', '.join(NONFINITE_POLICIES)}; got {nonfinite!r}"
            )
        self.nonfinite: NonFinitePolicy = nonfinite
        self.skipped_steps = 0
        self._chains: dict[tuple[Any, ...], Transform] = {}
        super().__init__(params, defaults)

    # -- what subclasses provide ---------------------------------------------------------

    def build_chain(self, options: Mapping[str, Any]) -> Transform:
        """The chain for a group whose structural options are ``options``."""
        raise NotImplementedError

    def validate_group(self, group: Mapping[str, Any]) -> None:
        """Raise ValueError naming the first invalid hyperparameter of ``group``."""

    # -- torch.optim contract ------------------------------------------------------------

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        # Validate the group as it will be, defaults filled in, before torch stores it, so an
        # invalid group leaves the optimizer unchanged.
        candidate = {**self.defaults, **{k: v for k, v in param_group.items() if k != "params"}}
        self.validate_group(candidate)
        params = param_group["params"]
        tensors = [params] if isinstance(params, Tensor) else list(params)
        for tensor in tensors:
            if isinstance(tensor, Tensor) and tensor.is_complex():
                raise ValueError("complex parameters are not supported by dltricks optimizers")
        param_group = {**param_group, "params": tensors}
        super().add_param_group(param_group)

    def chain_for(self, group: Mapping[str, Any]) -> Transform:
        """The (cached) chain for ``group``."""
        key = tuple(group[name] for name in self.structural_options)
        chain = self._chains.get(key)
        if chain is None:
            chain = self.build_chain(dict(zip(self.structural_options, key, strict=True)))
            self._chains[key] = chain
        return chain

    @staticmethod
    def group_hyper(group: Mapping[str, Any]) -> dict[str, Scalar]:
        """The numeric hyperparameters of ``group`` by name; ``betas`` become beta1, beta2."""
        hyper: dict[str, Scalar] = {}
        for name, value in group.items():
            if name == "betas":
                hyper["beta1"], hyper["beta2"] = value
            elif isinstance(value, Tensor) and value.numel() == 1:
                hyper[name] = value.item()
            elif isinstance(value, int | float) and not isinstance(value, bool):
                hyper[name] = value
        return hyper

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Take one optimization step; ``closure`` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        work = self._collect()
        if self.nonfinite != "ignore" and not self._all_finite(work):
            if self.nonfinite == "raise":
                raise NonFiniteGradientError(self._describe_nonfinite(work))
            self.skipped_steps += 1
            return loss
        for group, params in work:
            self._step_group(group, params)
        return loss

    # -- internals -----------------------------------------------------------------------

    def _collect(self) -> list[tuple[dict[str, Any], list[Tensor]]]:
        work = []
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            for p in params:
                if p.grad is not None and p.grad.is_sparse:
                    raise ValueError("sparse gradients are not supported by dltricks optimizers")
            if params:
                work.append((group, params))
        return work

    @staticmethod
    def _all_finite(work: list[tuple[dict[str, Any], list[Tensor]]]) -> bool:
        grads = [p.grad for _, params in work for p in params if p.grad is not None]
        if not grads:
            return True
        # One reduction per tensor and a single host sync for the whole step.
        flags = torch.stack([torch.isfinite(g).all().to(torch.device("cpu")) for g in grads])
        return bool(flags.all())

    def _describe_nonfinite(self, work: list[tuple[dict[str, Any], list[Tensor]]]) -> str:
        for group_index, group in enumerate(self.param_groups):
            for param_index, p in enumerate(group["params"]):
                if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
                    return (
                        f"non-finite gradient in param group {group_index}, parameter "
                        f"{param_index} (shape {tuple(p.shape)}); the step was not taken. "
                        "Pass nonfinite='skip' to skip such steps, or 'ignore' for torch's "
                        "behaviour"
                    )
        return "non-finite gradient; the step was not taken"

    def _step_group(self, group: dict[str, Any], params: list[Tensor]) -> None:
        chain = self.chain_for(group)
        hyper = self.group_hyper(group)
        for p in params:
            grad = p.grad
            assert grad is not None
            state = self.state[p]
            if not state:
                state.update(chain.init(p, hyper))
                state["step"] = torch.zeros((), dtype=torch.float32)
            step = float(state["step"]) + 1.0
            update, changed = chain.update(grad, state, p, {**hyper, "step": step})
            p.add_(update)
            state.update(changed)
            state["step"] += 1
