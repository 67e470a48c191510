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
from dltricks.diagnose.monitor import Monitor, RowBuffer, check_every
from dltricks.diagnose.table import format_table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["ActivationStats"]

# Forwards per layer whose reductions stay on the tensor side before one batched
# conversion: hooks never force a device sync, and the rows are allocated once.
_ROWS = 128
_EXACT_DTYPES = (torch.float32, torch.float64)
# Outputs are never negative, so a unit is dead exactly when its sum over the batch is 0:
# one per-unit sum then gives both the layer mean and the dead units (one kernel, not two).
_NONNEGATIVE: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6)
# Columns of a layer's scalar rows: ||y - centre||_2, sum(y - centre), and for sigmoid/tanh
# ||sign(saturated part)||_2 = sqrt(number of saturated outputs).
_NORM, _TOTAL, _SATURATED = 0, 1, 2


class _LayerRows:
    """One layer's recorded forwards: reductions in preallocated rows, plus their keys.

    The views that the hook writes into are made once here: making a view per write costs
    about a microsecond of Python and dispatch, several times per layer and forward.
    """

    def __init__(self, like: Tensor, units: int) -> None:
        self.scalars = RowBuffer(_ROWS, 3, like)
        columns = self.scalars.data.t()
        self.norm_at = list(columns[_NORM].unbind())
        self.total_at = list(columns[_TOTAL].unbind())
        self.saturated_at = list(columns[_SATURATED].unbind())
        # Per-unit sums (non-negative kinds) or maxima (other rectifiers), one row each.
        self.units = RowBuffer(_ROWS, units, like) if units else None
        self.units_at = list(self.units.data.unbind()) if self.units is not None else []
        self.n_units = units
        self.dtype = like.dtype
        self.steps: list[int] = []
        self.numels: list[int] = []

    def fits(self, like: Tensor, units: int) -> bool:
        # The device is checked by the first write instead (see the hook).
        return len(self.steps) < _ROWS and units == self.n_units and like.dtype is self.dtype


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
    write their reductions into preallocated tensors, converted in batches when read (or
    every 128 forwards), so they never force a device sync.
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
        self._unit_sums = [isinstance(m, _NONNEGATIVE) for _, m in self.layers]
        self._has_units = [
            unit_sums or kind == "rectifier"
            for unit_sums, kind in zip(self._unit_sums, self.kinds, strict=True)
        ]
        self._calls = [0] * len(self.layers)
        # ndim -> (dims reduced to one value per unit, the unit dim)
        self._unit_dims: dict[int, tuple[tuple[int, ...], int]] = {}
        self._rows: list[_LayerRows | None] = [None] * len(self.layers)
        # (layer index, row) of each recorded forward not yet converted, in record order.
        self._order: list[tuple[int, int]] = []
        self._done: list[dict[str, Any]] = []

    def _register(self) -> list[RemovableHandle]:
        return [
            module.register_forward_hook(functools.partial(self._on_forward, index))
            for index, (_, module) in enumerate(self.layers)
        ]

    def _on_forward(self, index: int, module: nn.Module, inputs: Any, output: Any) -> None:
        # Runs on every forward of every watched layer: each tensor op here costs a few
        # microseconds of dispatch on CPU, so the hook uses as few as the kind allows
        # (2 for ReLU, 3 for other rectifiers, 5 for tanh, 6 for sigmoid).
        if self.training_only and not module.training:
            return
        step = self._calls[index]
        self._calls[index] = step + 1
        if step % self.every or not isinstance(output, Tensor):
            return
        if not output.is_floating_point() or output.numel() == 0:
            return
        y = output.detach()
        if y.dtype not in _EXACT_DTYPES:
            y = y.float()
        kind = self.kinds[index]
        if kind == "sigmoid":
            # Shift sigmoid outputs to [-1/2, 1/2]: the sums then cancel less when the mean
            # is far from 0, and saturation becomes one symmetric threshold.
            y = y - 0.5
        shaped = y
        dims: tuple[int, ...] = ()
        n_units = 0
        if self._has_units[index]:
            shaped = y if y.ndim >= 2 else y.unsqueeze(0)
            found = self._unit_dims.get(shaped.ndim)
            if found is None:
                unit_dim = self.unit_dim % shaped.ndim
                found = (tuple(d for d in range(shaped.ndim) if d != unit_dim), unit_dim)
                self._unit_dims[shaped.ndim] = found
            dims = found[0]
            n_units = shaped.shape[found[1]]
        rows = self._rows[index]
        if rows is None or not rows.fits(y, n_units):
            self._flush()  # empties full buffers for reuse
            if rows is None or not rows.fits(y, n_units):
                rows = self._rows[index] = _LayerRows(y, n_units)
        row = len(rows.steps)
        try:
            torch.linalg.vector_norm(y, out=rows.norm_at[row])
        except RuntimeError:
            # Another device than the rows' (checked here, not per call: comparing devices
            # costs about a microsecond per hook).
            self._flush()
            rows = self._rows[index] = _LayerRows(y, n_units)
            row = 0
            torch.linalg.vector_norm(y, out=rows.norm_at[row])
        self._order.append((index, row))
        rows.steps.append(step)
        rows.numels.append(y.numel())
        if n_units:
            if self._unit_sums[index]:
                torch.sum(shaped, dim=dims, out=rows.units_at[row])
                return  # the total is the sum of the unit sums
            torch.amax(shaped, dim=dims, out=rows.units_at[row])
        torch.sum(y, dim=None, out=rows.total_at[row])
        if kind in ("sigmoid", "tanh"):
            bound = 0.5 if kind == "sigmoid" else 1.0
            # hardshrink zeroes |y| <= lambda, so sign() is +-1 exactly on saturated
            # outputs and its squared norm counts them. Float ops throughout: on CPU a
            # comparison to bool plus a count costs several times more.
            shrunk = F.hardshrink(y, bound - self.saturation_eps)
            torch.linalg.vector_norm(torch.sign(shrunk), out=rows.saturated_at[row])

    def _flush(self) -> None:
        if not self._order:
            return
        # One conversion per layer for its scalars and one for its per-unit rows, instead
        # of a sync per record.
        taken: dict[int, tuple[list[list[float]], list[float] | None, list[float] | None]] = {}
        keys: dict[int, tuple[list[int], list[int]]] = {}
        for index, rows in enumerate(self._rows):
            if rows is None or not rows.steps:
                continue
            used = len(rows.steps)
            dead: list[float] | None = None
            unit_totals: list[float] | None = None
            if rows.units is not None:
                units = rows.units.data[:used]
                dead = (units <= 0).sum(dim=1, dtype=torch.float64).div(units.shape[1]).tolist()
                if self._unit_sums[index]:
                    unit_totals = units.sum(dim=1, dtype=torch.float64).tolist()
            scalars = rows.scalars.data[:used].to(torch.float64).tolist()
            taken[index] = (scalars, dead, unit_totals)
            keys[index] = (rows.steps, rows.numels)
            rows.steps, rows.numels = [], []
        for index, row in self._order:
            scalars, dead, unit_totals = taken[index]
            steps, numels = keys[index]
            values = scalars[row]
            numel = numels[row]
            kind = self.kinds[index]
            total = unit_totals[row] if unit_totals is not None else values[_TOTAL]
            mean = total / numel
            var = max(values[_NORM] * values[_NORM] / numel - mean * mean, 0.0)
            saturated: float | None = None
            if kind in ("sigmoid", "tanh"):
                # The squared norm of the signs is an integer count: rounding removes the
                # sqrt's float32 error (exact below about 2M saturated outputs).
                saturated = round(values[_SATURATED] ** 2) / numel
            self._done.append(
                {
                    "step": steps[row],
                    "layer": self.layers[index][0],
                    "kind": kind,
                    "mean": mean + (0.5 if kind == "sigmoid" else 0.0),
                    "std": math.sqrt(var),
                    "saturated": saturated,
                    "dead": dead[row] if dead is not None else None,
                }
            )
        self._order = []

    def clear(self) -> None:
        for rows in self._rows:
            if rows is not None:
                rows.steps, rows.numels = [], []
        self._order = []
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
        if not self._done and not self._order:
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
