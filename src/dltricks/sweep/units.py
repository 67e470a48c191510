"""A ``unit(key, compute)`` backed by a sweep store: resumable, queryable training runs.

The comparison helper (:func:`dltricks.lab.compare.compare_optimizers`) sends every training
run through ``unit(key, compute) -> record``. :func:`store_unit` gives one that keeps each run
as a row of a SQLite store, the same file format as a sweep's (:mod:`dltricks.sweep.store`)::

    unit = store_unit("runs/my-comparison.sqlite")
    result = compare_optimizers(..., unit=unit)      # rerun: finished runs are read back
    rows = read_rows("runs/my-comparison.sqlite")    # or: sqlite3 runs/my-comparison.sqlite
    again = Comparison.from_store("runs/my-comparison.sqlite")

A unit's row has id ``config_hash({"unit": name, "key": key})``, ``experiment`` = ``name``,
``spec`` = ``{"unit": name, "key": key}`` and, when done, ``metrics`` = what ``compute``
returned. A key stored as done returns ``{**key, **metrics}`` without running; otherwise
``compute`` runs and its row is written in one transaction after it returns (an interrupted run
leaves nothing). A ``compute`` that raises is recorded as failed with its error, then the error
propagates; the next call runs it again.

Records go through JSON before they are returned, also the first time (NaN and infinity read
back as ``None``, tuples as lists), so a fresh run and a resumed one give identical records.
Two processes running the same units at once both compute them (the last write wins, with the
same values for a deterministic ``compute``).

A store file that is damaged (not a database, or damaged pages) is kept aside as
``NAME.sqlite.corrupt-<time>`` and a new one is started: its units are computed again. The
move is logged and listed in :attr:`StoreUnit.notices`.
"""

from __future__ import annotations

import json
import logging
import socket
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dltricks.lab.results import canonical_json, config_hash
from dltricks.sweep.store import (
    CorruptStoreError,
    RunRow,
    SweepStore,
    read_meta,
    read_rows,
    set_aside,
)

__all__ = ["UNITS_META", "StoreUnit", "read_units", "store_unit"]

UNITS_META = "units:"
_logger = logging.getLogger(__name__)


def _jsonable(value: Any) -> Any:
    return json.loads(canonical_json(value))


class StoreUnit:
    """``unit(key, compute) -> record`` that stores each unit in a SQLite store.

    Attributes:
        path: the store file.
        name: the group of units in the store (a store may hold several).
        ran: keys of the units computed by this object (not read back), in call order.
        order: ids of the units asked for since the last :meth:`describe`, in call order.
        notices: what was found and repaired on opening (a damaged store set aside).
    """

    def __init__(self, path: str | Path, *, name: str | None = None) -> None:
        self.path = Path(path)
        self.name = name if name is not None else self.path.stem
        if not self.name:
            raise ValueError("a unit store needs a non-empty name")
        self.ran: list[dict[str, Any]] = []
        self.order: list[str] = []
        self.notices: list[str] = []
        # Create the file and its tables now: a bad path fails before any training.
        try:
            SweepStore(self.path).close()
        except CorruptStoreError as error:
            aside = set_aside(self.path)
            notice = f"{error}; kept as {aside.name}, its units are computed again"
            _logger.warning("%s", notice)
            self.notices.append(notice)
            SweepStore(self.path).close()

    def unit_id(self, key: dict[str, Any]) -> str:
        """The row id of ``key`` in this store."""
        return config_hash({"unit": self.name, "key": key})

    def __call__(
        self, key: dict[str, Any], compute: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        key = _jsonable(key)
        run_id = self.unit_id(key)
        spec = {"unit": self.name, "key": key}
        self.order.append(run_id)
        with SweepStore(self.path) as store:
            found = store.rows([run_id])
        # The spec check guards against a (vanishingly unlikely) id collision.
        if found and found[0].status == "done" and found[0].spec == spec:
            return {**key, **(found[0].metrics or {})}
        started, clock = time.time(), time.perf_counter()
        try:
            metrics = _jsonable(compute())
        except Exception as error:
            self._write(run_id, spec, False, None, _trace(error), started, clock)
            raise
        self._write(run_id, spec, True, metrics, None, started, clock)
        self.ran.append(key)
        return {**key, **metrics}

    def _write(
        self,
        run_id: str,
        spec: dict[str, Any],
        ok: bool,
        metrics: dict[str, Any] | None,
        error: str | None,
        started: float,
        clock: float,
    ) -> None:
        with SweepStore(self.path) as store:
            store.record(
                run_id,
                experiment=self.name,
                spec=spec,
                ok=ok,
                metrics=metrics,
                error=error,
                started=started,
                finished=time.time(),
                duration=time.perf_counter() - clock,
                host=socket.gethostname(),
            )

    def describe(self, info: dict[str, Any]) -> None:
        """Store ``info`` (JSON) with the ids of the units asked for since the last call.

        The comparison helper calls it when it has every record, so the comparison can be
        rebuilt from the store (:func:`read_units`, ``Comparison.from_store``).
        """
        with SweepStore(self.path) as store:
            store.put_meta({UNITS_META + self.name: {"info": info, "units": list(self.order)}})
        self.order = []


def store_unit(path: str | Path, *, name: str | None = None) -> StoreUnit:
    """A ``unit(key, compute)`` that keeps each unit in the SQLite store at ``path``.

    ``name`` (default: the file's stem) tells apart groups of units sharing a store.
    """
    return StoreUnit(path, name=name)


def read_units(
    path: str | Path, *, name: str | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(info, records)`` of the unit group ``name`` as its last :meth:`StoreUnit.describe`
    left it: the caller's info and the records in the order they were asked for.

    Raises:
        FileNotFoundError: no store at ``path``.
        ValueError: no such group was described (it did not finish: run it again to complete
            it) or one of its units is not done.
    """
    path = Path(path)
    name = name if name is not None else path.stem
    entry = read_meta(path, UNITS_META + name).get(UNITS_META + name)
    if entry is None:
        groups = sorted(k[len(UNITS_META) :] for k in read_meta(path, UNITS_META))
        raise ValueError(
            f"{path} has no finished unit group {name!r} (finished: {', '.join(groups) or 'none'});"
            " an interrupted comparison is completed by running it again with the same store"
        )
    rows: dict[str, RunRow] = {r.id: r for r in read_rows(path, entry["units"])}
    records = []
    for run_id in entry["units"]:
        row = rows.get(run_id)
        if row is None or row.status != "done":
            raise ValueError(f"unit {run_id} of {name!r} in {path} is not done")
        records.append({**row.spec["key"], **(row.metrics or {})})
    return entry["info"], records


def _trace(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)).strip()[-4000:]
