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
from collections.abc import Callable, Iterator
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
    "check_workers",
    "default_workers",
    "execute_run",
    "make_executor",
    "resolve_ray_timeout",
]

EXECUTORS = ("local", "ray", "sequential")
RAY_HINT = "pip install dltricks[ray]"
#: Seconds to wait for a Ray cluster given by address before giving up (``--ray-timeout``,
#: or the environment variable :data:`RAY_TIMEOUT_ENV`).
DEFAULT_RAY_TIMEOUT = 30.0
RAY_TIMEOUT_ENV = "DLTRICKS_RAY_TIMEOUT"
# Processes per core this machine may start: each run has one thread, so more only compete for
# the same cores and memory (and thousands would exhaust the process table).
LOCAL_WORKERS_PER_CORE = 4
# Runs in flight on a Ray cluster: the cluster's CPUs bound what runs at once; this bounds the
# tasks the driver keeps submitted.
MAX_RAY_WORKERS = 4096


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
    # What the worker found and repaired in the run folder (a damaged file set aside).
    notices: tuple[str, ...] = ()
    #: Whether another attempt could succeed: a crash or an infrastructure failure (dead worker,
    #: lost node, full disk, out of memory). An exception the run itself raised would be
    #: raised again with the same settings, so it is not retried.
    retryable: bool = True


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
    before its driver died is read back rather than run again. A damaged ``results.json`` or
    ``run.json`` there is moved aside first (``<name>.corrupt``), so the run is made again from
    its units instead of failing on the file at every attempt.
    """
    import torch

    from dltricks.lab.runner import RESULTS_FILE, RUN_FILE, run_experiment
    from dltricks.sweep.integrity import move_aside_if_corrupt, run_metrics

    stack = contextlib.ExitStack()
    started = time.time()
    clock = time.perf_counter()
    host = socket.gethostname()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    spec = task.spec
    notices: list[str] = []
    try:
        stack.enter_context(_one_blas_thread())
        folder = Path(task.out_dir) / str(spec["experiment"])
        for name in (RESULTS_FILE, RUN_FILE):
            notice = move_aside_if_corrupt(folder / name)
            if notice is not None:
                notices.append(notice)
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
        metrics = run_metrics(results)
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
        tuple(notices),
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

    def abort(self) -> None:
        """Release what :meth:`start` acquired without waiting for running tasks (the driver
        was interrupted: their results could not be recorded anyway)."""
        self.close()

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


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

    def abort(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
            # The pool's workers are this process's only multiprocessing children. A worker
            # stopped mid-run leaves its finished units; the next sweep continues from them.
            for child in multiprocessing.active_children():
                child.terminate()
        self._futures.clear()


def resolve_ray_timeout(seconds: float | None = None) -> float:
    """The bound on joining a Ray cluster: ``seconds``, else ``$DLTRICKS_RAY_TIMEOUT``, else
    :data:`DEFAULT_RAY_TIMEOUT` (30 s).

    Raises:
        ExecutorError: the value is not a positive finite number of seconds.
    """
    if seconds is None:
        text = os.environ.get(RAY_TIMEOUT_ENV)
        if text is None:
            return DEFAULT_RAY_TIMEOUT
        try:
            seconds = float(text)
        except ValueError:
            raise ExecutorError(
                f"{RAY_TIMEOUT_ENV}={text!r}: expected a number of seconds"
            ) from None
    if not (0 < seconds < float("inf")):
        raise ExecutorError(f"the Ray timeout must be a positive number of seconds, got {seconds}")
    return seconds


def _host_and_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``host:port`` or ``ray://host:port`` address, else ``None``
    (``auto`` and other forms Ray resolves itself)."""
    text = address.removeprefix("ray://")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _resolve(host: str, port: int, deadline: float) -> list[Any]:
    """``getaddrinfo`` bounded by ``deadline`` (a resolver that does not answer would block
    for its own timeouts, past the bound); raises ``socket.gaierror`` or ``TimeoutError``."""
    found: list[Any] = []
    failed: list[OSError] = []

    def look_up() -> None:
        try:
            found.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as error:
            failed.append(error)

    # A daemon thread: one stuck in the resolver does not keep the process alive.
    thread = threading.Thread(target=look_up, daemon=True)
    thread.start()
    thread.join(max(0.0, deadline - time.monotonic()))
    if failed:
        raise failed[0]
    if thread.is_alive() or not found:
        raise TimeoutError(f"no answer from the name resolver for {host!r}")
    return found


def _wait_for_port(address: str, deadline: float, timeout: float) -> None:
    """Return once something accepts TCP connections at ``address``; give up at ``deadline``.

    Ray itself retries an unreachable cluster for minutes (its GCS client logs a retry every
    40 s); a port that refuses or never answers is the common case of a wrong address.
    """
    where = _host_and_port(address)
    if where is None:
        return
    bound = f"set the bound with --ray-timeout or {RAY_TIMEOUT_ENV}"
    try:
        family, kind, proto, _, target = _resolve(*where, deadline)[0]
    except socket.gaierror as error:
        # A name that does not resolve will not start to while we wait.
        raise ExecutorError(
            f"cannot join the Ray cluster at {address}: host {where[0]!r} not found "
            f"({error.strerror or error})"
        ) from None
    except TimeoutError as error:
        raise ExecutorError(
            f"cannot join the Ray cluster at {address}: {error} within {timeout:g} s ({bound})"
        ) from None
    last = "no answer"
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ExecutorError(
                f"cannot join the Ray cluster at {address}: no connection within {timeout:g} s "
                f"(last try: {last}; {bound})"
            )
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.settimeout(min(left, 2.0))
                probe.connect(target)
                return
        except OSError as error:
            last = error.strerror or str(error) or type(error).__name__
        time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))


