"""The attach/detach life cycle shared by every monitor."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["DEFAULT_EVERY", "Monitor", "RowBuffer", "check_every"]

_M = TypeVar("_M", bound="Monitor")

# Record one step in 10 unless told otherwise, as training libraries' loggers do (Lightning's
# ``log_every_n_steps=50``, ``wandb.watch(log_freq=1000)``): on the lab's MLPs recording every
# step costs up to +8-16% of a training step on CPU (benchmarks/results/diagnose_overhead.md),
# one step in 10 stays within a few percent, and per-layer norms and statistics move slowly
# enough that one step in 10 follows them.
DEFAULT_EVERY = 10


def check_every(every: int) -> int:
    """Validate the recording period ``every`` (record one step in ``every``)."""
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be a positive integer, got {every!r}")
    return every


class RowBuffer:
    """Rows allocated once, that hooks write their reductions into with ``out=``.

    Why not keep each hook's small result tensors until they are read: such tensors outlive
    the step among its large activation and gradient buffers, and on CPU (glibc malloc) that
    alone was measured to add about 150 page faults and 3-5% to a training step of the lab's
    MLP. Rows allocated once leave the step's allocation pattern as it was, and reading
    them all at once costs one device sync per ``rows`` records.
    """

    def __init__(self, rows: int, width: int, like: Tensor) -> None:
        self.data = torch.empty(rows, width, dtype=like.dtype, device=like.device)
        self.used = 0

    def fits(self, like: Tensor, width: int) -> bool:
        """Whether results computed from ``like``, ``width`` per row, can go in here."""
        data = self.data
        return (
            self.used < data.shape[0]
            and data.shape[1] == width
            and data.dtype is like.dtype
            and data.device == like.device
        )

    def next_row(self) -> Tensor:
        row = self.data[self.used]
        self.used += 1
        return row

    @staticmethod
    def stack_into(values: list[Tensor] | tuple[Tensor, ...], row: Tensor) -> None:
        """``torch.stack(values, out=row)``; values on other devices (a model spread over
        devices, rare) are moved first. Other float dtypes are cast by ``stack`` itself."""
        try:
            torch.stack(values, out=row)
        except RuntimeError:
            torch.stack([v.to(row.device) for v in values], out=row)

    def take(self) -> list[list[float]]:
        """The written rows as Python floats (float64); the buffer is then empty again."""
        rows = self.data[: self.used].to(torch.float64).tolist()
        self.used = 0
        return rows


class Monitor(ABC):
    """Hooks into a model without changing its code.

    ``attach()`` registers the hooks, ``detach()`` removes every one of them (so a detached
    monitor costs nothing), and ``with monitor: ...`` does both around a block. Records
    survive ``detach()``; ``clear()`` drops them. Read results with ``records()`` (plain
    dicts), ``to_table()`` / ``str(monitor)`` (text) and ``plot()`` (a matplotlib Figure).

    Monitors that hook training record one step in ``every`` (default ``DEFAULT_EVERY`` = 10):
    of the calls made while attached, the first is step 0, and steps 0, every, 2 * every, ...
    are recorded. Each monitor counts its own calls (forwards, backwards or optimizer steps),
    and its counters keep running across ``detach()`` / ``attach()``. In a training loop that
    runs one forward, one backward and one optimizer step per step, with the monitors attached
    together, step k is the same training step for every layer and every monitor.
    """

    every: int  # the recording period: one step in ``every`` is recorded

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._handles: list[RemovableHandle] = []
        self._attached = False

    @property
    def attached(self) -> bool:
        """Whether the hooks are registered on the model now."""
        return self._attached

    def attach(self: _M) -> _M:
        """Register the hooks on the model; returns the monitor.

        Raises:
            RuntimeError: the monitor is already attached.
        """
        if self.attached:
            raise RuntimeError(f"{type(self).__name__} is already attached")
        self._handles = self._register()
        self._attached = True
        return self

    def detach(self) -> None:
        """Remove the hooks; what was recorded is kept. Safe to call when not attached."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._attached = False

    def __enter__(self: _M) -> _M:
        return self.attach()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.detach()

    def __str__(self) -> str:
        return self.to_table()

    @abstractmethod
    def _register(self) -> list[RemovableHandle]:
        """Register the hooks; return their handles."""

    @abstractmethod
    def records(self) -> list[dict[str, Any]]:
        """Everything recorded, one plain dict per (step, layer[, parameter])."""

    @abstractmethod
    def to_table(self) -> str:
        """A text table of the latest recorded step."""

    @abstractmethod
    def plot(self) -> Figure:
        """A matplotlib Figure of the per-layer values."""

    @abstractmethod
    def clear(self) -> None:
        """Forget all records (hooks stay as they are)."""
