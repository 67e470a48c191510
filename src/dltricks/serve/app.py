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

Start-up is kept short: the server answers once Starlette is imported, and what the page reads
when it loads (the surfaces, the optimizers, the job form, the report's sections) comes from
:mod:`dltricks.serve.catalogue` without torch. Torch and the library are imported in a
background thread once the server is up, in the :data:`STAGES` that the requests needing them
wait for: contour grids first, then surface runs, then training jobs.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

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


def import_surfaces() -> None:
    """Import torch and what contour grids and surface runs read."""
    from dltricks.serve.surfaces import run_surface, surface_grid  # noqa: F401


def warm_up_runs() -> None:
    """Run each kind of optimizer once (the first of a process sets up what later ones reuse)."""
    from dltricks.serve.surfaces import run_surface

    for optimizer in ("SGD", "Adam"):
        run_surface({"surface": "quadratic", "optimizer": optimizer, "steps": 2})


def import_jobs() -> None:
    """Import what training jobs use (scikit-learn too: the digits loader imports it on first
    use, and two jobs starting at once would import it in two threads)."""
    import sklearn.datasets  # noqa: F401

    import dltricks.data
    import dltricks.diagnose
    import dltricks.nn
    import dltricks.serve.jobs
    import dltricks.train  # noqa: F401


Stage = Literal["surfaces", "runs", "jobs"]
#: What the background loader does, in order, and what each stage makes ready: ``surfaces``
#: (contour grids), ``runs`` (surface runs), ``jobs`` (training jobs).
STAGES: tuple[tuple[Stage, Callable[[], None]], ...] = (
    ("surfaces", import_surfaces),
    ("runs", warm_up_runs),
    ("jobs", import_jobs),
)


class _LibraryLoader:
    """Runs the :data:`STAGES` once per process, in one thread, in order.

    Two threads importing the same package tree at once can deadlock on its circular imports
    (Python then raises in one of them), so every handler that needs the library waits for
    the stage that imports what it uses instead of importing on its own. What the page reads
    when it loads needs none of them (:mod:`dltricks.serve.catalogue`). One per process, as
    imports are. A stage that fails marks every stage done: the handlers' own imports then
    raise the error rather than wait forever.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._done = {stage: threading.Event() for stage, _ in STAGES}

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="dltricks-warm-up", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        try:
            for stage, load in STAGES:
                load()
                self._done[stage].set()
        finally:
            for event in self._done.values():
                event.set()

    async def ready(self, stage: Stage) -> None:
        """Wait until ``stage`` (and the stages before it) has run."""
        self.start()
        event = self._done[stage]
        if not event.is_set():
            await run_in_threadpool(event.wait)


_LIBRARY = _LibraryLoader()


def _catalogue() -> dict[str, Any]:
    # Imported here: ``python -m dltricks.serve.catalogue`` runs that module as a script.
    from dltricks.serve.catalogue import load_catalogue

    return load_catalogue()


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
        return JSONResponse(_catalogue()["surfaces"])

    async def grid(request: Request) -> Response:
        await _LIBRARY.ready("surfaces")
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
        await _LIBRARY.ready("runs")
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
        return JSONResponse(_catalogue()["optimizers"])

    async def train(request: Request) -> Response:
        await _LIBRARY.ready("jobs")
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
        return JSONResponse(_catalogue()["train_options"])

    def _missing(job_id: str) -> JSONResponse:
        return JSONResponse({"error": f"no training job {job_id!r}", "field": "id"}, 404)

    async def job_get(request: Request) -> Response:
        await _LIBRARY.ready("jobs")
        job_id = request.path_params["job_id"]
        job = manager().get(job_id)
        return _missing(job_id) if job is None else JSONResponse(job.snapshot())

    async def job_delete(request: Request) -> Response:
        await _LIBRARY.ready("jobs")
        job_id = request.path_params["job_id"]
        job = await run_in_threadpool(lambda: manager().cancel(job_id))
        return _missing(job_id) if job is None else JSONResponse(job.snapshot())

    async def report_info(request: Request) -> Response:
        sections = [
            {"trick": t, "href": f"/report/index.html#{t.replace(' ', '-')}"}
            for t in _catalogue()["tricks"]
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
