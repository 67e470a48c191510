"""Per-layer activation statistics: scale, saturation and dead units."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from dltricks.diagnose.layers import (
    ACTIVATION_TYPES,
    ActivationKind,
    activation_kind,
    find_layers,
)
from dltricks.diagnose.monitor import DEFAULT_EVERY, Monitor, RowBuffer, check_every
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
# What a layer's hook computes (see ActivationStats._on_forward).
_OTHER, _UNIT_SUMS, _UNIT_MAXIMA, _SIGMOID, _TANH = range(5)
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


@dataclass
class _Plan:
    """A layer's hook work for outputs of one shape and dtype, decided once."""

    shape: torch.Size
    dtype: torch.dtype
    cast: bool  # reduce in float32 (half-precision sums overflow or lose the count)
    op: int
    rows: _LayerRows
    numel: int
    unsqueeze: bool  # a 1-D output is one sample: give it a batch dim for the units
    dims: tuple[int, ...]  # reduced to one value per unit
    n_units: int
    threshold: float  # |y| >= threshold is saturated (sigmoid after its -1/2 shift)
    clamp: bool


class ActivationStats(Monitor):
    """Mean, std, saturation and dead units of each activation module's output, per forward.

    Records one step in ``every`` (default 10; ``every=1`` records every step, at the cost
    measured in benchmarks/results/diagnose_overhead.md): forward passes 0, 10, 20, ...
    counted while attached, each record carrying its ``step``.

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
    mode are counted and recorded unless ``training_only=False``. ``step`` counts a layer's
    calls: with one forward pass per training step it is the same step for every layer, and
    the same as ``GradientNorms``' and ``UpdateRatios``' ``step`` when they are attached
    together; extra training-mode forwards (a probe batch between steps) count too, and an
    activation module called several times per forward counts each call. The hooks write
    their reductions into preallocated tensors, converted in batches when read (or every
    128 recorded forwards), so they never force a device sync.

    Example::

        with ActivationStats(model) as stats, torch.no_grad():
            model(x)  # the first forward is recorded (step 0)
        stats.per_layer("saturated")  # layer name -> fraction of saturated outputs
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        layer_types: tuple[type[nn.Module], ...] = ACTIVATION_TYPES,
        every: int = DEFAULT_EVERY,
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
        self._plans: list[_Plan | None] = [None] * len(self.layers)
        self._rows: list[_LayerRows | None] = [None] * len(self.layers)
        # (layer index, row) of each recorded forward not yet converted, in record order.
        # As a flat list (index, row, index, row, ...): ints appended in a hook allocate no
        # objects that the garbage collector tracks, while a tuple per call would make it run
        # more often.
        self._order: list[int] = []
        self._done: list[dict[str, Any]] = []

    def _register(self) -> list[RemovableHandle]:
        return [
            module.register_forward_hook(functools.partial(self._on_forward, index))
            for index, (_, module) in enumerate(self.layers)
        ]

    def _on_forward(self, index: int, module: nn.Module, inputs: Any, output: Any) -> None:
        # Runs on every forward of every watched layer. In the middle of a training step each
        # tensor op costs 5-10 us on CPU (cold caches), so the hook uses as few as the kind
        # allows: 2 reductions for ReLU, 3 for other rectifiers, 3 reductions and one
        # elementwise op for tanh, two for sigmoid (its shift and the saturation count),
        # about 26 us per 128x256 output; everything decided from the output's shape
        # and dtype is cached in a per-layer plan, so the Python around the ops stays small.
        if self.training_only and not module.training:
            return
        step = self._calls[index]
        self._calls[index] = step + 1
        if step % self.every or not isinstance(output, Tensor):
            return
        plan = self._plans[index]
        if plan is None or plan.shape != output.shape or plan.dtype is not output.dtype:
            plan = self._plan(index, output)
            if plan is None:
                return
        rows = plan.rows
        row = len(rows.steps)
        if row == _ROWS:
            self._flush()  # empties every layer's rows for reuse
            row = 0
        y = output.detach()
        if plan.cast:
            y = y.float()
        op = plan.op
        if op == _SIGMOID:
            # Shift sigmoid outputs to [-1/2, 1/2]: the sums then cancel less when the mean
            # is near 1/2 (float32 sums), and saturation becomes one symmetric threshold.
            y = y - 0.5
        try:
            torch.linalg.vector_norm(y, out=rows.norm_at[row])
        except RuntimeError:
            # Another device than the rows' (caught here, not checked per call: comparing
            # devices costs about a microsecond per hook).
            self._flush()
            rows = plan.rows = self._rows[index] = _LayerRows(y, plan.n_units)
            row = 0
            torch.linalg.vector_norm(y, out=rows.norm_at[row])
        order = self._order
        order.append(index)
        order.append(row)
        rows.steps.append(step)
        rows.numels.append(plan.numel)
        if op == _UNIT_SUMS:
            # Outputs are never negative: a unit is dead exactly when its sum over the batch
            # is 0, and the total is the sum of the unit sums (one kernel for both).
            units = y.unsqueeze(0) if plan.unsqueeze else y
            torch.sum(units, dim=plan.dims, out=rows.units_at[row])
            return
        if op == _UNIT_MAXIMA:
            units = y.unsqueeze(0) if plan.unsqueeze else y
            torch.amax(units, dim=plan.dims, out=rows.units_at[row])
        torch.sum(y, dim=None, out=rows.total_at[row])
        if op in (_SIGMOID, _TANH):
            # |y| / t with t the saturation threshold is below 2 for every possible output,
            # so truncating it gives +-1 exactly on saturated outputs (|y| >= t) and 0 on
            # the others; its squared norm counts them. One elementwise op: on CPU a
            # comparison to bool plus a count costs several times more.
            if op == _SIGMOID:
                counted = y.div_(plan.threshold, rounding_mode="trunc")  # y is our own copy
            else:
                counted = torch.div(y, plan.threshold, rounding_mode="trunc")
            if plan.clamp:
                counted.clamp_(-1.0, 1.0)
            torch.linalg.vector_norm(counted, out=rows.saturated_at[row])

    def _plan(self, index: int, output: Tensor) -> _Plan | None:
        """What the hook does with outputs of this shape and dtype (``None``: nothing)."""
        if not output.is_floating_point() or output.numel() == 0:
            return None
        like = output if output.dtype in _EXACT_DTYPES else output.float()
        kind = self.kinds[index]
        op = _OTHER
        if kind == "sigmoid":
            op = _SIGMOID
        elif kind == "tanh":
            op = _TANH
        elif self._has_units[index]:
            op = _UNIT_SUMS if self._unit_sums[index] else _UNIT_MAXIMA
        unit_shape = tuple(output.shape) if output.ndim >= 2 else (1, *output.shape)
        unit_dim = self.unit_dim % len(unit_shape)
        dims = tuple(d for d in range(len(unit_shape)) if d != unit_dim)
        n_units = unit_shape[unit_dim] if op in (_UNIT_SUMS, _UNIT_MAXIMA) else 0
        rows = self._rows[index]
        if rows is None or not rows.fits(like, n_units):
            self._flush()  # empties full buffers for reuse
            if rows is None or not rows.fits(like, n_units):
                rows = self._rows[index] = _LayerRows(like, n_units)
        # Sigmoid outputs are shifted by -1/2 first, so both kinds use |y| >= bound - eps.
        threshold = (0.5 if op == _SIGMOID else 1.0) - self.saturation_eps
        plan = _Plan(
            shape=output.shape,
            dtype=output.dtype,
            cast=output.dtype not in _EXACT_DTYPES,
            op=op,
            rows=rows,
            numel=output.numel(),
            unsqueeze=output.ndim < 2,
            dims=dims,
            n_units=n_units,
            threshold=threshold,
            # |y| / threshold reaches 2 (a count of 4 per output) when the threshold is at
            # most half the bound: only for sigmoid with saturation_eps >= 1/4.
            clamp=op in (_SIGMOID, _TANH) and 2 * threshold <= (0.5 if op == _SIGMOID else 1.0),
        )
        self._plans[index] = plan
        return plan

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
        order = self._order
        for index, row in zip(order[::2], order[1::2], strict=True):
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
                count = values[_SATURATED] ** 2
                # NaN outputs (a diverged network) give a NaN count: report NaN, not a crash.
                saturated = round(count) / numel if math.isfinite(count) else math.nan
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
