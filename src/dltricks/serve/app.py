"""The playground's web app: the JSON API under ``/api`` and the page that uses only it.

API (public contract):

- ``GET /api/health`` -> ``{"status": "ok", "version"}``
- ``GET /api/surfaces`` -> ``[{"name", "description", "formula", "bounds", "start", ...}]``
- ``GET /api/surfaces/{name}/grid?n=N`` -> ``{"x", "y", "z"}`` for contour plots
- ``POST /api/surfaces/run`` -> ``{"trajectory", "losses", "grad_norms", "diverged", ...}``
- ``GET /api/optimizers`` -> ``{name: {"hyperparameters": {name: default}}}``
- ``GET /api/train/options`` -> the choices, bounds and defaults of a training job
- ``POST /api/train`` -> ``{"id", "status"}`` (201); ``GET /api/train/{id}`` -> the job;
  ``DELETE /api/train/{id}`` cancels it
- ``GET /api/report`` -> whether a report is served under ``/report/`` and its sections

Bad input gets 422 ``{"error", "field"}`` (400 for a body that is not JSON), an unknown job
404, a full server 429 (training jobs beyond the manager's limit, or more concurrent surface
runs than :data:`MAX_SURFACE_RUNS`), a body over 64 KiB 413. Nothing is fetched from the network:
the page's chart library is shipped in ``static/``.

Start-up is kept short by importing torch and the library in a background thread once the
server is up (:func:`import_library`, then :func:`warm_up`); the first requests that need
them wait for it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from dltricks.serve.fields import RequestError

if TYPE_CHECKING:
    from dltricks.serve.jobs import JobManager

__all__ = ["MAX_BODY_BYTES", "MAX_SURFACE_RUNS", "STATIC_DIR", "create_app"]

STATIC_DIR = Path(__file__).parent / "static"
MAX_BODY_BYTES = 64 * 1024
MAX_SURFACE_RUNS = 4


def _refused(error: RequestError) -> JSONResponse:
    return JSONResponse({"error": str(error), "field": error.field}, status_code=422)


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise _BodyTooLargeError
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise _NotJsonError(str(error)) from None


class _BodyTooLargeError(Exception):
    pass


class _NotJsonError(Exception):
    pass


def _body_errors(error: Exception) -> JSONResponse:
    if isinstance(error, _BodyTooLargeError):
        return JSONResponse(
            {"error": f"the body is larger than {MAX_BODY_BYTES} bytes", "field": None},
            status_code=413,
        )
    return JSONResponse(
        {"error": f"the body is not valid JSON: {error}", "field": None}, status_code=400
    )


def import_library() -> None:
    """Import torch and what the page's first requests read (surfaces, the job form)."""
    from dltricks.serve.jobs import train_options
    from dltricks.serve.optimizers import OPTIMIZERS  # noqa: F401
    from dltricks.serve.surfaces import surface_catalogue

    surface_catalogue()
    train_options()
    import dltricks.lab.registry  # noqa: F401


def warm_up() -> None:
    """Build each kind of optimizer once (the first ``dltricks.optim`` optimizer of a process
    takes seconds: it imports torch's compiler) and import what training jobs use."""
    from dltricks.serve.surfaces import run_surface

    for optimizer in ("SGD", "Adam"):
        run_surface({"surface": "quadratic", "optimizer": optimizer, "steps": 2})
    import dltricks.data
    import dltricks.diagnose
    import dltricks.nn
    import dltricks.train  # noqa: F401


