"""Figures for the surfaces: contours with trajectories, loss curves, a GIF, the theory check.

Every function takes the output path, writes the figure there (Agg backend, no display) and
returns the path. Captions carry the tuning protocol so a figure can be read on its own.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm, to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle
from PIL import Image

from dltricks.data.safe_io import atomic_write_from
from dltricks.figure_text import DESCRIPTION_KEY, describe_figure
from dltricks.palette import OPTIMIZER_COLOURS, optimizer_colour
from dltricks.surfaces.functions import Surface
from dltricks.surfaces.runner import Trajectory
from dltricks.surfaces.theory import RateCheck, theoretical_rate

__all__ = [
    "LabelledTrajectory",
    "animate_trajectories",
    "plot_contour",
    "plot_loss_curves",
    "plot_theory",
]

_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def _colour(label: str, i: int) -> str:
    """An optimizer's colour of every figure (the label starts with its name, as "Adam (lr
    0.1)"); other runs (gradient descent against momentum...) take the i-th of ``_COLORS``."""
    name = label.split(" (")[0].split(",")[0].strip() or "?"
    return optimizer_colour(name, default=_COLORS[i % len(_COLORS)])


@dataclass(frozen=True)
class LabelledTrajectory:
    """A trajectory with the legend label it is drawn under."""

    label: str
    trajectory: Trajectory


def _grid(surface: Surface, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    (x0, x1), (y0, y1) = surface.window
    xs = np.linspace(x0, x1, n)
    ys = np.linspace(y0, y1, n)
    gx, gy = np.meshgrid(xs, ys)
    xy = torch.from_numpy(np.stack((gx, gy), axis=-1))
    with torch.no_grad():
        z = surface.fn(xy).numpy()
    return gx, gy, z


def _draw_surface(ax: Axes, surface: Surface, n: int = 220, *, colorbar: bool = True) -> None:
    """Filled contours, log-spaced in f - f_min where values span decades, and landmarks."""
    gx, gy, z = _grid(surface, n)
    if surface.log_levels:
        # Shift by the grid's minimum (plus a floor seven decades below the range) so the
        # optimum's neighbourhood gets levels too and log(0) never happens.
        floor = 1e-7 * float(z.max() - z.min()) + 1e-300
        shifted = z - z.min() + floor
        levels = np.geomspace(10 * floor, float(shifted.max()), 25)
        # extend="both": values below the lowest level (the optimum's neighbourhood) are
        # filled with the darkest shade instead of being left blank.
        cs = ax.contourf(
            gx, gy, shifted, levels=levels, norm=LogNorm(), cmap="Greys_r", extend="both"
        )
        ax.contour(gx, gy, shifted, levels=levels, colors="white", linewidths=0.3, alpha=0.5)
        label = "f − min f (log levels)"
    else:
        cs = ax.contourf(gx, gy, z, levels=25, cmap="Greys_r")
        ax.contour(gx, gy, z, levels=25, colors="white", linewidths=0.3, alpha=0.5)
        label = "f"
    if colorbar:
        ax.figure.colorbar(cs, ax=ax, label=label, format="%.2g", shrink=0.85)
    local = [m.point for m in surface.minima if m.kind == "local"]
    if local:
        pts = np.asarray(local)
        ax.scatter(
            pts[:, 0],
            pts[:, 1],
            marker="o",
            s=30,
            facecolors="none",
            edgecolors="gold",
            linewidths=0.8,
            zorder=4,
        )
    for m in surface.global_minima:
        ax.scatter(*m.point, marker="*", s=220, color="red", edgecolors="white", zorder=6)
    for point in surface.saddles:
        ax.scatter(*point, marker="X", s=90, color="magenta", edgecolors="white", zorder=6)
        # The neighbourhood whose exit steps_to_leave counts.
        ax.add_patch(
            Circle(point, surface.saddle_radius, fill=False, ls="--", lw=0.9, color="magenta")
        )
    (x0, x1), (y0, y1) = surface.window
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("x")
    ax.set_ylabel("y")


def _landmark_handles(surface: Surface) -> list[Line2D]:
    handles = [
        Line2D(
            [],
            [],
            marker="o",
            color="black",
            markerfacecolor="white",
            linestyle="none",
            markersize=8,
            label="start",
        )
    ]
    if surface.global_minima:
        handles.append(
            Line2D(
                [],
                [],
                marker="*",
                color="red",
                linestyle="none",
                markersize=12,
                label="global minimum",
            )
        )
    if any(m.kind == "local" for m in surface.minima):
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                color="gold",
                markerfacecolor="none",
                linestyle="none",
                markersize=6,
                label="local minimum",
            )
        )
    if surface.saddles:
        handles.append(
            Line2D(
                [],
                [],
                marker="X",
                color="magenta",
                linestyle="none",
                markersize=9,
                label="saddle point",
            )
        )
        handles.append(
            Line2D(
                [],
                [],
                color="magenta",
                linestyle="--",
                label=f"saddle neighbourhood (r = {surface.saddle_radius:g})",
            )
        )
    return handles


