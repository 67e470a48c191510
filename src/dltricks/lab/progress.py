"""The CLI's progress bar over units of work (rich), or nothing when silenced."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dltricks.lab.context import ProgressSink, SilentProgress


def stderr_progress(*, transient: bool) -> Progress:
    """The commands' rich progress display: description, bar, done/total, elapsed time.

    On stderr, because stdout carries each command's results.
    """
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    return Progress(*columns, transient=transient, console=Console(stderr=True))


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
    with stderr_progress(transient=True) as progress:
        yield RichProgress(progress, title)


class RichReportProgress:
    """Experiments done out of planned, and which are still running."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task = progress.add_task("report", total=None)
        self._running: list[str] = []

    def start(self, names: Sequence[str]) -> None:
        self._running = list(names)
        self._progress.update(self._task, total=len(names), description=self._describe())

    def finished(self, name: str, status: str) -> None:
        if name in self._running:
            self._running.remove(name)
        self._progress.console.print(f"{name}: {status}")
        self._progress.update(self._task, advance=1, description=self._describe())

    def _describe(self) -> str:
        shown = ", ".join(self._running[:3]) + (", ..." if len(self._running) > 3 else "")
        return f"experiments left: {shown}" if shown else "writing the page"


class _SilentReport:
    def start(self, names: Sequence[str]) -> None:
        return None

    def finished(self, name: str, status: str) -> None:
        return None


@contextlib.contextmanager
def report_progress(*, enabled: bool) -> Iterator[RichReportProgress | _SilentReport]:
    """The report's overall progress display (stderr), or nothing."""
    if not enabled:
        yield _SilentReport()
        return
    with stderr_progress(transient=False) as progress:
        yield RichReportProgress(progress)
