"""The lab: registered experiments, a runner that writes results.json and figures, and the
report.

``run_experiment(name, out_root=..., quick=True)`` runs one experiment; ``all_experiments()``
lists them.
"""

from dltricks.lab.context import RunContext
from dltricks.lab.registry import TRICKS, Experiment, all_experiments, get_experiment, register
from dltricks.lab.runner import RunError, RunOutcome, run_experiment

__all__ = [
    "TRICKS",
    "Experiment",
    "RunContext",
    "RunError",
    "RunOutcome",
    "all_experiments",
    "get_experiment",
    "register",
    "run_experiment",
]
