"""Per-layer activation statistics: scale, saturation and dead units."""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F  # noqa: N812 (torch convention)
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from dltricks.diagnose.layers import (
    ACTIVATION_TYPES,
    ActivationKind,
    activation_kind,
    find_layers,
)
from dltricks.diagnose.monitor import Monitor, check_every
from dltricks.diagnose.table import format_table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["ActivationStats"]

_FLUSH_AT = 1024


class ActivationStats(Monitor):
    """Mean, std, saturation and dead units of each activation module's output, per forward.

    Watches the activation modules of ``model`` (``layer_types``, default: torch's and
    dltricks' sigmoid, tanh, ReLU family, SELU, GELU, SiLU/Swish, Mish and Maxout modules;
    activations called functionally inside ``forward`` cannot be hooked). Per recorded
    forward pass and layer:

    - ``mean``, ``std`` over every element of the output (population std);
    - ``saturated`` (sigmoid/tanh): fraction of outputs within ``saturation_eps`` of the
      bounds (0 or 1 for sigmoid, -1 or 1 for tanh), where the derivative nearly vanishes;
    - ``dead`` (ReLU family, incl. leaky/PReLU/ELU/SELU/GELU/SiLU/Mish): fraction of units
      whose output is <= 0 for every sample of the batch. Units lie along ``unit_dim``
      (features of a Linear layer's output, channels of a conv output); all other dims
      are pooled.

    Statistics that do not apply to a layer's kind are ``None``. Only forwards in training
    mode are recorded unless ``training_only=False``; ``every=N`` records one in N. The hooks
    keep reductions as tensors and convert them in batches, so they never force a sync.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        layer_types: tuple[type[nn.Module], ...] = ACTIVATION_TYPES,
        every: int = 1,
        saturation_eps: float = 0.01,
        unit_dim: int = 1,
        training_only: bool = True,
    ) -> None:
        super().__init__(model)
        self.every = check_every(every)
        if not (isinstance(saturation_eps, float) and 0.0 < saturation_eps < 0.5):
            raise ValueError(f"saturation_eps must be a float in (0, 0.5), got {saturation_eps!r}")
        self.saturation_eps = saturation_eps
        self.unit_dim = unit_dim
        self.training_only = training_only
        self.layers = find_layers(model, layer_types, what="ActivationStats")
        self.kinds: list[ActivationKind] = [activation_kind(m) for _, m in self.layers]
        self._calls = [0] * len(self.layers)
        # (layer index, step, numel, 0-d reductions, per-unit max or None)
        self._pending: list[tuple[int, int, int, list[Tensor], Tensor | None]] = []
        self._done: list[dict[str, Any]] = []

    def _register(self) -> list[RemovableHandle]:
        return [
            module.register_forward_hook(functools.partial(self._on_forward, index))
            for index, (_, module) in enumerate(self.layers)
        ]

    def _on_forward(self, index: int, module: nn.Module, inputs: Any, output: Any) -> None:
        if self.training_only and not module.training:
            return
        step = self._calls[index]
        self._calls[index] = step + 1
        if step % self.every or not isinstance(output, Tensor) or output.numel() == 0:
            return
        y = output.detach()
        if not y.is_floating_point():
            return
        if y.dtype not in (torch.float32, torch.float64):
            y = y.float()
        kind = self.kinds[index]
        unit_max: Tensor | None = None
        # Shift sigmoid outputs to [-1/2, 1/2]: the sums then cancel less when the mean is
        # far from 0, and saturation becomes one symmetric threshold.
        centre = 0.5 if kind == "sigmoid" else 0.0
        if centre:
            y = y - centre
        parts = [y.sum(), torch.linalg.vector_norm(y)]
        if kind in ("sigmoid", "tanh"):
            bound = 0.5 if kind == "sigmoid" else 1.0
            # hardshrink zeroes |y| <= lambda, so the non-zeros are the saturated outputs.
            parts.append(
                torch.count_nonzero(F.hardshrink(y, bound - self.saturation_eps)).to(y.dtype)
            )
        elif kind == "rectifier":
            units = y if y.ndim >= 2 else y.unsqueeze(0)
            dim = self.unit_dim % units.ndim
            reduce_dims = tuple(d for d in range(units.ndim) if d != dim)
            unit_max = units.amax(dim=reduce_dims)
        self._pending.append((index, step, y.numel(), parts, unit_max))
        if len(self._pending) >= _FLUSH_AT:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        # One conversion for all scalars and one reduction per layer for the unit maxima,
        # instead of a sync per record.
        flat = torch.stack([t for p in self._pending for t in p[3]]).to(torch.float64).tolist()
        dead: dict[int, float] = {}
        by_layer: dict[int, list[int]] = {}
        for pos, p in enumerate(self._pending):
            if p[4] is not None:
                by_layer.setdefault(p[0], []).append(pos)
        for positions in by_layer.values():
            maxima = torch.stack([self._pending[pos][4] for pos in positions])  # type: ignore[misc]
            fractions = (maxima <= 0).sum(dim=1).div(maxima.shape[1]).tolist()
            dead.update(zip(positions, fractions, strict=True))
        offset = 0
        for pos, (index, step, numel, parts, _) in enumerate(self._pending):
            values = flat[offset : offset + len(parts)]
            offset += len(parts)
            kind = self.kinds[index]
            mean = values[0] / numel
            var = max(values[1] * values[1] / numel - mean * mean, 0.0)
            self._done.append(
                {
                    "step": step,
                    "layer": self.layers[index][0],
                    "kind": kind,
                    "mean": mean + (0.5 if kind == "sigmoid" else 0.0),
                    "std": math.sqrt(var),
                    "saturated": values[2] / numel if len(values) > 2 else None,
                    "dead": dead.get(pos),
                }
            )
        self._pending = []

    def clear(self) -> None:
        self._pending = []
        self._done = []

    def records(self) -> list[dict[str, Any]]:
        """``{"step", "layer", "kind", "mean", "std", "saturated", "dead"}`` per layer-step."""
        self._flush()
        return [dict(r) for r in self._done]

    def per_layer(self, stat: str = "std", step: int | None = None) -> dict[str, float | None]:
        """Layer name -> ``stat`` (``mean``, ``std``, ``saturated`` or ``dead``) at ``step``."""
        if stat not in ("mean", "std", "saturated", "dead"):
            raise ValueError(f"unknown statistic {stat!r}; valid: mean, std, saturated, dead")
        return {r["layer"]: r[stat] for r in self._rows_at(step)}

    def _rows_at(self, step: int | None) -> list[dict[str, Any]]:
        self._flush()
        if not self._done:
            raise ValueError("ActivationStats has no records yet: attach it and run forward")
        step = max(r["step"] for r in self._done) if step is None else step
        rows = [r for r in self._done if r["step"] == step]
        if not rows:
            raise ValueError(f"step {step} was not recorded")
        return rows

    def to_table(self, step: int | None = None) -> str:
        if not self._done and not self._pending:
            return "ActivationStats: no records"
        rows = self._rows_at(step)
        columns = [
            ("layer", "layer"),
            ("kind", "kind"),
            ("mean", "mean"),
            ("std", "std"),
            ("saturated", "saturated"),
            ("dead", "dead units"),
        ]
        return f"activation statistics at step {rows[0]['step']}\n" + format_table(rows, columns)

    def plot(self, step: int | None = None) -> Figure:
        """Per-layer mean and std, and saturated / dead fractions (two panels)."""
        from dltricks.diagnose.plot import activation_figure

        return activation_figure(self._rows_at(step))
