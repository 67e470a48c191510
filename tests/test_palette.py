"""One colour per optimizer and activation, whatever the spelling; stable for unknown names."""

from __future__ import annotations

import pytest
from matplotlib.colors import to_rgb

from dltricks.palette import (
    ACTIVATION_COLOURS,
    OPTIMIZER_COLOURS,
    activation_colour,
    optimizer_colour,
)


def test_spellings_share_a_colour() -> None:
    assert (
        optimizer_colour("RMSprop") == optimizer_colour("RMSProp") == OPTIMIZER_COLOURS["RMSProp"]
    )
    assert activation_colour("Leaky-ReLU") == activation_colour("leaky_relu")


def test_the_lecture_four_have_distinct_colours() -> None:
    four = [optimizer_colour(n) for n in ("AdaGrad", "RMSProp", "Momentum", "Adam")]
    assert len(set(four)) == 4
    for colour in (*OPTIMIZER_COLOURS.values(), *ACTIVATION_COLOURS.values()):
        to_rgb(colour)  # matplotlib reads every colour


def test_an_unknown_name_keeps_one_colour_and_a_default_wins_over_the_fallback() -> None:
    assert optimizer_colour("Sophia") == optimizer_colour("sophia")
    assert optimizer_colour("gradient descent", default="tab:blue") == "tab:blue"
    assert optimizer_colour("Adam", default="tab:blue") == OPTIMIZER_COLOURS["Adam"]
    with pytest.raises(ValueError, match="non-empty name"):
        activation_colour("")
