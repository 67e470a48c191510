"""Alpha-dropout: dropout that keeps SELU's mean 0 / variance 1 (Klambauer et al. 2017)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dltricks.nn.functional import alpha_dropout

__all__ = ["AlphaDropout"]


class AlphaDropout(nn.Module):
    """Drop each element with probability ``p``, setting it to ``alpha' = -lambda alpha``.

    Then applies ``y = a x' + b`` with ``a = (q + alpha'^2 q (1 - q))^(-1/2)``,
    ``b = -a (1 - q) alpha'``, ``q = 1 - p``, so inputs with mean 0 / variance 1 keep them.
    Plain dropout sets units to 0 and rescales by ``1/q``, which raises the variance and
    breaks SELU's self-normalisation. Identity in eval mode. ``generator`` makes the masks
    reproducible independently of the global RNG.
    """

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise ValueError(f"AlphaDropout: p must be a float in [0, 1), got {p!r}")
        self.p = float(p)
        self.generator = generator

    def forward(self, input: Tensor) -> Tensor:
        return alpha_dropout(input, self.p, self.training, self.generator)

    def extra_repr(self) -> str:
        return f"p={self.p}"
