"""One colour per optimizer and per activation, the same in every figure and on every page.

Names are matched without regard to case, ``-``, ``_`` or spaces (``RMSprop`` is ``RMSProp``,
``leaky-relu`` is ``leaky_relu``). A name the tables below do not know gets a colour from
:data:`FALLBACK` chosen by a stable hash of its name, so it too keeps its colour everywhere.
The colours are Okabe-Ito and Tableau hues, distinct for colour-blind readers where possible.
"""

from __future__ import annotations

import hashlib

__all__ = [
    "ACTIVATION_COLOURS",
    "FALLBACK",
    "OPTIMIZER_COLOURS",
    "activation_colour",
    "optimizer_colour",
]

#: The lecture's four (AdaGrad, RMSProp, Momentum, Adam) in the strongest hues; their relatives
#: in lighter or related ones (Adam's family near Adam's vermilion).
OPTIMIZER_COLOURS: dict[str, str] = {
    "SGD": "#7f7f7f",
    "Momentum": "#0072b2",
    "Nesterov": "#56b4e9",
    "AdaGrad": "#009e73",
    "RMSProp": "#e69f00",
    "AdaDelta": "#bcbd22",
    "Adam": "#d55e00",
    "AMSGrad": "#cc79a7",
    "AdamW": "#8c564b",
    "Adamax": "#f0a07c",
    "NAdam": "#9e3d00",
    "Lion": "#6a3d9a",
    # Adam's descendants: reds and pinks apart from Adam's own.
    "RAdam": "#d62728",
    "AdaBelief": "#e7298a",
    "Schedule-Free": "#17becf",
    # Factored and orthogonalised steps: dark hues no other optimizer uses.
    "Adafactor": "#117733",
    "Muon": "#332288",
    "Muon+AdamW": "#000000",
    "Rprop": "#44aa99",
    "ASGD": "#882255",
}

#: Sigmoid and tanh in greys (the lecture's losers at depth), the ReLU family in blues and
#: greens, the smooth ones in warm hues.
ACTIVATION_COLOURS: dict[str, str] = {
    "sigmoid": "#4d4d4d",
    "tanh": "#a6a6a6",
    "relu": "#0072b2",
    "leaky_relu": "#56b4e9",
    "prelu": "#009e73",
    "elu": "#44aa99",
    "selu": "#d55e00",
    "gelu": "#cc79a7",
    "silu": "#e69f00",
    "swish": "#e69f00",
    "mish": "#882255",
    "maxout": "#6a3d9a",
    "identity": "#000000",
}

#: Colours for names the tables do not know.
FALLBACK: tuple[str, ...] = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#17becf",
    "#e377c2",
    "#b15928",
)


def _key(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum())


_OPTIMIZERS = {_key(k): v for k, v in OPTIMIZER_COLOURS.items()}
_ACTIVATIONS = {_key(k): v for k, v in ACTIVATION_COLOURS.items()}


def _fallback(name: str) -> str:
    digest = hashlib.sha256(_key(name).encode()).digest()
    return FALLBACK[digest[0] % len(FALLBACK)]


def _checked(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a colour needs a non-empty name, got {name!r}")
    return name


def optimizer_colour(name: str, default: str | None = None) -> str:
    """The colour of the optimizer ``name`` (a hex string matplotlib and CSS both read);
    for a name the table does not know, ``default`` if given, else a stable fallback."""
    known = _OPTIMIZERS.get(_key(_checked(name)))
    return known or default or _fallback(name)


def activation_colour(name: str) -> str:
    """The colour of the activation ``name``."""
    return _ACTIVATIONS.get(_key(_checked(name))) or _fallback(name)
