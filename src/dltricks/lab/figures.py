"""Saving the lab's figures: one layout and resolution for every PNG."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure


def save_figure(fig: Figure, path: Path) -> Path:
    """Lay ``fig`` out tightly and write it as a 110-dpi PNG at ``path``; returns ``path``.

    Works on a bare Figure (no pyplot): no backend is switched and nothing stays open.
    """
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