def _caption_below(ax: Axes, text: str, width: int = 130) -> None:
    """Wrapped caption under the axes (below the x label), left-aligned with them."""
    if text:
        ax.text(
            0.0,
            -0.13,
            textwrap.fill(text, width),
            transform=ax.transAxes,
            fontsize=7,
            va="top",
            ha="left",
        )


def _save(fig: Figure, path: Path) -> Path:
    # "tight" grows the canvas to the legend and caption outside the axes instead of clipping.
    # Atomic: an interrupted run never leaves half a PNG for the report to copy.
    try:
        atomic_write_from(
            path,
            lambda stream: fig.savefig(
                stream,
                format="png",
                dpi=110,
                bbox_inches="tight",
                pad_inches=0.15,
                metadata={DESCRIPTION_KEY: describe_figure(fig)},
            ),
        )
    finally:
        plt.close(fig)
    return path


def _start(runs: Sequence[LabelledTrajectory]) -> np.ndarray | None:
    for run in runs:
        if len(run.trajectory.points):
            return run.trajectory.points[0]
    return None


def plot_contour(
    surface: Surface,
    runs: Sequence[LabelledTrajectory],
    path: str | Path,
    *,
    title: str | None = None,
    caption: str = "",
) -> Path:
    """Contour plot of ``surface`` with every run's trajectory, start and optimum marked."""
    path = Path(path)
    fig, ax = plt.subplots(figsize=(8.0, 6.6))
    _draw_surface(ax, surface)
    for i, run in enumerate(runs):
        pts = run.trajectory.points
        ax.plot(
            pts[:, 0],
            pts[:, 1],
            "-",
            color=_colour(run.label, i),
            lw=1.6,
            marker=".",
            markersize=2.5,
            label=run.label,
            zorder=5,
        )
    start = _start(runs)
    if start is not None:
        ax.scatter(
            start[0], start[1], marker="o", s=70, color="white", edgecolors="black", zorder=7
        )
    ax.legend(
        handles=ax.get_legend_handles_labels()[0] + _landmark_handles(surface),
        loc="upper left",
        bbox_to_anchor=(1.22, 1.0),
        fontsize=8,
        framealpha=0.9,
    )
    ax.set_title(title or f"{surface.name}: f = {surface.formula}", fontsize=10)
    _caption_below(ax, caption)
    return _save(fig, path)


