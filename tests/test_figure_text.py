"""A saved figure says what it shows: title, panels, axes and legend, in its PNG."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from PIL import Image

from dltricks.figure_text import describe_figure, read_description
from dltricks.lab.figures import save_figure


def _figure() -> Figure:
    fig = Figure()
    left, right = fig.subplots(1, 2)
    left.plot([0, 1], [1, 0], label="Adam")
    left.plot([0, 1], [1, 0.5], label="SGD")
    left.legend()
    left.set(title="logistic", xlabel="epoch", ylabel="training loss")
    right.set(title="mlp", xlabel="epoch", ylabel="test accuracy")
    fig.suptitle("Training loss at the tuned rate")
    return fig


def test_the_description_names_title_panels_axes_and_lines() -> None:
    text = describe_figure(_figure())
    assert text.startswith("Training loss at the tuned rate. 2 panels: ")
    assert "(1) logistic: training loss against epoch; shows Adam, SGD" in text
    assert "(2) mlp: test accuracy against epoch" in text


def test_a_saved_png_carries_its_description(tmp_path: Path) -> None:
    path = save_figure(_figure(), tmp_path / "f.png")
    with Image.open(path) as image:
        stored = image.text["Description"]
    assert stored == read_description(path)
    assert "logistic" in stored
    assert read_description(tmp_path / "missing.png") is None
