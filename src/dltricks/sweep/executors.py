"""Executors: where a sweep's runs execute. One interface, three engines.

- ``sequential``: one run after the other in this process (the baseline, and tests).
- ``local``: a pool of ``spawn``-ed processes, one per core by default.
- ``ray``: Ray Core tasks, one CPU each, on a local Ray instance (started and stopped here)
  or on an existing cluster (``address``).

Every engine runs the same function, :func:`execute_run`, with one torch thread: a run's
numbers do not depend on where it ran (intra-op thread counts change the order of float
reductions, so they must match). Workers return results; only the driver writes the store.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import socket
import threading
import time
import traceback
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "EXECUTORS",
    "Executor",
    "ExecutorError",
    "LocalExecutor",
    "RayExecutor",
    "RunResult",
    "RunTask",
    "SequentialExecutor",
    "check_executor",
    "default_workers",
    "execute_run",
    "make_executor",
]

EXECUTORS = ("local", "ray", "sequential")
RAY_HINT = "pip install dltricks[ray]"


class ExecutorError(Exception):
    """An executor cannot be used as asked (e.g. Ray is not installed)."""


@dataclass(frozen=True)
class RunTask:
    """What a worker needs: the run id, its spec (JSON) and the folder to write into."""

    run_id: str
    spec: dict[str, Any]
    out_dir: str


@dataclass(frozen=True)
class RunResult:
    """One finished attempt, as a worker reports it to the driver."""

    run_id: str
    ok: bool
    metrics: dict[str, Any] | None
    error: str | None
    started: float
    finished: float
    duration: float
    host: str
    #: Whether another attempt could succeed: a crash or an infrastructure failure (dead worker,
    #: lost node, full disk, out of memory). An exception the run itself raised would be
    #: raised again with the same settings, so it is not retried.
    retryable: bool = True


def _scalars(record: dict[str, Any]) -> dict[str, Any]:
    # Curves and nested tables stay in results.json; the store keeps what a table shows.
    return {k: v for k, v in record.items() if v is None or isinstance(v, str | int | float)}


def _one_blas_thread() -> contextlib.AbstractContextManager[Any]:
    """BLAS/OpenMP pools at one thread for the run (Ray's workers get this from
    ``OMP_NUM_THREADS=1``; a process pool or this process would otherwise use every core)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn brings it; without it torch's own setting still holds
        return contextlib.nullcontext()
    return threadpool_limits(limits=1)


def execute_run(task: RunTask) -> RunResult:
    """Run one sweep run with one torch thread; never raises (errors become a failed result).

    The run is an ordinary lab run into ``task.out_dir`` with ``resume`` and ``reuse``: a run
    interrupted with its driver continues from its finished units, and one that finished just
    before its driver died is read back rather than run again.
    """
    import torch

    from dltricks.lab.runner import run_experiment

    stack = contextlib.ExitStack()
    started = time.time()
    clock = time.perf_counter()
    host = socket.gethostname()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    spec = task.spec
    try:
        stack.enter_context(_one_blas_thread())
        outcome = run_experiment(
            spec["experiment"],
            out_root=Path(task.out_dir),
            quick=bool(spec["quick"]),
            seed=int(spec["seed"]),
            seeds=1,
            overrides=dict(spec["overrides"]),
            resume=True,
            reuse=True,
        )
        results = outcome.results
        if results.get("config_hash") != task.run_id:
            # The worker built another configuration from the same spec: another dltricks
            # version (or other experiment defaults) on that machine.
            raise RuntimeError(
                f"the worker's configuration hash {results.get('config_hash')} differs from "
                f"the run id {task.run_id}: is the same dltricks version installed everywhere?"
            )
        metrics = {
            "summary": results.get("summary", {}),
            "records": [_scalars(r) for r in results.get("records", [])],
        }
        ok, error, retryable = True, None, False
    except Exception as exc:  # a failed run is a result, not a crash of the sweep
        ok, metrics = False, None
        error = "".join(traceback.format_exception(exc)).strip()[-4000:]
        retryable = isinstance(exc, OSError | MemoryError)
    finally:
        stack.close()
        torch.set_num_threads(threads)
    return RunResult(
        task.run_id,
        ok,
        metrics,
        error,
        started,
        time.time(),
        time.perf_counter() - clock,
        host,
        retryable,
    )


