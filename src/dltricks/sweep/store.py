"""The results store of a sweep: one SQLite file, one row per run.

Rows go ``pending -> running -> done | failed``. Only the sweep's driver writes (workers return
their results to it), and every change is one transaction: the pending rows of a sweep are
added together, a run is marked running when it is handed to an executor, and its outcome
(status, metrics, error, timings, attempt count) is written in one UPDATE when it finishes, so a
reader never sees half a run. The journal is in WAL mode: readers (``dltricks sweep`` in
another terminal, a report, :func:`read_rows`) see the last committed state while the sweep
writes, and a killed driver leaves a file SQLite recovers on the next open.

``attempts`` counts finished attempts (done or failed); a run that was ``running`` when its
driver died was never finished, so it goes back to ``pending`` without using an attempt.

Beside the rows, a ``meta`` table holds JSON descriptions by key: ``sweep:<id>`` for each sweep
written into the store (its grid, seeds, the command that reproduces it and its run ids, in
grid order; see :func:`dltricks.sweep.run.run_sweep`) and ``units:<name>`` for a comparison
whose training runs went through :func:`dltricks.sweep.units.store_unit`.

Every SQLite error is raised as a :class:`StoreError` naming the file and the cause (a full
disk, a read-only folder, a file that is not a database); a damaged file raises its subclass
:class:`CorruptStoreError`, which :func:`set_aside` answers by moving the file (and its WAL
journal) aside for inspection so that a new store can be rebuilt from the run folders.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from dltricks.lab.results import canonical_json

__all__ = [
    "STATUSES",
    "CorruptStoreError",
    "RunRow",
    "StoreError",
    "SweepStore",
    "read_meta",
    "read_rows",
    "set_aside",
]

STATUSES = ("pending", "running", "done", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    experiment TEXT NOT NULL,
    spec TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    metrics TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    started REAL,
    finished REAL,
    duration REAL,
    host TEXT,
    out_dir TEXT
);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


class StoreError(sqlite3.DatabaseError):
    """A sweep store cannot be opened, read or written; the message names the file and why.

    A subclass of :class:`sqlite3.DatabaseError`, so code that catches SQLite's errors still
    catches it.
    """

    def __init__(self, path: Path, cause: str) -> None:
        self.path = path
        self.cause = cause
        super().__init__(f"sweep store {path}: {cause}")


class CorruptStoreError(StoreError):
    """The store file is not an SQLite database, or its pages are damaged."""


# SQLite's result codes for a damaged file (SQLITE_CORRUPT, SQLITE_NOTADB), and the messages
# they come with where Python (before 3.11) does not expose the code.
_CORRUPT_CODES = frozenset({11, 26})
_CORRUPT_MESSAGES = ("file is not a database", "database disk image is malformed")


def _is_corrupt(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _CORRUPT_CODES:
        return True
    return any(m in str(error) for m in _CORRUPT_MESSAGES)


@contextlib.contextmanager
def _naming_the_store(path: Path) -> Iterator[None]:
    """Raise SQLite's errors as :class:`StoreError` naming ``path``."""
    try:
        yield
    except StoreError:
        raise
    except sqlite3.Error as error:
        kind = CorruptStoreError if _is_corrupt(error) else StoreError
        raise kind(path, str(error)) from error


def set_aside(path: str | Path) -> Path:
    """Move a damaged store (and its ``-wal``/``-shm`` files) aside; returns the new name.

    The file is kept, never deleted: ``NAME.sqlite.corrupt-<UTC time>``, so a person can
    inspect or recover it while a new store is rebuilt at ``path``.
    """
    path = Path(path)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    counter = 1
    while aside.exists():
        counter += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{counter}")
    path.rename(aside)
    for suffix in ("-wal", "-shm"):
        journal = path.with_name(path.name + suffix)
        if journal.exists():
            journal.rename(aside.with_name(aside.name + suffix))
    return aside


@dataclass(frozen=True)
class RunRow:
    """One run as stored.

    Attributes:
        id: the run id (hash of the run's configuration).
        spec: experiment, quick, overrides (the grid point) and seed.
        status: pending, running, done or failed.
        metrics: for a done run, ``{"summary": ..., "records": [...]}``: the experiment's
            summary and its records' scalar fields (curves are left in results.json).
        error: for a failed run, the error and its traceback.
        attempts: finished attempts (done or failed).
        started, finished: Unix times of the last attempt, as the worker saw them.
        duration: seconds of the last attempt, measured in the worker.
        host: the machine that ran the last attempt.
        out_dir: where the run wrote its outputs.
    """

    id: str
    spec: dict[str, Any]
    status: str
    metrics: dict[str, Any] | None
    error: str | None
    attempts: int
    started: float | None
    finished: float | None
    duration: float | None
    host: str | None
    out_dir: str | None


