"""The sweep command's progress bar over runs (rich, on stderr), or nothing when silenced."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.progress import Progress

from dltricks.lab.progress import stderr_progress
from dltricks.sweep.run import SilentSweepProgress, SweepProgress
from dltricks.sweep.spec import RunSpec


class RichSweepProgress:
    """Runs finished out of runs to do; failed runs and retries are printed above the bar."""

    def __init__(self, progress: Progress, title: str) -> None:
        self._progress = progress
        self._title = title
        self._task = progress.add_task(title, total=None)

    def start(self, total: int, skipped: int) -> None:
        if skipped:
            self._progress.console.print(
                f"{skipped} run(s) already done in the store: skipped", soft_wrap=True
            )
        self._progress.update(self._task, total=total)

    def finished(self, spec: RunSpec, status: str, error: str | None) -> None:
        if status == "retry":
            # Final failures are listed by the command at the end; retries only show here.
            last = (error or "").strip().splitlines()[-1:] or ["(no error text)"]
            self._progress.console.print(
                f"{spec.run_id} ({spec.label()}): failed, retrying: {last[0]}", soft_wrap=True
            )
        if status != "retry":
            self._progress.update(
                self._task, advance=1, description=f"{self._title}: {spec.label()}"[:60]
            )


@contextlib.contextmanager
def sweep_progress(*, enabled: bool, title: str) -> Iterator[SweepProgress]:
    """A progress display for the duration of a sweep."""
    if not enabled:
        yield SilentSweepProgress()
        return
    with stderr_progress(transient=True) as progress:
        yield RichSweepProgress(progress, title)
