"""Per-layer gradient norms: where the back-propagated signal shrinks or explodes."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from dltricks.diagnose.layers import WEIGHT_LAYER_TYPES, find_layers, trainable_params
from dltricks.diagnose.monitor import DEFAULT_EVERY, Monitor, RowBuffer, check_every
from dltricks.diagnose.table import format_table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["GradientNorms"]

# Backward passes whose norms stay on the tensor side before one batched conversion: no
# hook or callback forces a device sync, and the rows are allocated once.
_ROWS = 256
_EXACT_DTYPES = (torch.float32, torch.float64)


def _step_then_index(record: tuple[int, int, float]) -> tuple[int, int]:
    return record[1], record[0]


class GradientNorms(Monitor):
    """The L2 norm ``||dL/dW||`` of each parameter of each watched layer, per backward pass.

    Records one step in ``every`` (default 10; ``every=1`` records every step, at the cost
    measured in benchmarks/results/diagnose_overhead.md): backward passes 0, 10, 20, ...
    counted while attached, each record carrying its ``step``.

    Watches ``layer_types`` (default: Linear, Bilinear, Conv and ConvTranspose layers;
    ``None`` = every module that owns parameters, e.g. to include PReLU or LayerNorm). A hook
    on each parameter fires when its ``.grad`` has been accumulated, so the norm is that of
    ``.grad`` after each ``backward()`` (with gradient accumulation: the running sum), before
    any clipping or optimizer step. ``step`` counts a parameter's backward passes while
    attached: when every watched parameter gets a gradient in every backward pass (the usual
    training loop) it is the same backward pass for all of them, and the same training step
    as ``ActivationStats``' and ``UpdateRatios``' ``step`` when they are attached together; a
    parameter left out of some passes counts only the passes it took part in. Norms are
    written into preallocated rows, one per backward pass, and converted in batches when
    read (or every 256 recorded passes), so a hook never forces a device sync.

    Read: ``per_layer()`` (layer -> weight grad norm at the last step), ``vanishing_ratio()``
    (first layer / last layer: << 1 means vanishing, >> 1 exploding), ``records()``,
    ``to_table()``, ``plot()``.

    Example::

        with GradientNorms(model) as grads:
            loss_fn(model(x), y).backward()  # the first pass is recorded
        grads.per_layer()  # {"net.0": 3.1e-06, ..., "net.20": 0.21}
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        layer_types: tuple[type[nn.Module], ...] | None = WEIGHT_LAYER_TYPES,
        every: int = DEFAULT_EVERY,
    ) -> None:
        super().__init__(model)
        self.every = check_every(every)
        self.layers = find_layers(model, layer_types, what="GradientNorms")
        self.params = trainable_params(model, self.layers, what="GradientNorms")
        self._calls = [0] * len(self.params)
        # One row of norms per backward pass (column = parameter index); row_keys[i] holds
        # the parameter index and step of each norm written in row i, as a flat list
        # (index, step, index, step, ...): ints appended in a hook allocate no objects that
        # the garbage collector tracks, while a tuple per call would make it run more often.
        self._rows: RowBuffer | None = None
        self._row_keys: list[list[int]] = []
        self._keys: list[int] = []  # the current row's
        self._row_views: list[Tensor] = []
        # The autograd graph task (backward pass) that the current row belongs to.
        self._task: int | None = None
        self._done: list[tuple[int, int, float]] = []

    def _register(self) -> list[RemovableHandle]:
        return [
            param.register_post_accumulate_grad_hook(functools.partial(self._on_grad, index))
            for index, (_, _, param) in enumerate(self.params)
        ]

    def _on_grad(self, index: int, param: Tensor) -> None:
        # The norm is taken here, while the freshly accumulated .grad is still in cache:
        # measured on CPU, one batched norm at the end of backward (torch._foreach_norm)
        # costs more, since by then the gradients must be read back from memory.
        step = self._calls[index]
        self._calls[index] = step + 1
        grad = param.grad
        if step % self.every or grad is None:
            return
        task = torch._C._current_graph_task_id()
        if task != self._task or task < 0:
            self._start_row(grad)
            self._task = task
        keys = self._keys
        keys.append(index)
        keys.append(step)
        out = self._row_views[index]
        # No torch.no_grad() here: backward runs with grad mode off already, and entering
        # the context costs about as much as the norm's dispatch.
        if grad.dtype is out.dtype:
            try:
                torch.linalg.vector_norm(grad, out=out)
                return
            except RuntimeError:  # another device than the row's (a model spread out)
                pass
        # Half-precision squares overflow long before the norm: accumulate in float32.
        # Other dtypes or devices than the row's (rare) go through a copy.
        exact = grad.dtype in _EXACT_DTYPES
        out.copy_(torch.linalg.vector_norm(grad.detach(), dtype=None if exact else torch.float32))

    def _start_row(self, like: Tensor) -> None:
        """A new backward pass: the next row of norms, as one view per parameter."""
        like = like if like.dtype in _EXACT_DTYPES else like.float()
        width = len(self.params)
        rows = self._rows
        if rows is None or not rows.fits(like, width):
            self._flush()  # empties a full buffer for reuse
            if rows is None or not rows.fits(like, width):
                rows = self._rows = RowBuffer(_ROWS, width, like)
        self._row_views = list(rows.next_row().unbind())
        self._keys = []
        self._row_keys.append(self._keys)

    def _flush(self) -> None:
        if self._rows is None or not self._row_keys:
            return
        new = [
            (index, step, values[index])
            for keys, values in zip(self._row_keys, self._rows.take(), strict=True)
            for index, step in zip(keys[::2], keys[1::2], strict=True)
        ]
        self._row_keys = []
        # Keep reads in (step, layer order) even when parameters skip backward passes and
        # their step counters drift apart. Only the new records are sorted: sorting the
        # whole history at every read made each read cost (and allocate) in proportion to
        # everything recorded so far.
        new.sort(key=_step_then_index)
        done = self._done
        if done and new and _step_then_index(new[0]) < _step_then_index(done[-1]):
            done.extend(new)
            done.sort(key=_step_then_index)  # a parameter's late step: rare
        else:
            done.extend(new)

    def clear(self) -> None:
        if self._rows is not None:
            self._rows.used = 0
        self._row_keys = []
        self._task = None
        self._done = []

    def records(self) -> list[dict[str, Any]]:
        """``{"step", "layer", "param", "shape", "grad_norm"}`` per recorded parameter-step."""
        self._flush()
        shapes = [tuple(param.shape) for _, _, param in self.params]
        out = []
        for index, step, value in self._done:
            layer, name, _ = self.params[index]
            out.append(
                {
                    "step": step,
                    "layer": layer,
                    "param": name,
                    "shape": shapes[index],
                    "grad_norm": value,
                }
            )
        return out

    @property
    def steps(self) -> list[int]:
        """The recorded steps, ascending."""
        self._flush()
        return sorted({step for _, step, _ in self._done})

    def per_layer(self, param: str = "weight", step: int | None = None) -> dict[str, float]:
        """Layer name -> gradient norm of its ``param`` at ``step`` (default: the last)."""
        self._flush()
        step = self._resolve_step(step)
        return {
            self.params[index][0]: value
            for index, s, value in self._done
            if s == step and self.params[index][1] == param
        }

    def history(self, layer: str, param: str = "weight") -> list[tuple[int, float]]:
        """``(step, grad_norm)`` for one layer's parameter over all recorded steps."""
        self._flush()
        return [
            (step, value)
            for index, step, value in self._done
            if self.params[index][0] == layer and self.params[index][1] == param
        ]

    def vanishing_ratio(self, param: str = "weight", step: int | None = None) -> float:
        """First watched layer's gradient norm over the last one's (input side / output side).

        About 1 when gradients flow; orders of magnitude below 1 when they vanish toward the
        input (deep sigmoid nets), above 1 when they explode.
        """
        norms = list(self.per_layer(param, step).values())
        if len(norms) < 2:
            raise ValueError("vanishing_ratio needs gradients of at least two layers")
        return norms[0] / norms[-1] if norms[-1] != 0.0 else float("inf")

    def _resolve_step(self, step: int | None) -> int:
        steps = {s for _, s, _ in self._done}
        if not steps:
            raise ValueError("GradientNorms has no records yet: attach it and run backward() first")
        if step is None:
            return max(steps)
        if step not in steps:
            raise ValueError(f"step {step} was not recorded; recorded: {sorted(steps)[:10]}...")
        return step

    def to_table(self, step: int | None = None) -> str:
        if not self._done and not self._row_keys:
            return "GradientNorms: no records"
        self._flush()
        step = self._resolve_step(step)
        rows = [r for r in self.records() if r["step"] == step]
        title = f"gradient norms at step {step}"
        columns = [("layer", "layer"), ("param", "param"), ("shape", "shape")]
        columns.append(("grad_norm", "grad norm"))
        return title + "\n" + format_table(rows, columns)

    def plot(self, step: int | None = None, param: str = "weight") -> Figure:
        """Bar chart of per-layer gradient norms at ``step`` on a log scale."""
        from dltricks.diagnose.plot import bar_figure

        norms = self.per_layer(param, self._resolve_step(step) if step is not None else None)
        return bar_figure(
            list(norms),
            {f"||grad {param}||": list(norms.values())},
            log=True,
            title="gradient norm per layer (input side left)",
        )
