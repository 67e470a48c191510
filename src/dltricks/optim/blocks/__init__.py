"""The small blocks that optimizers are built from.

Each block is a :class:`~dltricks.optim.base.Transform`; its docstring gives its math in the
shared notation of :mod:`dltricks.optim.base`.
"""

from dltricks.optim.blocks.adadelta import scale_by_adadelta
from dltricks.optim.blocks.correction import bias_correction
from dltricks.optim.blocks.decay import add_decayed_weights, add_l2_penalty
from dltricks.optim.blocks.factored import (
    clip_by_block_rms,
    decay_weights,
    factored_second_moment,
    scale_by_relative_step,
)
from dltricks.optim.blocks.momentum import ema, nesterov_first_moment, trace
from dltricks.optim.blocks.orthogonalize import (
    orthogonalize,
    scale_by_shape,
    shape_scaled_descent,
)
from dltricks.optim.blocks.scale import (
    inverse_time_decay,
    negate,
    scale,
    scale_by_learning_rate,
)
from dltricks.optim.blocks.second_moment import (
    centered_ema_of_squares,
    ema_of_squares,
    infinity_norm,
    root,
    running_max,
    sum_of_squares,
)
from dltricks.optim.blocks.sign import sign, sign_of_interpolation

__all__ = [
    "add_decayed_weights",
    "add_l2_penalty",
    "bias_correction",
    "centered_ema_of_squares",
    "ema",
    "ema_of_squares",
    "infinity_norm",
    "inverse_time_decay",
    "negate",
    "nesterov_first_moment",
    "root",
    "running_max",
    "scale",
    "scale_by_adadelta",
    "scale_by_learning_rate",
    "sign",
    "sign_of_interpolation",
    "sum_of_squares",
    "trace",
]

__all__ += [
    "clip_by_block_rms",
    "decay_weights",
    "factored_second_moment",
    "orthogonalize",
    "scale_by_relative_step",
    "scale_by_shape",
    "shape_scaled_descent",
]
