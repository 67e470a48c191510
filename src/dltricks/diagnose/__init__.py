"""Vanishing-gradient diagnostics for any ``nn.Module``, attached through hooks.

``GradientNorms`` (per-layer ``||dL/dW||`` and the first/last ``vanishing_ratio``),
``UpdateRatios`` (``||dW|| / ||W||`` per optimizer step) and ``ActivationStats`` (mean, std,
saturation, dead units). Each is a context manager with ``attach()``/``detach()``, and
reads out as ``records()``, ``to_table()`` and ``plot()``. ``Diagnostics`` groups them.
"""

from __future__ import annotations

from dltricks.diagnose.activations import ActivationStats
from dltricks.diagnose.gradients import GradientNorms
from dltricks.diagnose.layers import (
    ACTIVATION_TYPES,
    WEIGHT_LAYER_TYPES,
    ActivationKind,
    activation_kind,
    find_layers,
)
from dltricks.diagnose.monitor import Monitor
from dltricks.diagnose.suite import Diagnostics
from dltricks.diagnose.table import format_table
from dltricks.diagnose.updates import UpdateRatios

__all__ = [
    "ACTIVATION_TYPES",
    "WEIGHT_LAYER_TYPES",
    "ActivationKind",
    "ActivationStats",
    "Diagnostics",
    "GradientNorms",
    "Monitor",
    "UpdateRatios",
    "activation_kind",
    "find_layers",
    "format_table",
]