def _row(values: sqlite3.Row) -> RunRow:
    return RunRow(
        id=values["id"],
        spec=json.loads(values["spec"]),
        status=values["status"],
        metrics=json.loads(values["metrics"]) if values["metrics"] is not None else None,
        error=values["error"],
        attempts=values["attempts"],
        started=values["started"],
        finished=values["finished"],
        duration=values["duration"],
        host=values["host"],
        out_dir=values["out_dir"],
    )


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT), so each
    # change is exactly one transaction and nothing waits in an implicit one.
    connection = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    connection.row_factory = sqlite3.Row
    return connection


class SweepStore:
    """A sweep's SQLite store (the driver's handle; use :func:`read_rows` to only read)."""

    def __init__(self, path: str | Path) -> None:
        """Open (or create) the store at ``path``.

        Raises:
            CorruptStoreError: the file is not an SQLite database or is damaged.
            StoreError: any other SQLite error (full disk, read-only file or folder).
            OSError: the folder cannot be created.
        """
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _naming_the_store(self.path):
            self._db = _connect(self.path)
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                # NORMAL in WAL mode: a committed transaction survives the death of this
                # process (SIGKILL included) and the file is never corrupt; only a power cut
                # can lose the last few commits, whose runs then run again. FULL fsyncs every
                # commit: measured 12.8 ms against 0.17 ms per run here, which would cap a
                # cluster's throughput.
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(_SCHEMA)
                # A damaged page need not show in the schema: read every table once.
                self._db.execute("SELECT count(*), max(length(spec || metrics)) FROM runs")
                self._db.execute("SELECT count(*), max(length(value)) FROM meta")
            except BaseException:
                self._db.close()
                raise

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    def __enter__(self) -> SweepStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _transaction(self, statements: Iterable[tuple[str, Sequence[Any]]]) -> None:
        db = self._db
        with _naming_the_store(self.path):
            db.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in statements:
                    db.execute(sql, params)
                db.execute("COMMIT")
            except BaseException:
                # A failed COMMIT (full disk) leaves the transaction open: end it, so the
                # connection stays usable and nothing half-done is kept.
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise

    def add_pending(
        self,
        runs: Iterable[tuple[str, str, dict[str, Any], str]],
        *,
        meta: dict[str, Any] | None = None,
    ) -> None:
        """Add ``(id, experiment, spec, out_dir)`` rows as pending; existing rows are kept.

        ``meta`` entries (key -> JSON value) are written in the same transaction, replacing
        entries of the same key.
        """
        rows = (
            (
                "INSERT OR IGNORE INTO runs (id, experiment, spec, status, out_dir) "
                "VALUES (?, ?, ?, 'pending', ?)",
                (run_id, experiment, canonical_json(spec), out_dir),
            )
            for run_id, experiment, spec, out_dir in runs
        )
        self._transaction([*rows, *_meta_statements(meta or {})])

    def put_meta(self, entries: dict[str, Any]) -> None:
        """Write ``entries`` (key -> JSON value) in one transaction, replacing same keys."""
        self._transaction(_meta_statements(entries))

    def meta(self, prefix: str = "") -> dict[str, Any]:
        """The meta entries whose key starts with ``prefix``, by key."""
        with _naming_the_store(self.path):
            return _select_meta(self._db, prefix)

    def record(
        self,
        run_id: str,
        *,
        experiment: str,
        spec: dict[str, Any],
        ok: bool,
        metrics: dict[str, Any] | None,
        error: str | None,
        started: float,
        finished: float,
        duration: float,
        host: str | None,
    ) -> None:
        """Insert or update one run with its finished attempt, in one transaction.

        For runs that were never pending (a comparison's units): the row appears complete or
        not at all. An existing row keeps its place (rowid) and counts one more attempt.
        """
        self._transaction(
            [
                (
                    "INSERT INTO runs (id, experiment, spec, status, metrics, error, attempts, "
                    "started, finished, duration, host) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?) "
                    "ON CONFLICT (id) DO UPDATE SET experiment=excluded.experiment, "
                    "spec=excluded.spec, status=excluded.status, metrics=excluded.metrics, "
                    "error=excluded.error, attempts=runs.attempts+1, started=excluded.started, "
                    "finished=excluded.finished, duration=excluded.duration, host=excluded.host",
                    (
                        run_id,
                        experiment,
                        canonical_json(spec),
                        "done" if ok else "failed",
                        canonical_json(metrics) if ok and metrics is not None else None,
                        None if ok else error,
                        started,
                        finished,
                        duration,
                        host,
                    ),
                )
            ]
        )

    def release_stale(self) -> int:
        """Put runs left ``running`` by a dead driver back to pending; returns how many.

        Call it only while holding the sweep's lock (no live driver can own them then).
        """
        before = self._db.total_changes
        self._transaction([("UPDATE runs SET status='pending' WHERE status='running'", ())])
        return self._db.total_changes - before

    def mark_running(self, run_id: str) -> None:
        """The run was handed to an executor (it may still wait in a queue there)."""
        self._transaction([("UPDATE runs SET status='running' WHERE id=?", (run_id,))])

    def finish(
        self,
        run_id: str,
        *,
        ok: bool,
        metrics: dict[str, Any] | None,
        error: str | None,
        started: float,
        finished: float,
        duration: float,
        host: str | None,
    ) -> None:
        """Record one finished attempt (done with metrics, or failed with its error)."""
        self._transaction(
            [
                (
                    "UPDATE runs SET status=?, metrics=?, error=?, attempts=attempts+1, "
                    "started=?, finished=?, duration=?, host=? WHERE id=?",
                    (
                        "done" if ok else "failed",
                        canonical_json(metrics) if ok and metrics is not None else None,
                        None if ok else error,
                        started,
                        finished,
                        duration,
                        host,
                        run_id,
                    ),
                )
            ]
        )

    def reset(self, run_id: str) -> None:
        """Make a run pending with no attempts used: its recorded outcome no longer stands
        (its results were lost or damaged), so its earlier attempts do not count either."""
        self._transaction(
            [
                (
                    "UPDATE runs SET status='pending', metrics=NULL, error=NULL, attempts=0 "
                    "WHERE id=?",
                    (run_id,),
                )
            ]
        )

    def restore(
        self,
        run_id: str,
        *,
        experiment: str,
        spec: dict[str, Any],
        metrics: dict[str, Any],
        duration: float | None,
    ) -> None:
        """Record a run as done from its own finished results, in one transaction.

        Used to rebuild a row that disagrees with the run's results, or a store that lost it;
        timings already in the row are kept.
        """
        self._transaction(
            [
                (
                    "INSERT INTO runs (id, experiment, spec, status, metrics, attempts, duration) "
                    "VALUES (?, ?, ?, 'done', ?, 1, ?) "
                    "ON CONFLICT (id) DO UPDATE SET experiment=excluded.experiment, "
                    "spec=excluded.spec, status='done', metrics=excluded.metrics, error=NULL, "
                    "attempts=max(runs.attempts, 1), "
                    "duration=coalesce(runs.duration, excluded.duration)",
                    (run_id, experiment, canonical_json(spec), canonical_json(metrics), duration),
                )
            ]
        )

    def rows(self, ids: Sequence[str] | None = None) -> list[RunRow]:
        """The rows of ``ids`` in that order (missing ids are skipped), or all rows by id."""
        with _naming_the_store(self.path):
            return _select(self._db, ids)


