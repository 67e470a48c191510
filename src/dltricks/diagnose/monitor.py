"""The attach/detach life cycle shared by every monitor."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from torch import nn
from torch.utils.hooks import RemovableHandle

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Monitor", "check_every"]

_M = TypeVar("_M", bound="Monitor")


def check_every(every: int) -> int:
    """Validate the recording period ``every`` (record one step in ``every``)."""
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be a positive integer, got {every!r}")
    return every


class Monitor(ABC):
    """Hooks into a model without changing its code.

    ``attach()`` registers the hooks, ``detach()`` removes every one of them (so a detached
    monitor costs nothing), and ``with monitor: ...`` does both around a block. Records
    survive ``detach()``; ``clear()`` drops them. Read results with ``records()`` (plain
    dicts), ``to_table()`` / ``str(monitor)`` (text) and ``plot()`` (a matplotlib Figure).
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._handles: list[RemovableHandle] = []
        self._attached = False

    @property
    def attached(self) -> bool:
        return self._attached

    def attach(self: _M) -> _M:
        if self.attached:
            raise RuntimeError(f"{type(self).__name__} is already attached")
        self._handles = self._register()
        self._attached = True
        return self

    def detach(self) -> None:
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
