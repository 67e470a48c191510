"""The same sweep gives the same numbers per run id in-process, in a process pool and on Ray.

Ray runs for real: one local instance (2 CPUs, no dashboard) started by the executor for this
module and stopped at its end. Without Ray installed the Ray test is skipped, except in CI
(``CI`` set), where Ray is part of the ``dev`` extra and must run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dltricks.sweep import expand, run_sweep
from dltricks.sweep.executors import Executor, LocalExecutor, SequentialExecutor
from tests.sweep.helpers import tiny_sweep

try:
    import ray
except ImportError:
    if os.environ.get("CI"):
        raise
    ray = None

SWEEP = tiny_sweep([0.001, 0.01], seeds=2)


def _metrics(executor: Executor, out: Path) -> dict[str, Any]:
    outcome = run_sweep(SWEEP, out_root=out, executor=executor, retries=0)
    assert [r.status for r in outcome.rows] == ["done"] * 4, [r.error for r in outcome.rows]
    return {r.id: r.metrics for r in outcome.rows}


@pytest.fixture(scope="module")
def sequential(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _metrics(SequentialExecutor(), tmp_path_factory.mktemp("sequential"))


@pytest.fixture(scope="module")
def ray_executor() -> Iterator[Executor]:
    if ray is None:
        pytest.skip("Ray is not installed (pip install dltricks[ray])")
    from dltricks.sweep.executors import RayExecutor

    assert not ray.is_initialized()
    executor = RayExecutor(workers=2)
    executor.start()
    try:
        yield executor
    finally:
        executor.close()
    # The executor started this instance, so it stopped it too.
    assert not ray.is_initialized()


def test_the_runs_are_not_trivially_equal(sequential: dict[str, Any]) -> None:
    ids = [s.run_id for s in expand(SWEEP)]
    assert list(sequential) == ids
    first_steps = {
        i: next(r["first_step"] for r in m["records"] if not r["bias_correction"])
        for i, m in sequential.items()
    }
    # Different lr or seed, different numbers: equality below is not an accident.
    assert len(set(first_steps.values())) == len(ids)


def test_a_process_pool_gives_the_same_metrics_per_run_id(
    sequential: dict[str, Any], tmp_path: Path
) -> None:
    with LocalExecutor(workers=2) as executor:
        assert _metrics(executor, tmp_path) == sequential


def test_ray_gives_the_same_metrics_per_run_id(
    sequential: dict[str, Any], ray_executor: Executor, tmp_path: Path
) -> None:
    assert ray_executor.workers == 2
    assert ray.cluster_resources()["CPU"] == 2
    assert _metrics(ray_executor, tmp_path) == sequential
