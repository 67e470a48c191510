"""Sweeps: a grid over an experiment's settings and seeds, run in parallel, stored in SQLite.

``expand(SweepSpec(...))`` lists the runs with their stable ids; ``run_sweep(sweep,
out_root=..., executor=make_executor("local"))`` runs the ones the store does not have;
``read_rows(store_path)`` reads the store, also while a sweep writes it. The command line is
``dltricks sweep NAME --grid key=v1,v2 ...``. ``store_unit(path)`` gives the comparison helper
(``compare_optimizers(..., unit=...)``) the same kind of store, so a comparison resumes too.
"""

from dltricks.sweep.executors import (
    EXECUTORS,
    Executor,
    ExecutorError,
    RunResult,
    RunTask,
    execute_run,
    make_executor,
)
from dltricks.sweep.run import (
    SweepOutcome,
    headline_metric,
    run_sweep,
    sweep_command,
    sweep_id,
    sweep_paths,
)
from dltricks.sweep.spec import RunSpec, SweepSpec, SweepSpecError, expand, parse_grid_item
from dltricks.sweep.store import RunRow, SweepStore, read_meta, read_rows
from dltricks.sweep.units import StoreUnit, read_units, store_unit

__all__ = [
    "EXECUTORS",
    "Executor",
    "ExecutorError",
    "RunResult",
    "RunRow",
    "RunSpec",
    "RunTask",
    "StoreUnit",
    "SweepOutcome",
    "SweepSpec",
    "SweepSpecError",
    "SweepStore",
    "execute_run",
    "expand",
    "headline_metric",
    "make_executor",
    "parse_grid_item",
    "read_meta",
    "read_rows",
    "read_units",
    "run_sweep",
    "store_unit",
    "sweep_command",
    "sweep_id",
    "sweep_paths",
]
