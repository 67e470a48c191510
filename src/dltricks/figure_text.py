"""What a figure shows, in words: the alt text the report gives each figure.

The text is read from the figure itself (its title, each panel's title, axis labels and
legend entries), so it says what is drawn without any experiment writing it twice. It is stored
in the PNG (the ``Description`` text chunk, which image viewers show too) or the GIF (its
comment) by the code that saves the figure, and read back with :func:`read_description`.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = ["DESCRIPTION_KEY", "describe_figure", "read_description"]

DESCRIPTION_KEY = "Description"
MAX_CHARS = 600
MAX_ENTRIES = 12


def _clean(text: str) -> str:
    return " ".join(text.split())


def _entries(ax: Axes) -> list[str]:
    legend = ax.get_legend()
    if legend is not None:
        labels = [_clean(t.get_text()) for t in legend.get_texts()]
    else:
        labels = [_clean(str(h.get_label())) for h in ax.get_lines() + ax.collections]
    labels = [x for x in dict.fromkeys(labels) if x and not x.startswith("_")]
    if len(labels) > MAX_ENTRIES:
        labels = [*labels[:MAX_ENTRIES], f"and {len(labels) - MAX_ENTRIES} more"]
    return labels


def _panel(ax: Axes) -> str:
    title, x, y = (_clean(t) for t in (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()))
    text = f"{title}: " if title else ""
    if y and x:
        text += f"{y} against {x}"
    elif y or x:
        text += y or x
    entries = _entries(ax)
    if entries:
        text += ("; " if text and not text.endswith(": ") else "") + "shows " + ", ".join(entries)
    return text.strip().rstrip(":")


def describe_figure(fig: Figure) -> str:
    """One or a few sentences naming the figure's title, panels, axes and legend entries."""
    panels = [a for a in fig.axes if a.get_label() != "<colorbar>" and a.get_visible()]
    suptitle = _clean(fig.get_suptitle())
    parts = [suptitle] if suptitle else []
    described = [p for p in (_panel(a) for a in panels) if p]
    if len(described) == 1:
        parts.append(described[0])
    elif described:
        parts.append(
            f"{len(described)} panels: "
            + " | ".join(f"({i}) {p}" for i, p in enumerate(described, 1))
        )
    text = ". ".join(parts) or "a figure without titles or labels"
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 3].rstrip() + "..."


def read_description(path: str | Path) -> str | None:
    """The description stored in the image at ``path`` (a PNG's ``Description`` text, a GIF's
    comment); None if it has none or is unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            text = getattr(image, "text", {}).get(DESCRIPTION_KEY) or image.info.get("comment")
    except (OSError, ValueError):
        return None
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return str(text) if text else None
