"""Maxout: the max over ``k`` learned linear pieces per unit (Goodfellow et al. 2013)."""

from __future__ import annotations

import functools
import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from dltricks.nn.functional import check_k, maxout

__all__ = ["GroupMax", "Maxout", "maxout_gain"]


class GroupMax(nn.Module):
    """Maxout as an activation: ``y_j = max_{i < k} x_{j k + i}`` over groups of ``k`` features.

    Put it after a linear layer with ``k * m`` outputs to get ``m`` maxout units; the
    feature size must be divisible by ``k``. Gradient: 1 for the winning piece of each
    group, 0 for the others. With ``k = 2`` and the second piece of every unit fixed at 0,
    this is ReLU. Init: He-style with gain :func:`maxout_gain` ``(k)``.
    """

    recommended_init: ClassVar[str] = "he"

    def __init__(self, k: int = 2, dim: int = -1) -> None:
        super().__init__()
        check_k(k)
        self.k = k
        self.dim = dim

    def forward(self, input: Tensor) -> Tensor:
        return maxout(input, self.k, self.dim)

    def extra_repr(self) -> str:
        return f"k={self.k}, dim={self.dim}"


class Maxout(nn.Module):
    """A maxout layer: ``y_j = max_{i < k} (W_{j,i} x + b_{j,i})`` for ``j < out_features``.

    Holds one ``nn.Linear(in_features, k * out_features)`` (``self.linear``): rows
    ``j k .. j k + k - 1`` are the ``k`` pieces of unit ``j``. It learns any convex
    piecewise-linear activation with ``k`` pieces (Goodfellow et al. 2013). The linear layer
    is initialised He-style with gain :func:`maxout_gain` ``(k)``, which keeps the second
    moment of the output equal to the input's.
    """

    recommended_init: ClassVar[str] = "he"

    def __init__(
        self,
        in_features: int,
        out_features: int,
        k: int = 2,
        bias: bool = True,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        check_k(k)
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Maxout: {name} must be a positive integer, got {value!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.k = k
        self.linear = nn.Linear(in_features, k * out_features, bias=bias)
        std = maxout_gain(k) / math.sqrt(in_features)
        with torch.no_grad():
            self.linear.weight.normal_(0.0, std, generator=generator)
            if self.linear.bias is not None:
                self.linear.bias.zero_()

    def forward(self, input: Tensor) -> Tensor:
        return maxout(self.linear(input), self.k)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, k={self.k}"


@functools.lru_cache(maxsize=64)
def maxout_gain(k: int) -> float:
    """Gain ``1 / sqrt(E[M_k^2])`` for ``M_k`` the max of ``k`` iid ``N(0, 1)`` pieces.

    A unit's pieces see the same input through independent weight rows, so with weights
    ``N(0, gain^2 / fan_in)`` they are iid ``N(0, gain^2 Var(x))``; choosing this gain makes
    ``E[y^2]`` equal the input's second moment (He et al.'s argument, applied to the max).
    ``k = 2`` gives exactly 1 (by symmetry ``E[max^2] = E[z^2]``); ReLU's analogue gives
    ``sqrt(2)``. ``E[M_k^2] = int x^2 k phi(x) Phi(x)^(k-1) dx`` is integrated numerically.
    """
    check_k(k)
    x = torch.linspace(-12.0, 12.0, 48001, dtype=torch.float64)
    phi = torch.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    cdf = 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))
    density = k * phi * cdf ** (k - 1)
    second_moment = float(torch.trapezoid(x * x * density, x))
    return 1.0 / math.sqrt(second_moment)
