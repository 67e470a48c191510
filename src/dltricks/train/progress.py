"""A per-epoch rich progress bar on stderr that costs nothing when disabled."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from dltricks.train.result import EpochRecord

__all__ = ["EpochProgress"]


class EpochProgress:
    """Context manager: ``advance(record)`` after each epoch; silent when ``enabled`` is False.

    Writes to stderr so that a program's stdout stays clean for its own output, and is
    transient: the bar disappears when training ends. Shown only on a terminal or in Jupyter,
    so logs of redirected runs stay free of bar fragments.
    """

    def __init__(self, total: int, *, completed: int = 0, enabled: bool = True) -> None:
        self._enabled = enabled
        self._progress: Progress | None = None
        self._total = total
        self._completed = completed

    def __enter__(self) -> EpochProgress:
        console = Console(stderr=True) if self._enabled else None
        if console is not None and (console.is_terminal or console.is_jupyter):
            self._progress = Progress(
                TextColumn("[bold]train[/bold]"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.description}"),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("", total=self._total, completed=self._completed)
        return self

    def advance(self, record: EpochRecord) -> None:
        if self._progress is None:
            return
        val = "" if record.val_loss is None else f" val {record.val_loss:.4f}"
        self._progress.update(
            self._task, advance=1, description=f"loss {record.train_loss:.4f}{val}"
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
