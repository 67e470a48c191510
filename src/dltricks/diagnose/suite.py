"""Several monitors attached, read and plotted together."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

import torch
from torch import nn

from dltricks.diagnose.activations import ActivationStats
from dltricks.diagnose.gradients import GradientNorms
from dltricks.diagnose.monitor import DEFAULT_EVERY, Monitor, check_every
from dltricks.diagnose.updates import UpdateRatios

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Diagnostics"]


class Diagnostics:
    """A group of monitors with one life cycle: ``with Diagnostics(grads, acts): ...``.

    ``Diagnostics.for_model(model, optimizer)`` builds the usual set: gradient norms,
    activation statistics, and update ratios when an optimizer is given, all recording one
    step in ``every`` (default 10; ``every=1`` records every step, at the cost measured in
    benchmarks/results/diagnose_overhead.md). The members stay reachable as ``gradients``,
    ``activations`` and ``updates`` (``None`` when absent).
    """

    def __init__(self, *monitors: Monitor) -> None:
        if not monitors:
            raise ValueError("Diagnostics needs at least one monitor")
        self.monitors = monitors

    @classmethod
    def for_model(
        cls,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        every: int = DEFAULT_EVERY,
        update_every: int | None = None,
        activations: bool = True,
    ) -> Diagnostics:
        """Gradient norms, activation stats (unless ``activations=False``, e.g. for models
        that call their activations functionally) and, with ``optimizer``, update ratios.

        All of them record one step in ``every`` (default 10), so that in a training loop
        (one forward, backward and optimizer step per step) their records share the steps
        0, every, 2 * every, ...; ``every=1`` records every step. ``update_every`` sets the
        update ratios' period apart (default: ``every``): a recorded update ratio copies the
        watched weights and reads them three more times, about as much memory traffic as an
        Adam step, so ``every=1, update_every=10`` watches gradients and activations at every
        step for less.
        """
        check_every(every)
        monitors: list[Monitor] = [GradientNorms(model, every=every)]
        if activations:
            monitors.append(ActivationStats(model, every=every))
        if optimizer is not None:
            period = every if update_every is None else update_every
            monitors.append(UpdateRatios(model, optimizer, every=period))
        return cls(*monitors)

    def _find(self, kind: type[Monitor]) -> Monitor | None:
        return next((m for m in self.monitors if isinstance(m, kind)), None)

    @property
    def gradients(self) -> GradientNorms | None:
        """The gradient-norm monitor, or None if this suite has none."""
        found = self._find(GradientNorms)
        return found if isinstance(found, GradientNorms) else None

    @property
    def activations(self) -> ActivationStats | None:
        """The activation-statistics monitor, or None if this suite has none."""
        found = self._find(ActivationStats)
        return found if isinstance(found, ActivationStats) else None

    @property
    def updates(self) -> UpdateRatios | None:
        """The update-ratio monitor, or None if this suite has none."""
        found = self._find(UpdateRatios)
        return found if isinstance(found, UpdateRatios) else None

    def attach(self) -> Diagnostics:
        """Attach every monitor; returns the suite."""
        for monitor in self.monitors:
            monitor.attach()
        return self

    def detach(self) -> None:
        """Detach every monitor; their records are kept."""
        for monitor in self.monitors:
            monitor.detach()

    def __enter__(self) -> Diagnostics:
        return self.attach()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.detach()

    def to_table(self) -> str:
        """The latest step of every monitor, as text tables one after another."""
        return "\n\n".join(m.to_table() for m in self.monitors)

    def __str__(self) -> str:
        return self.to_table()

    def plots(self) -> list[Figure]:
        """One figure per monitor that has records."""
        figures = []
        for monitor in self.monitors:
            try:
                figures.append(monitor.plot())
            except ValueError:
                continue  # nothing recorded yet
        return figures