def _meta_statements(entries: dict[str, Any]) -> list[tuple[str, Sequence[Any]]]:
    return [
        ("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, canonical_json(value)))
        for key, value in entries.items()
    ]


def _select_meta(db: sqlite3.Connection, prefix: str) -> dict[str, Any]:
    # substr, not LIKE: keys may hold '%' or '_'.
    rows = db.execute(
        "SELECT key, value FROM meta WHERE substr(key, 1, ?) = ? ORDER BY key",
        (len(prefix), prefix),
    )
    return {r["key"]: json.loads(r["value"]) for r in rows}


def _select(db: sqlite3.Connection, ids: Sequence[str] | None) -> list[RunRow]:
    if ids is None:
        return [_row(r) for r in db.execute("SELECT * FROM runs ORDER BY id")]
    found: dict[str, RunRow] = {}
    # SQLite limits bound parameters per statement; ask in chunks.
    for start in range(0, len(ids), 500):
        chunk = list(ids[start : start + 500])
        marks = ",".join("?" * len(chunk))
        for r in db.execute(f"SELECT * FROM runs WHERE id IN ({marks})", chunk):
            found[r["id"]] = _row(r)
    return [found[i] for i in ids if i in found]


_T = TypeVar("_T")


def _read(
    path: str | Path, query: Callable[[sqlite3.Connection], _T], empty: _T, retries: int
) -> _T:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no sweep store at {path}")
    for attempt in range(retries):
        with _naming_the_store(path):
            db = _connect(path)
            try:
                return query(db)
            except sqlite3.OperationalError as error:
                if "no such table" in str(error):
                    # A driver has created the file and not yet its tables, or an older
                    # store without a meta table.
                    return empty
                # A WAL reader can briefly find the database locked while a checkpoint runs.
                if "locked" not in str(error) or attempt == retries - 1:
                    raise
            finally:
                db.close()
        time.sleep(0.1)
    raise AssertionError("unreachable")


def read_rows(
    path: str | Path, ids: Sequence[str] | None = None, *, retries: int = 50
) -> list[RunRow]:
    """Read a sweep's rows without writing to it (safe while the sweep runs).

    Raises:
        FileNotFoundError: no store at ``path``.
        StoreError: the store cannot be read (:class:`CorruptStoreError`: it is damaged).
    """
    return _read(path, lambda db: _select(db, ids), [], retries)


def read_meta(path: str | Path, prefix: str = "", *, retries: int = 50) -> dict[str, Any]:
    """Read a store's meta entries whose key starts with ``prefix`` (read-only, like
    :func:`read_rows`).

    Raises:
        FileNotFoundError: no store at ``path``.
        StoreError: the store cannot be read (:class:`CorruptStoreError`: it is damaged).
    """
    return _read(path, lambda db: _select_meta(db, prefix), {}, retries)
