"""Vanishing-gradient diagnostics for any ``nn.Module``, attached through hooks.

``GradientNorms`` (per-layer ``||dL/dW||`` and the first/last ``vanishing_ratio``),
``UpdateRatios`` (``||dW|| / ||W||`` per optimizer step) and ``ActivationStats`` (mean, std,
saturation, dead units). Each is a context manager with ``attach()``/``detach()``, and
reads out as ``records()``, ``to_table()`` and ``plot()``. ``Diagnostics`` groups them.

In a training loop they record one step in ``every`` (default 10: steps 0, 10, 20, ...,
the same steps for every layer and monitor attached together; each record carries its
``step``), which keeps a monitored step within a few percent of an unmonitored one;
``every=1`` records every step, at the cost measured in
benchmarks/results/diagnose_overhead.md. A monitor attached around a single pass records
that pass (the first call is step 0). Detached, a monitor leaves no hook behind and costs
nothing.
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
from dltricks.diagnose.monitor import DEFAULT_EVERY, Monitor
from dltricks.diagnose.suite import Diagnostics
from dltricks.diagnose.table import format_table
from dltricks.diagnose.updates import UpdateRatios

__all__ = [
    "ACTIVATION_TYPES",
    "DEFAULT_EVERY",
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