def plot_loss_curves(
    surface: Surface,
    runs: Sequence[LabelledTrajectory],
    path: str | Path,
    *,
    title: str | None = None,
    caption: str = "",
) -> Path:
    """Loss gap f(x_t) - f* against step t on a log axis (raw f, symlog, without a minimum)."""
    path = Path(path)
    f_star = surface.min_value
    fig, ax = plt.subplots(figsize=(8.0, 5.2))
    for i, run in enumerate(runs):
        tr = run.trajectory
        steps = np.arange(len(tr.losses))
        label = run.label + (f" (diverged at step {tr.diverged_at})" if tr.diverged else "")
        color = _colour(run.label, i)
        if f_star is None:
            ax.plot(steps, tr.losses, color=color, label=label)
        else:
            # Floor at 1e-16: a gap of exactly 0 (float64 reached the minimum) has no log.
            ax.plot(steps, np.maximum(tr.losses - f_star, 1e-16), color=color, label=label)
    if f_star is None:
        ax.set_yscale("symlog", linthresh=1e-2)
        ax.set_ylabel("f(x_t)  (symlog; no minimum exists)")
    else:
        ax.set_yscale("log")
        ax.set_ylabel("f(x_t) − f*  (log)")
    ax.set_xlabel("step t")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title or f"{surface.name}: loss against step", fontsize=10)
    _caption_below(ax, caption)
    return _save(fig, path)


def _background_image(surface: Surface, width_px: int, height_px: int) -> np.ndarray:
    """The contour plot rendered once to an RGB array (the GIF's frames reuse it)."""
    fig = plt.figure(figsize=(width_px / 100, height_px / 100), dpi=100)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    _draw_surface(ax, surface, n=150, colorbar=False)
    ax.set_axis_off()
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()  # type: ignore[attr-defined]
    plt.close(fig)
    return image


def _gif_palette() -> Image.Image:
    named = [*_COLORS, *OPTIMIZER_COLOURS.values(), "red", "magenta", "gold", "white", "black"]
    rgb = [tuple(round(255 * c) for c in to_rgb(name)) for name in named]
    greys = [(v, v, v) for v in np.linspace(0, 255, 256 - len(rgb)).round().astype(int)]
    flat = [int(c) for colour in (*rgb, *greys) for c in colour]
    palette = Image.new("P", (1, 1))
    palette.putpalette(flat)
    return palette


def animate_trajectories(
    surface: Surface,
    runs: Sequence[LabelledTrajectory],
    path: str | Path,
    *,
    frames: int = 60,
    dpi: int = 80,
    fps: int = 12,
    title: str | None = None,
) -> Path:
    """Animated GIF (written with Pillow) of the runs moving over the contour plot.

    Frames are evenly spaced in steps (at most ``frames`` of them), so the apparent speed of
    each ball is its real speed per step. The contour background is rasterised once: redrawing
    filled contours for every frame would make the GIF take seconds.
    """
    if frames < 2:
        raise ValueError(f"frames must be >= 2, got {frames}")
    path = Path(path)
    longest = max((len(r.trajectory.points) for r in runs), default=1)
    shown = np.unique(np.round(np.linspace(0, longest - 1, frames)).astype(int))
    fig = plt.figure(figsize=(8.0, 4.6), dpi=dpi)
    ax = fig.add_axes((0.09, 0.11, 0.49, 0.8))
    (x0, x1), (y0, y1) = surface.window
    ax.imshow(
        _background_image(surface, 400, 400),
        extent=(x0, x1, y0, y1),
        origin="upper",
        aspect="auto",
        interpolation="bilinear",
    )
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    lines = []
    heads = []
    for i, run in enumerate(runs):
        color = _colour(run.label, i)
        (line,) = ax.plot([], [], "-", color=color, lw=1.6, label=run.label)
        (head,) = ax.plot([], [], "o", color=color, markersize=7, markeredgecolor="white")
        lines.append(line)
        heads.append(head)
    start = _start(runs)
    if start is not None:
        ax.scatter(
            start[0], start[1], marker="o", s=50, color="white", edgecolors="black", zorder=7
        )
    ax.legend(
        handles=[*lines, *_landmark_handles(surface)],
        fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.03, 1.0),
    )
    ax.set_title(title or f"{surface.name}: f = {surface.formula}", fontsize=9)
    counter = ax.text(
        0.02,
        0.97,
        "",
        transform=ax.transAxes,
        fontsize=9,
        va="top",
        bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"},
    )
    animated = [*lines, *heads, counter]
    for artist in animated:
        artist.set_animated(True)

    # Blitting: draw the static figure (background, legend, labels) once and only the moving
    # artists per frame; a full redraw per frame spends seconds on legend text alone.
    canvas = fig.canvas
    canvas.draw()
    static = canvas.copy_from_bbox(fig.bbox)  # type: ignore[attr-defined]
    images: list[Image.Image] = []
    for t in shown:
        canvas.restore_region(static)  # type: ignore[attr-defined]
        for run, line, head in zip(runs, lines, heads, strict=True):
            pts = run.trajectory.points[: int(t) + 1]
            line.set_data(pts[:, 0], pts[:, 1])
            head.set_data(pts[-1:, 0], pts[-1:, 1])
        counter.set_text(f"step {int(t)}")
        for artist in animated:
            ax.draw_artist(artist)
        rgba = np.asarray(canvas.buffer_rgba())  # type: ignore[attr-defined]
        images.append(Image.fromarray(rgba[..., :3].copy()))
    description = "Animation, step by step. " + describe_figure(fig)
    plt.close(fig)
    # One fixed palette for every frame: the exact line and marker colours plus a grey ramp
    # for the contours. An adaptive palette merges small areas (the red optimum star) into
    # their neighbours' colours.
    frames_p = [im.quantize(palette=_gif_palette(), dither=Image.Dither.NONE) for im in images]
    atomic_write_from(
        path,
        lambda stream: frames_p[0].save(
            stream,
            format="GIF",
            save_all=True,
            append_images=frames_p[1:],
            duration=int(1000 / fps),
            loop=0,
            optimize=True,
            comment=description.encode(),
        ),
    )
    return path


