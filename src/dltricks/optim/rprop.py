"""Rprop: a step size per weight, driven by the signs of successive gradients."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from dltricks.optim.adapter import ComposedOptimizer, NonFinitePolicy
from dltricks.optim.base import Scalar, Transform
from dltricks.optim.blocks import negate, scale, scale_by_resilient_step
from dltricks.optim.combine import chain
from dltricks.optim.validation import check_non_negative

# The group's pairs, as the hyperparameters the chain reads.
_PAIRS: Mapping[str, tuple[str, str]] = {
    "etas": ("etaminus", "etaplus"),
    "step_sizes": ("step_size_min", "step_size_max"),
}
_IN_PAIR: Mapping[str, tuple[str, int]] = {
    name: (pair, index) for pair, names in _PAIRS.items() for index, name in enumerate(names)
}


class Rprop(ComposedOptimizer):
    r"""Resilient backpropagation; drop-in for ``torch.optim.Rprop``.

    Math (``eta-, eta+`` = etas, ``[s_min, s_max]`` = step_sizes)::

        s_0     = eta,  p_0 = 0                                   (step_size, prev)
        f_t     = eta+ if g_t p_{t-1} > 0;  eta- if g_t p_{t-1} < 0;  1 otherwise
        s_t     = clamp(f_t s_{t-1}, s_min, s_max)
        q_t     = 0 if g_t p_{t-1} < 0 else g_t,   p_t = q_t
        theta_t = theta_{t-1} - sign(q_t) s_t

    The learning rate is only the first step size; later changes to it (a scheduler) have no
    effect, as in torch. Full-batch only in spirit: with mini-batches the signs flip from
    noise, which is what RMSProp was made to fix. Riedmiller & Braun 1993.

    Chain: ``[negate] -> scale_by_resilient_step(etas, step_sizes) -> scale(-1)``.
    """

    structural_options = ("maximize",)
    non_negative = ("lr",)
    flags = ("maximize",)
    flag_defaults: ClassVar[Mapping[str, Any]] = {
        "foreach": None,
        "maximize": False,
        "differentiable": False,
        "capturable": False,
    }

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        etas: tuple[float, float] = (0.5, 1.2),
        step_sizes: tuple[float, float] = (1e-6, 50),
        *,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        nonfinite: NonFinitePolicy = "raise",
        fast: bool | None = None,
    ) -> None:
        defaults = {
            "lr": lr,
            "etas": tuple(etas) if isinstance(etas, list) else etas,
            "step_sizes": tuple(step_sizes) if isinstance(step_sizes, list) else step_sizes,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "capturable": capturable,
        }
        super().__init__(params, defaults, nonfinite=nonfinite, fast=fast)

    def validate_group(self, group: Mapping[str, Any]) -> None:
        check_non_negative("lr", group["lr"])
        etas = group["etas"]
        if not isinstance(etas, tuple | list) or len(etas) != 2:
            raise ValueError(f"etas must be a pair (etaminus, etaplus), got {etas!r}")
        if not 0.0 < etas[0] < 1.0 < etas[1]:
            raise ValueError(
                f"Invalid eta values: {etas[0]}, {etas[1]}: etas must satisfy "
                "0 < etaminus < 1 < etaplus"
            )
        sizes = group["step_sizes"]
        if not isinstance(sizes, tuple | list) or len(sizes) != 2:
            raise ValueError(
                f"step_sizes must be a pair (step_size_min, step_size_max), got {sizes!r}"
            )
        check_non_negative("step_sizes[0]", sizes[0])
        check_non_negative("step_sizes[1]", sizes[1])
        if sizes[0] > sizes[1]:
            raise ValueError(
                f"Invalid step_sizes value: {sizes[0]}, {sizes[1]}: step_size_min must be "
                "<= step_size_max"
            )
        super().validate_group(group)

    @staticmethod
    def group_hyper(group: Mapping[str, Any]) -> dict[str, Scalar]:
        """As :meth:`ComposedOptimizer.group_hyper`, with ``etas`` as ``etaminus, etaplus`` and
        ``step_sizes`` as ``step_size_min, step_size_max``."""
        hyper = ComposedOptimizer.group_hyper(group)
        for pair, names in _PAIRS.items():
            if pair in group:
                for name, value in zip(names, group[pair], strict=True):
                    hyper[name] = float(value)
        return hyper

    @staticmethod
    def group_value(group: Mapping[str, Any], name: str) -> Scalar:
        if name in _IN_PAIR and _IN_PAIR[name][0] in group:
            pair, index = _IN_PAIR[name]
            return float(group[pair][index])
        return ComposedOptimizer.group_value(group, name)

    def build_chain(self, options: Mapping[str, Any]) -> Transform:
        blocks = [negate()] if options["maximize"] else []
        blocks += [scale_by_resilient_step(), scale(-1.0)]
        return chain(*blocks)
