"""The CLI's progress bar over units of work (rich), or nothing when silenced."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dltricks.lab.context import ProgressSink, SilentProgress


class RichProgress:
    """A :class:`~dltricks.lab.context.ProgressSink` drawn with rich on stderr."""

    def __init__(self, progress: Progress, title: str) -> None:
        self._progress = progress
        self._task = progress.add_task(title, total=None)

    def plan(self, total: int) -> None:
        self._progress.update(self._task, total=total)

    def advance(self, label: str) -> None:
        self._progress.update(self._task, advance=1, description=label[:60])


@contextlib.contextmanager
def progress_bar(*, enabled: bool, title: str) -> Iterator[ProgressSink]:
    """A progress sink for the duration of a command."""
    if not enabled:
        yield SilentProgress()
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    # stderr: stdout carries the command's results.
    with Progress(*columns, transient=True, console=Console(stderr=True)) as progress:
        yield RichProgress(progress, title)
