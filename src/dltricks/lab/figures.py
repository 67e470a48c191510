"""Saving the lab's figures: one layout and resolution for every PNG."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from dltricks.data.safe_io import atomic_write_from
from dltricks.figure_text import DESCRIPTION_KEY, describe_figure


def save_figure(fig: Figure, path: Path) -> Path:
    """Lay ``fig`` out tightly and write it as a 110-dpi PNG at ``path``; returns ``path``.

    The PNG carries a description of what the figure shows (its alt text in the report, from
    :func:`dltricks.figure_text.describe_figure`). Works on a bare Figure (no pyplot): no
    backend is switched and nothing stays open. The file is written atomically (a reader or an
    interrupted run never sees half a PNG) with the user's umask.
    """
    fig.tight_layout()
    metadata = {DESCRIPTION_KEY: describe_figure(fig)}
    atomic_write_from(
        path, lambda stream: fig.savefig(stream, format="png", dpi=110, metadata=metadata)
    )
    return path
