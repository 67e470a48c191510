"""Activations with their initialisations, Maxout, alpha-dropout and the MLP builder.

``get_activation("relu")`` builds an activation by name; ``recommended_init`` and
``init_for_activation`` pick He / LeCun / Xavier for it; ``param_groups_no_decay`` keeps
weight decay off PReLU slopes (and biases); ``MLP`` is the model the lab trains.
"""

from __future__ import annotations

from dltricks.nn import functional
from dltricks.nn.activations import (
    ELU,
    GELU,
    SELU,
    LeakyReLU,
    Mish,
    PReLU,
    ReLU,
    Sigmoid,
    SiLU,
    Swish,
    Tanh,
)
from dltricks.nn.dropout import AlphaDropout
from dltricks.nn.functional import SELU_ALPHA, SELU_SCALE
from dltricks.nn.init import (
    INIT_SCHEMES,
    ActivationLike,
    InitScheme,
    InitSpec,
    init_for_activation,
    init_layer_,
    recommended_init,
    weight_layers,
)
from dltricks.nn.maxout import GroupMax, Maxout, maxout_gain
from dltricks.nn.mlp import MLP
from dltricks.nn.param_groups import param_groups_no_decay
from dltricks.nn.registry import activation_names, canonical_activation_name, get_activation

__all__ = [
    "ELU",
    "GELU",
    "INIT_SCHEMES",
    "MLP",
    "SELU",
    "SELU_ALPHA",
    "SELU_SCALE",
    "ActivationLike",
    "AlphaDropout",
    "GroupMax",
    "InitScheme",
    "InitSpec",
    "LeakyReLU",
    "Maxout",
    "Mish",
    "PReLU",
    "ReLU",
    "SiLU",
    "Sigmoid",
    "Swish",
    "Tanh",
    "activation_names",
    "canonical_activation_name",
    "functional",
    "get_activation",
    "init_for_activation",
    "init_layer_",
    "maxout_gain",
    "param_groups_no_decay",
    "recommended_init",
    "weight_layers",
]