def _failed(task: RunTask, error: str) -> RunResult:
    now = time.time()
    return RunResult(task.run_id, False, None, error, now, now, 0.0, socket.gethostname())


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class Executor(ABC):
    """Runs tasks somewhere and hands back results one at a time.

    The driver keeps at most :attr:`capacity` tasks submitted and not yet returned; results
    come back in completion order.
    """

    name: str = ""

    def __init__(self, function: Callable[[RunTask], RunResult] = execute_run) -> None:
        self.function = function
        self.pending: dict[str, RunTask] = {}

    def start(self) -> None:  # noqa: B027 - optional hook; most engines start lazily
        """Acquire resources (processes, a Ray connection); idempotent."""

    @property
    @abstractmethod
    def workers(self) -> int:
        """How many runs execute at the same time."""

    @property
    def capacity(self) -> int:
        """How many tasks to keep submitted: twice the workers, so none idles between tasks."""
        return 2 * self.workers

    @abstractmethod
    def submit(self, task: RunTask) -> None:
        """Queue ``task``."""

    @abstractmethod
    def wait_one(self) -> RunResult:
        """Block until one submitted task finishes; a lost worker gives a failed result."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what :meth:`start` acquired."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SequentialExecutor(Executor):
    """Runs each task in this process when its result is asked for."""

    name = "sequential"

    def __init__(self, function: Callable[[RunTask], RunResult] = execute_run) -> None:
        super().__init__(function)
        self._queue: deque[RunTask] = deque()

    @property
    def workers(self) -> int:
        return 1

    @property
    def capacity(self) -> int:
        return 1

    def submit(self, task: RunTask) -> None:
        self._queue.append(task)

    def wait_one(self) -> RunResult:
        return self.function(self._queue.popleft())


def _watch_parent(parent: int) -> None:
    # A worker whose driver was killed (SIGKILL leaves no chance to stop the pool) would keep
    # running, holding its run folder's lock; it exits instead once it is orphaned.
    while True:
        if os.getppid() != parent:
            os._exit(1)
        time.sleep(0.2)


def _init_worker(parent: int) -> None:
    import torch

    torch.set_num_threads(1)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


class LocalExecutor(Executor):
    """A process pool on this machine (``spawn``: no state shared with the driver)."""

    name = "local"

    def __init__(
        self, workers: int | None = None, function: Callable[[RunTask], RunResult] = execute_run
    ) -> None:
        super().__init__(function)
        self._workers = workers or default_workers()
        self._pool: ProcessPoolExecutor | None = None
        self._futures: dict[Future[RunResult], RunTask] = {}

    @property
    def workers(self) -> int:
        return self._workers

    def start(self) -> None:
        if self._pool is None:
            os.environ.setdefault("MPLBACKEND", "Agg")
            self._pool = ProcessPoolExecutor(
                max_workers=self._workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(os.getpid(),),
            )

    def submit(self, task: RunTask) -> None:
        self.start()
        assert self._pool is not None
        self._futures[self._pool.submit(self.function, task)] = task

    def wait_one(self) -> RunResult:
        done, _ = wait(self._futures, return_when=FIRST_COMPLETED)
        future = min(done, key=lambda f: self._futures[f].run_id)
        task = self._futures.pop(future)
        error = future.exception()
        if error is None:
            return future.result()
        # Only a dead worker gets here (execute_run returns its errors): the pool is broken
        # for every task in it. Those come back failed too and are retried; later tasks go
        # to a new pool.
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        return _failed(task, f"worker process died: {type(error).__name__}: {error}")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._futures.clear()


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ExecutorError(
            f"--executor ray needs Ray, which is not installed: {RAY_HINT}"
        ) from None
    return ray


class RayExecutor(Executor):
    """Ray Core tasks, one CPU and one torch thread each.

    Without ``address`` a local Ray instance with ``workers`` CPUs (default: the cores) is
    started on :meth:`start` and stopped on :meth:`close`; with ``address`` (``ray://host:port``
    or ``host:port``) the driver joins that cluster and ``workers`` bounds the runs in flight
    (default: the cluster's CPUs). If Ray is already initialised in this process it is used as
    it is and left running.
    """

    name = "ray"

    def __init__(
        self,
        workers: int | None = None,
        address: str | None = None,
        function: Callable[[RunTask], RunResult] = execute_run,
    ) -> None:
        super().__init__(function)
        self._ray = _import_ray()
        self._requested = workers
        self._address = address
        self._workers = workers or 0
        self._owns = False
        self._remote: Any = None
        self._refs: dict[Any, RunTask] = {}

    @property
    def workers(self) -> int:
        return self._workers or self._requested or default_workers()

    def start(self) -> None:
        if self._remote is not None:
            return
        ray = self._ray
        if not ray.is_initialized():
            options: dict[str, Any] = {
                "include_dashboard": False,
                # The driver's stderr carries the progress bar; workers' logs stay in Ray's
                # log folder.
                "log_to_driver": False,
                "logging_level": logging.WARNING,
            }
            try:
                if self._address is not None:
                    ray.init(address=self._address, **options)
                else:
                    ray.init(num_cpus=self._requested or default_workers(), **options)
            except Exception as error:  # Ray raises several kinds; the user needs one line
                where = f"join the Ray cluster at {self._address}" if self._address else "start Ray"
                first = str(error).strip().splitlines()[:1] or [type(error).__name__]
                raise ExecutorError(f"cannot {where}: {first[0]}") from None
            self._owns = True
        if not self._requested:
            self._workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        # max_retries=0: the driver counts and retries attempts itself (--retries).
        self._remote = ray.remote(num_cpus=1, max_retries=0)(self.function)

    def submit(self, task: RunTask) -> None:
        self.start()
        self._refs[self._remote.remote(task)] = task

    def wait_one(self) -> RunResult:
        ray = self._ray
        ready, _ = ray.wait(list(self._refs), num_returns=1)
        task = self._refs.pop(ready[0])
        try:
            result: RunResult = ray.get(ready[0])
        except Exception as error:  # a lost worker or node; the run itself never raises
            return _failed(task, f"Ray task failed: {type(error).__name__}: {error}")
        return result

    def close(self) -> None:
        for ref in self._refs:
            self._ray.cancel(ref, force=True)
        self._refs.clear()
        if self._owns:
            self._ray.shutdown()
            self._owns = False
        self._remote = None


def check_executor(name: str, *, workers: int | None, ray_address: str | None) -> None:
    """Refuse an executor that cannot run as asked, before anything is written.

    Raises:
        ExecutorError: an unknown name, fewer than one worker, an address without Ray, or Ray
            not installed.
    """
    if name not in EXECUTORS:
        raise ExecutorError(f"unknown executor {name!r}; use one of {', '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise ExecutorError(f"--workers must be >= 1, got {workers}")
    if ray_address is not None and name != "ray":
        raise ExecutorError("--ray-address needs --executor ray")
    if name == "sequential" and workers not in (None, 1):
        raise ExecutorError("--executor sequential runs one run at a time; drop --workers")
    if name == "ray":
        _import_ray()


def make_executor(
    name: str,
    *,
    workers: int | None = None,
    ray_address: str | None = None,
    function: Callable[[RunTask], RunResult] = execute_run,
) -> Executor:
    """The executor called ``name`` (see :data:`EXECUTORS`); nothing starts until first use."""
    check_executor(name, workers=workers, ray_address=ray_address)
    if name == "sequential":
        return SequentialExecutor(function)
    if name == "local":
        return LocalExecutor(workers, function)
    return RayExecutor(workers, ray_address, function)