def plot_theory(checks: Sequence[RateCheck], path: str | Path, *, caption: str = "") -> Path:
    """Measured against theoretical convergence rates as functions of kappa.

    Left: the rate rho itself. Right: 1 - rho on log-log axes, where gradient descent's
    2 / (kappa + 1) and the heavy ball's 2 / (sqrt kappa + 1) show as slopes -1 and -1/2.
    """
    path = Path(path)
    kappas = sorted({c.kappa for c in checks})
    dense = np.geomspace(min(kappas), max(kappas), 200)
    fig, axes = plt.subplots(1, 2, figsize=(10.0, 4.6))
    styles = {"gradient descent": "tab:blue", "heavy ball": "tab:red"}
    for method, color in styles.items():
        rows = [c for c in checks if c.method == method]
        if not rows:
            continue
        theory = np.array([theoretical_rate(method, float(k)) for k in dense])  # type: ignore[arg-type]
        ks = np.array([c.kappa for c in rows])
        measured = np.array([c.measured_rate for c in rows])
        name = "GD, α = 2/(λ₁+λₙ)" if method == "gradient descent" else "heavy ball, optimal α, β"
        for ax, transform in ((axes[0], lambda r: r), (axes[1], lambda r: 1.0 - r)):
            ax.plot(dense, transform(theory), "-", color=color, lw=1.5, label=f"{name}: theory")
            ax.plot(
                ks,
                transform(measured),
                "o",
                color=color,
                markerfacecolor="none",
                markersize=9,
                mew=1.8,
                label=f"{name}: measured",
            )
    axes[0].set_xscale("log")
    axes[0].set_ylabel("convergence rate ρ (per-step contraction)")
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("1 − ρ (log)")
    for ax in axes:
        ax.set_xlabel("condition number κ")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(
        "Goh (2017) on f = (x² + κy²)/2: theory (κ−1)/(κ+1) and (√κ−1)/(√κ+1) vs measured",
        fontsize=10,
    )
    fig.subplots_adjust(left=0.08, right=0.98, top=0.9, bottom=0.14, wspace=0.25)
    if caption:
        fig.text(0.01, 0.0, textwrap.fill(caption, 160), fontsize=7, va="top", ha="left")
    return _save(fig, path)