class _JoinTimeoutError(Exception):
    pass


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    """Raise :class:`_JoinTimeoutError` in the main thread after ``seconds`` (where signals allow).

    Bounds a ``ray.init`` that found a port answering but no Ray cluster behind it.
    """
    import signal

    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "setitimer"
    ):
        yield
        return

    def fire(signum: int, frame: object) -> None:
        raise _JoinTimeoutError()

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


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

    Joining is bounded by ``timeout`` seconds (default :func:`resolve_ray_timeout`: 30 s, or
    ``$DLTRICKS_RAY_TIMEOUT``): an address where nothing answers, or that answers without a
    Ray cluster behind it, raises :class:`ExecutorError` then instead of waiting for Ray's
    own retries.
    """

    name = "ray"

    def __init__(
        self,
        workers: int | None = None,
        address: str | None = None,
        function: Callable[[RunTask], RunResult] = execute_run,
        timeout: float | None = None,
    ) -> None:
        super().__init__(function)
        self._timeout = resolve_ray_timeout(timeout)
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
                    self._join(self._address, options)
                else:
                    ray.init(num_cpus=self._requested or default_workers(), **options)
            except ExecutorError:
                raise
            except Exception as error:  # Ray raises several kinds; the user needs one line
                where = f"join the Ray cluster at {self._address}" if self._address else "start Ray"
                first = str(error).strip().splitlines()[:1] or [type(error).__name__]
                raise ExecutorError(f"cannot {where}: {first[0]}") from None
            self._owns = True
        if not self._requested:
            self._workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        # max_retries=0: the driver counts and retries attempts itself (--retries).
        self._remote = ray.remote(num_cpus=1, max_retries=0)(self.function)

    def _join(self, address: str, options: dict[str, Any]) -> None:
        deadline = time.monotonic() + self._timeout
        _wait_for_port(address, deadline, self._timeout)
        try:
            with _alarm(deadline - time.monotonic()):
                self._ray.init(address=address, **options)
        except _JoinTimeoutError:
            with contextlib.suppress(Exception):
                self._ray.shutdown()
            raise ExecutorError(
                f"cannot join the Ray cluster at {address}: something answers there but no Ray "
                f"cluster joined within {self._timeout:g} s (set the bound with --ray-timeout "
                f"or {RAY_TIMEOUT_ENV})"
            ) from None

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


def check_executor(
    name: str, *, workers: int | None, ray_address: str | None, ray_timeout: float | None = None
) -> None:
    """Refuse an executor that cannot run as asked, before anything is written.

    Raises:
        ExecutorError: an unknown name, fewer than one worker, an address without Ray, or Ray
            not installed.
    """
    if name not in EXECUTORS:
        raise ExecutorError(f"unknown executor {name!r}; use one of {', '.join(EXECUTORS)}")
    if workers is not None:
        check_workers(workers, name)
    if ray_address is not None and name != "ray":
        raise ExecutorError("--ray-address needs --executor ray")
    if ray_timeout is not None and ray_address is None:
        raise ExecutorError("--ray-timeout bounds joining a cluster: it needs --ray-address")
    if ray_address is not None:
        resolve_ray_timeout(ray_timeout)
    if name == "sequential" and workers not in (None, 1):
        raise ExecutorError("--executor sequential runs one run at a time; drop --workers")
    if name == "ray":
        _import_ray()


def check_workers(workers: int, executor: str) -> None:
    """Refuse a worker count below one or above what ``executor`` can use.

    A process pool (``local``, and the report's) gets at most
    :data:`LOCAL_WORKERS_PER_CORE` processes per core of this machine; Ray at most
    :data:`MAX_RAY_WORKERS` runs in flight.

    Raises:
        ExecutorError: the count is out of range (the message says the range).
    """
    if workers < 1:
        raise ExecutorError(f"--workers must be >= 1, got {workers}")
    if executor == "ray":
        if workers > MAX_RAY_WORKERS:
            raise ExecutorError(
                f"--workers {workers}: at most {MAX_RAY_WORKERS} runs in flight on Ray"
            )
        return
    limit = LOCAL_WORKERS_PER_CORE * default_workers()
    if workers > limit:
        raise ExecutorError(
            f"--workers {workers}: at most {limit} here ({LOCAL_WORKERS_PER_CORE} per core on "
            f"{default_workers()} core(s)); more processes only compete for the same cores"
        )


def make_executor(
    name: str,
    *,
    workers: int | None = None,
    ray_address: str | None = None,
    function: Callable[[RunTask], RunResult] = execute_run,
    ray_timeout: float | None = None,
) -> Executor:
    """The executor called ``name`` (see :data:`EXECUTORS`); nothing starts until first use."""
    check_executor(name, workers=workers, ray_address=ray_address, ray_timeout=ray_timeout)
    if name == "sequential":
        return SequentialExecutor(function)
    if name == "local":
        return LocalExecutor(workers, function)
    return RayExecutor(workers, ray_address, function, timeout=ray_timeout)
