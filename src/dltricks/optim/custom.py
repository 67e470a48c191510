"""Turn any chain of blocks into a ``torch.optim.Optimizer``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from dltricks.optim.adapter import ComposedOptimizer, NonFinitePolicy
from dltricks.optim.base import Transform
from dltricks.optim.fast.structure import structural_key
from dltricks.optim.validation import check_non_negative


class ChainOptimizer(ComposedOptimizer):
    """An optimizer made from a user's chain.

    ``hyperparameters`` become the defaults of every param group; blocks that name a
    hyperparameter (``scale_by_learning_rate("lr")``) read it from the group at each step, so
    schedulers and per-group values work as in any torch optimizer. Example, RMSProp with
    Nesterov momentum::

        from dltricks.optim import ChainOptimizer, chain, identity, ratio
        from dltricks.optim import blocks as b

        rmsprop_nesterov = chain(
            ratio(identity(), chain(b.ema_of_squares(0.99), b.root(1e-8))),
            b.trace(0.9, 0.0, nesterov=True),
            b.scale_by_learning_rate(),
        )
        optimizer = ChainOptimizer(model.parameters(), rmsprop_nesterov, lr=1e-3)

    The fast path fuses a chain only when every block declares itself elementwise (all of
    :mod:`dltricks.optim.blocks` do). A block of your own, made with ``stateless`` or
    ``Transform``, declares nothing by default and so runs per tensor on the eager path,
    whatever it computes (a per-row norm, an orthogonalisation); pass ``elementwise=True``
    only if each element of its output depends on the same element of its inputs alone.
    """

    chain_is_fixed = False

    def __init__(
        self,
        params: Iterable[Any],
        transform: Transform,
        *,
        nonfinite: NonFinitePolicy = "raise",
        fast: bool | None = None,
        **hyperparameters: Any,
    ) -> None:
        if not isinstance(transform, Transform):
            raise ValueError(
                f"transform must be a dltricks.optim.Transform, got {type(transform).__name__}"
            )
        self.transform = transform
        super().__init__(params, dict(hyperparameters), nonfinite=nonfinite, fast=fast)

    def validate_group(self, group: Mapping[str, Any]) -> None:
        if "lr" in group:
            check_non_negative("lr", group["lr"])

    def build_chain(self, options: Mapping[str, Any]) -> Transform:
        return self.transform

    def fast_key(self, group: Mapping[str, Any]) -> Any:
        # The chain's structure: optimizers built from equal chains (one chain, or the same
        # code run again) share one compiled kernel. Where the structure cannot be read
        # (the chain captured a tensor or an object of the user's), the Transform itself.
        key = self.__dict__.get("_structure")
        if key is None:
            key = structural_key(self.transform) or ("transform", self.transform)
            self._structure = key
        return key
