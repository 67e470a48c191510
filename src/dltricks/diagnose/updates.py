"""Update-to-weight ratios: how far one optimizer step moves each layer."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from dltricks.diagnose.layers import WEIGHT_LAYER_TYPES, find_layers, trainable_params
from dltricks.diagnose.monitor import DEFAULT_EVERY, Monitor, RowBuffer, check_every
from dltricks.diagnose.table import format_table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["UpdateRatios"]

# Recorded steps whose norms stay on the tensor side before one batched conversion.
_ROWS = 256


class UpdateRatios(Monitor):
    """``||W_after - W_before|| / ||W_before||`` per parameter of each watched layer, per step.

    With an optimizer, records one step in ``every`` (default 10; ``every=1`` records every
    step, at the cost measured in benchmarks/results/diagnose_overhead.md): optimizer steps
    0, 10, 20, ... counted while attached, each record carrying its ``step``, the same
    training steps as ``GradientNorms`` and ``ActivationStats`` at the same ``every`` when
    attached together. By hand (no optimizer) the default is every bracketed step.

    A common rule of thumb puts healthy values near 1e-3: much smaller and the layer barely
    learns, much larger and it is unstable. The monitor copies the watched parameters before
    the step (into buffers reused across steps) and compares after it.

    Two ways to use it:

    - with an optimizer: ``UpdateRatios(model, optimizer)``; ``attach()`` (or ``with``)
      registers step pre/post hooks on the optimizer, nothing else to do;
    - by hand: ``with ratios.measure(): optimizer.step()`` (or ``before_step()`` /
      ``after_step()`` around any code that changes the weights).

    ``every=N`` snapshots and records only one step in N, counting steps from the first
    (recorded steps are 0, N, 2N, ... and each record carries its ``step``). The default,
    ``every=None``, is 10 (``DEFAULT_EVERY``) with an optimizer and 1 by hand (there you
    choose the steps by bracketing them). A recorded step copies the watched weights and
    reads them three more times, about the memory traffic of an Adam step itself, which no
    rewrite of the monitor can avoid; measured on the lab's MLP (``benchmarks/
    diagnose_overhead.py``), ``every=1`` adds about 7-9% to a training step and ``every=10``
    0-2% (within the measurement's noise), while the ratio is a slowly moving rule-of-thumb
    quantity (healthy near 1e-3) that one step in 10 follows well. Pass ``every=1`` to record
    every step at that cost.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        layer_types: tuple[type[nn.Module], ...] | None = WEIGHT_LAYER_TYPES,
        every: int | None = None,
    ) -> None:
        super().__init__(model)
        self.optimizer = optimizer
        if every is None:
            every = 1 if optimizer is None else DEFAULT_EVERY
        self.every = check_every(every)
        self.layers = find_layers(model, layer_types, what="UpdateRatios")
        self.params = trainable_params(model, self.layers, what="UpdateRatios")
        self._step = 0
        self._snapshot: list[Tensor] | None = None
        self._armed = False
        # One row per recorded step: update norms, then weight norms (see RowBuffer for why
        # rows allocated once rather than a pair of small tensors per step).
        self._rows: RowBuffer | None = None
        self._row_steps: list[int] = []
        self._done: list[tuple[int, list[float], list[float]]] = []

    def _register(self) -> list[RemovableHandle]:
        if self.optimizer is None:
            # Manual mode: the caller brackets steps with before_step()/after_step().
            return []
        return [
            self.optimizer.register_step_pre_hook(lambda *_: self.before_step()),
            self.optimizer.register_step_post_hook(lambda *_: self.after_step()),
        ]

    def before_step(self) -> None:
        """Snapshot the watched parameters (if this step is recorded)."""
        self._armed = self._step % self.every == 0
        if not self._armed:
            return
        params = [p.detach() for _, _, p in self.params]
        with torch.no_grad():
            if self._snapshot is None:
                self._snapshot = [p.clone() for p in params]
            else:
                # One fused copy into buffers reused across steps.
                torch._foreach_copy_(self._snapshot, params)

    def after_step(self) -> None:
        """Compare the parameters with the snapshot and record the ratios."""
        step = self._step
        self._step += 1
        snapshot = self._snapshot
        if not self._armed or snapshot is None:
            return
        self._armed = False
        width = 2 * len(self.params)
        rows = self._rows
        if rows is None or not rows.fits(snapshot[0], width):
            self._flush()  # empties a full buffer for reuse
            if rows is None or not rows.fits(snapshot[0], width):
                rows = self._rows = RowBuffer(_ROWS, width, snapshot[0])
        row = rows.next_row()
        half = len(self.params)
        with torch.no_grad():
            RowBuffer.stack_into(torch._foreach_norm(snapshot), row[half:])
            torch._foreach_sub_(snapshot, [p.detach() for _, _, p in self.params])
            RowBuffer.stack_into(torch._foreach_norm(snapshot), row[:half])
        self._row_steps.append(step)

    @contextmanager
    def measure(self) -> Iterator[None]:
        """``with ratios.measure(): optimizer.step()`` records that step."""
        self.before_step()
        yield
        self.after_step()

    def _flush(self) -> None:
        if self._rows is None or not self._row_steps:
            return
        half = len(self.params)
        for step, values in zip(self._row_steps, self._rows.take(), strict=True):
            self._done.append((step, values[:half], values[half:]))
        self._row_steps = []

    def clear(self) -> None:
        if self._rows is not None:
            self._rows.used = 0
        self._row_steps = []
        self._done = []

    def records(self) -> list[dict[str, Any]]:
        """``{"step", "layer", "param", "update_norm", "weight_norm", "ratio"}`` rows."""
        self._flush()
        out = []
        for step, updates, weights in self._done:
            for (layer, name, _), upd, w in zip(self.params, updates, weights, strict=True):
                ratio = upd / w if w != 0.0 else float("inf")
                out.append(
                    {
                        "step": step,
                        "layer": layer,
                        "param": name,
                        "update_norm": upd,
                        "weight_norm": w,
                        "ratio": ratio,
                    }
                )
        return out

    def per_layer(self, param: str = "weight", step: int | None = None) -> dict[str, float]:
        """Layer name -> update/weight ratio of its ``param`` at ``step`` (default: last)."""
        rows = self._rows_at(step)
        return {r["layer"]: r["ratio"] for r in rows if r["param"] == param}

    def _rows_at(self, step: int | None) -> list[dict[str, Any]]:
        records = self.records()
        if not records:
            raise ValueError("UpdateRatios has no records yet: run an optimizer step first")
        step = max(r["step"] for r in records) if step is None else step
        rows = [r for r in records if r["step"] == step]
        if not rows:
            raise ValueError(f"step {step} was not recorded")
        return rows

    def to_table(self, step: int | None = None) -> str:
        if not self._done and not self._row_steps:
            return "UpdateRatios: no records"
        rows = self._rows_at(step)
        columns = [
            ("layer", "layer"),
            ("param", "param"),
            ("update_norm", "||dW||"),
            ("weight_norm", "||W||"),
            ("ratio", "||dW||/||W||"),
        ]
        return f"update/weight ratios at step {rows[0]['step']}\n" + format_table(rows, columns)

    def plot(self, step: int | None = None, param: str = "weight") -> Figure:
        """Bar chart of per-layer update/weight ratios on a log scale."""
        from dltricks.diagnose.plot import bar_figure

        ratios = self.per_layer(param, step)
        return bar_figure(
            list(ratios),
            {f"||d{param}|| / ||{param}||": list(ratios.values())},
            log=True,
            title="update-to-weight ratio per layer",
        )
