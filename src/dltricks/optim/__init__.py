"""Optimizers built by composing small gradient transformations.

Every public optimizer is a drop-in ``torch.optim.Optimizer`` with torch's name, keywords and
defaults, defined as a chain of the blocks in :mod:`dltricks.optim.blocks`. Compose your own::

    from dltricks.optim import ComposedOptimizer, blocks, chain, ratio

The shared notation of every docstring is in :mod:`dltricks.optim.base`.
"""

from dltricks.optim import blocks
from dltricks.optim.adabelief import AdaBelief
from dltricks.optim.adadelta import Adadelta
from dltricks.optim.adafactor import Adafactor
from dltricks.optim.adagrad import Adagrad
from dltricks.optim.adam import Adam, AdamW, adam_direction
from dltricks.optim.adamax import Adamax
from dltricks.optim.adapter import ComposedOptimizer, NonFiniteGradientError, NonFinitePolicy
from dltricks.optim.asgd import ASGD
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
from dltricks.optim.radam import RAdam
from dltricks.optim.rmsprop import RMSprop
from dltricks.optim.rprop import Rprop
from dltricks.optim.schedule_free import ScheduleFreeAdamW
from dltricks.optim.sgd import SGD, Momentum

__all__ = [
    "ASGD",
    "SGD",
    "AdaBelief",
    "Adadelta",
    "Adafactor",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "ChainOptimizer",
    "ComposedOptimizer",
    "Hyper",
    "Hyperparameter",
    "Lion",
    "Merge",
    "Momentum",
    "Muon",
    "NAdam",
    "NonFiniteGradientError",
    "NonFinitePolicy",
    "RAdam",
    "RMSprop",
    "Rprop",
    "ScheduleFreeAdamW",
    "State",
    "Transform",
    "adam_direction",
    "blocks",
    "branch",
    "chain",
    "group_labels",
    "identity",
    "lerp_merge",
    "muon_update",
    "partition",
    "quotient",
    "ratio",
    "resolve",
    "stateless",
    "total",
    "zeros_like_state",
]
