"""Optimizers built by composing small gradient transformations.

Every public optimizer is a drop-in ``torch.optim.Optimizer`` with torch's name, keywords and
defaults, defined as a chain of the blocks in :mod:`dltricks.optim.blocks`. Compose your own::

    from dltricks.optim import ComposedOptimizer, blocks, chain, ratio

The shared notation of every docstring is in :mod:`dltricks.optim.base`.
"""

from dltricks.optim import blocks
from dltricks.optim.adadelta import Adadelta
from dltricks.optim.adafactor import Adafactor
from dltricks.optim.adagrad import Adagrad
from dltricks.optim.adam import Adam, AdamW, adam_direction
from dltricks.optim.adamax import Adamax
from dltricks.optim.adapter import ComposedOptimizer, NonFiniteGradientError, NonFinitePolicy
from dltricks.optim.base import Hyper, Hyperparameter, State, Transform, resolve, stateless
from dltricks.optim.combine import (
    Merge,
    branch,
    chain,
    identity,
    lerp_merge,
    quotient,
    ratio,
    total,
    zeros_like_state,
)
from dltricks.optim.custom import ChainOptimizer
from dltricks.optim.lion import Lion
from dltricks.optim.muon import Muon, muon_update
from dltricks.optim.nadam import NAdam
from dltricks.optim.partition import group_labels, partition
from dltricks.optim.rmsprop import RMSprop
from dltricks.optim.sgd import SGD, Momentum

__all__ = [
    "SGD",
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "ChainOptimizer",
    "ComposedOptimizer",
    "Hyper",
    "Hyperparameter",
    "Lion",
    "Momentum",
    "NAdam",
    "NonFiniteGradientError",
    "NonFinitePolicy",
    "RMSprop",
    "State",
    "Transform",
    "adam_direction",
    "blocks",
    "chain",
    "identity",
    "ratio",
    "resolve",
    "stateless",
]

__all__ += [
    "Adafactor",
    "Merge",
    "Muon",
    "branch",
    "group_labels",
    "lerp_merge",
    "muon_update",
    "partition",
    "quotient",
    "total",
    "zeros_like_state",
]