class _LibraryLoader:
    """Runs :func:`import_library` then :func:`warm_up` once per process, in one thread.

    Two threads importing the same package tree at once can deadlock on its circular imports
    (Python then raises in one of them), so every handler that needs the library waits for
    this thread instead of importing on its own: reads of the catalogue and the form wait for
    the imports, runs and jobs for the whole warm-up. One per process, as imports are.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._imported = threading.Event()
        self._done = threading.Event()

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="dltricks-warm-up", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        try:
            import_library()
        finally:
            self._imported.set()
        try:
            warm_up()
        finally:
            self._done.set()

    async def ready(self, *, runs: bool = False) -> None:
        """Wait for the imports (and, with ``runs``, the whole warm-up)."""
        self.start()
        event = self._done if runs else self._imported
        if not event.is_set():
            await run_in_threadpool(event.wait)


_LIBRARY = _LibraryLoader()


def create_app(
    *, jobs: JobManager | None = None, report_dir: str | Path | None = None
) -> Starlette:
    """The playground app. ``jobs`` runs the training jobs (default: 2 at once); a
    ``report_dir`` holding ``index.html`` (``dltricks report``'s output) is served under
    ``/report/`` and linked from the page."""
    from dltricks import __version__

    managers: list[JobManager] = [] if jobs is None else [jobs]
    managers_lock = threading.Lock()

    def manager() -> JobManager:
        with managers_lock:
            if not managers:
                from dltricks.serve.jobs import JobManager

                managers.append(JobManager())
            return managers[0]

    report = Path(report_dir) if report_dir is not None else None
    has_report = report is not None and (report / "index.html").is_file()
    surface_slots = threading.BoundedSemaphore(MAX_SURFACE_RUNS)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    async def index(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html")

    async def surfaces(request: Request) -> Response:
        await _LIBRARY.ready()
        from dltricks.serve.surfaces import surface_catalogue

        return JSONResponse(await run_in_threadpool(surface_catalogue))

    async def grid(request: Request) -> Response:
        await _LIBRARY.ready()
        text = request.query_params.get("n", "80")
        try:
            n = int(text)
        except ValueError:
            return _refused(RequestError(f"field 'n': expected an integer, got {text!r}", "n"))
        from dltricks.serve.surfaces import surface_grid

        try:
            return JSONResponse(
                await run_in_threadpool(surface_grid, request.path_params["name"], n)
            )
        except RequestError as error:
            status = 404 if error.field == "surface" else 422
            return JSONResponse({"error": str(error), "field": error.field}, status_code=status)

    async def surface_run(request: Request) -> Response:
        await _LIBRARY.ready(runs=True)
        try:
            body = await _json_body(request)
        except (_BodyTooLargeError, _NotJsonError) as error:
            return _body_errors(error)
        if not surface_slots.acquire(blocking=False):
            return JSONResponse(
                {"error": f"{MAX_SURFACE_RUNS} surface runs are in progress; retry shortly"},
                status_code=429,
            )
        try:
            from dltricks.serve.surfaces import run_surface

            return JSONResponse(await run_in_threadpool(run_surface, body))
        except RequestError as error:
            return _refused(error)
        finally:
            surface_slots.release()

    async def optimizers(request: Request) -> Response:
        await _LIBRARY.ready()
        from dltricks.serve.optimizers import OPTIMIZERS

        return JSONResponse(
            {
                name: {
                    "hyperparameters": {
                        k: list(v) if isinstance(v, tuple) else v for k, v in entry.defaults.items()
                    }
                }
                for name, entry in OPTIMIZERS.items()
            }
        )

    async def train(request: Request) -> Response:
        await _LIBRARY.ready(runs=True)
        try:
            body = await _json_body(request)
        except (_BodyTooLargeError, _NotJsonError) as error:
            return _body_errors(error)
        from dltricks.serve.jobs import TooManyJobsError

        try:
            job = await run_in_threadpool(lambda: manager().submit(body))
        except RequestError as error:
            return _refused(error)
        except TooManyJobsError as error:
            return JSONResponse({"error": str(error), "field": None}, status_code=429)
        return JSONResponse({"id": job.id, "status": job.status}, status_code=201)

    async def options(request: Request) -> Response:
        await _LIBRARY.ready()
        from dltricks.serve.jobs import train_options

        return JSONResponse(await run_in_threadpool(train_options))

    def _missing(job_id: str) -> JSONResponse:
        return JSONResponse({"error": f"no training job {job_id!r}", "field": "id"}, 404)

    async def job_get(request: Request) -> Response:
        await _LIBRARY.ready()
        job_id = request.path_params["job_id"]
        job = manager().get(job_id)
        return _missing(job_id) if job is None else JSONResponse(job.snapshot())

    async def job_delete(request: Request) -> Response:
        await _LIBRARY.ready(runs=True)
        job_id = request.path_params["job_id"]
        job = await run_in_threadpool(lambda: manager().cancel(job_id))
        return _missing(job_id) if job is None else JSONResponse(job.snapshot())

    async def report_info(request: Request) -> Response:
        await _LIBRARY.ready()
        from dltricks.lab.registry import TRICKS

        sections = [
            {"trick": t, "href": f"/report/index.html#{t.replace(' ', '-')}"} for t in TRICKS
        ]
        return JSONResponse({"available": has_report, "sections": sections})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        _LIBRARY.start()
        yield
        with managers_lock:
            started = list(managers)
        for jobs_ in started:
            await run_in_threadpool(jobs_.shutdown)

    routes = [
        Route("/", index),
        Route("/api/health", health),
        Route("/api/surfaces", surfaces),
        Route("/api/surfaces/run", surface_run, methods=["POST"]),
        Route("/api/surfaces/{name}/grid", grid),
        Route("/api/optimizers", optimizers),
        Route("/api/train", train, methods=["POST"]),
        Route("/api/train/options", options),
        Route("/api/train/{job_id}", job_get, methods=["GET"]),
        Route("/api/train/{job_id}", job_delete, methods=["DELETE"]),
        Route("/api/report", report_info),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    if has_report:
        routes.append(Mount("/report", StaticFiles(directory=report, html=True), name="report"))
    return Starlette(routes=routes, lifespan=lifespan)
