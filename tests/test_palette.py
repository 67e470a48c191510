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


def test_every_optimizer_the_lab_can_show_has_its_own_colour() -> None:
    from dltricks.lab.experiments import amsgrad, optimizers
    from dltricks.serve.optimizers import OPTIMIZERS as SERVED
    from dltricks.surfaces.tuning import default_optimizers

    shown = {
        *optimizers.OPTIMIZERS,
        *amsgrad.OPTIMIZERS,
        *SERVED,
        *default_optimizers(),
        "Muon",
        "Rprop",
        "ASGD",
    }
    for name in sorted(shown):  # a name of the table, not a hashed fallback
        assert optimizer_colour(name, default="none") != "none", name
    colours = [c.lower() for c in OPTIMIZER_COLOURS.values()]
    assert len(set(colours)) == len(colours)  # no two optimizers share a colour
