"""Shared test settings."""

from __future__ import annotations

import os

import matplotlib
import torch

matplotlib.use("Agg")

# Tests run two workers on two cores: one thread each avoids oversubscription.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
