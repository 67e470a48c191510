"""The small blocks that optimizers are built from.

Each block is a :class:`~dltricks.optim.base.Transform`; its docstring gives its math in the
shared notation of :mod:`dltricks.optim.base`.
"""

from dltricks.optim.blocks.adadelta import scale_by_adadelta
from dltricks.optim.blocks.averaging import averaged_sgd
from dltricks.optim.blocks.belief import ema_of_squared_surprise, shrink_weights
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
    shape_scaled_orthogonalize,
)
from dltricks.optim.blocks.rectification import rectified_denominator
from dltricks.optim.blocks.resilient import scale_by_resilient_step
from dltricks.optim.blocks.scale import (
    inverse_time_decay,
    negate,
    scale,
    scale_by_learning_rate,
)
from dltricks.optim.blocks.schedule_free import schedule_free_interpolation
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
    "averaged_sgd",
    "bias_correction",
    "centered_ema_of_squares",
    "ema",
    "ema_of_squared_surprise",
    "ema_of_squares",
    "infinity_norm",
    "inverse_time_decay",
    "negate",
    "nesterov_first_moment",
    "rectified_denominator",
    "root",
    "running_max",
    "scale",
    "scale_by_adadelta",
    "scale_by_learning_rate",
    "scale_by_resilient_step",
    "schedule_free_interpolation",
    "shrink_weights",
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
    "shape_scaled_orthogonalize",
]
