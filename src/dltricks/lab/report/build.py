"""``dltricks report``: run the experiments (reusing unchanged ones) and write the page."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from dltricks import __version__
from dltricks.data import atomic_write_bytes
from dltricks.figure_text import read_description
from dltricks.lab.registry import TRICKS, Experiment, all_experiments
from dltricks.lab.report.data import DATA_DIR, write_data_files
from dltricks.lab.report.page import (
    DataLink,
    ExperimentView,
    FigureView,
    SectionView,
    VerdictView,
    anchor_of,
    render_page,
)
from dltricks.lab.report.story import lecture_order
from dltricks.lab.report.sweeps import sweep_views
from dltricks.lab.report.tables import results_table
from dltricks.lab.results import read_json

INDEX = "index.html"


class ReportProgress(Protocol):
    """Where the report tells which experiments run and finish."""

    def start(self, names: Sequence[str]) -> None: ...

    def finished(self, name: str, status: str) -> None: ...


class _NoProgress:
    def start(self, names: Sequence[str]) -> None:
        return None

    def finished(self, name: str, status: str) -> None:
        return None


@dataclass
class ReportOutcome:
    """What a report run did."""

    index: Path
    ran: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def _run_one(name: str, runs_dir: str, quick: bool, seed: int, force: bool) -> tuple[str, bool]:
    """Run (or reuse) one experiment; returns its results path and reuse flag.

    One torch thread, as ``dltricks run`` uses by default: results are bit-identical only for
    the same thread count, and the report reuses runs made by either command.
    """
    import torch

    from dltricks.lab.runner import run_experiment

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        outcome = run_experiment(
            name,
            out_root=Path(runs_dir),
            quick=quick,
            seed=seed,
            reuse=not force,
            resume=not force and _interrupted(name, Path(runs_dir), quick, seed),
        )
    finally:
        torch.set_num_threads(previous)
    return str(outcome.results_path), outcome.reused


def _interrupted(name: str, runs_dir: Path, quick: bool, seed: int) -> bool:
    """Whether ``runs_dir/name`` holds an unfinished run of today's configuration, whose
    finished units a rerun of the report continues from (instead of starting afresh)."""
    from dltricks.lab.results import config_hash
    from dltricks.lab.runner import RUN_FILE, run_config

    config = run_config(name, quick=quick, seed=seed, seeds=None, data_dir=None)
    try:
        previous = read_json(runs_dir / name / RUN_FILE)
    except (OSError, ValueError):
        return False  # none, unreadable or damaged: the run starts afresh
    return previous.get("status") == "running" and previous.get("config_hash") == config_hash(
        config
    )


def _cached_path(name: str, runs_dir: Path, quick: bool, seed: int) -> Path | None:
    """The results file of ``name`` if it was made with today's configuration, else None."""
    from dltricks.lab.runner import RESULTS_FILE, cached_results, run_config

    config = run_config(name, quick=quick, seed=seed, seeds=None, data_dir=None)
    try:
        cached = cached_results(runs_dir / name, config)
    except (OSError, ValueError):
        return None  # damaged or unreadable: the worker reruns and reports it
    return None if cached is None else runs_dir / name / RESULTS_FILE


def _setup(results: dict[str, Any]) -> dict[str, str]:
    config = results.get("config", {})
    setup = {
        "size": "quick" if config.get("quick") else "full",
        "seeds": ", ".join(str(s) for s in config.get("seeds", [])),
    }
    for key, value in config.get("config", {}).items():
        text = json.dumps(value) if not isinstance(value, str) else value
        setup[key] = text if len(text) <= 160 else text[:157] + "..."
    return setup


def _reproduce(results: dict[str, Any]) -> str:
    config = results.get("config", {})
    seeds = config.get("seeds", [0])
    command = f"dltricks run {results['experiment']}"
    if config.get("quick"):
        command += " --quick"
    return command + f" --seed {seeds[0]} --seeds {len(seeds)}"


def _anchor(experiment: Experiment, trick: str) -> str:
    """The experiment's id in ``trick``'s section: its name in its first section (where the
    verdict table and ``#name`` links lead), ``name--section`` in the others."""
    first = next(t for t in TRICKS if t in experiment.tricks)
    return experiment.name if trick == first else f"{experiment.name}--{anchor_of(trick)}"


def _question(experiment: Experiment) -> str:
    return experiment.question or f"What does {experiment.name} show?"


def _figure(src: Path, out_dir: Path, question: str) -> FigureView:
    name = src.stem.replace("_", " ")
    alt = read_description(src) or f"Figure {name!r} of the experiment that asks: {question}"
    return FigureView(src.relative_to(out_dir).as_posix(), alt, name)


def _verdicts(experiment: Experiment, trick: str, results: dict[str, Any]) -> list[VerdictView]:
    views = []
    for v in results.get("verdicts", []):
        own = v.get("trick") or experiment.tricks[0]
        if own != trick:
            continue
        views.append(
            VerdictView(
                claim=str(v.get("claim", "")),
                verdict=str(v.get("verdict", "")),
                reason=str(v.get("reason", "")),
                rule=str(v.get("rule", "")),
                trick=own,
                experiment=experiment.name,
                question=_question(experiment),
                anchor=_anchor(experiment, trick),
            )
        )
    return views


def _view(
    experiment: Experiment,
    trick: str,
    results: dict[str, Any],
    figures_dir: Path,
    out_dir: Path,
    data: list[DataLink],
) -> ExperimentView:
    summary = results.get("summary", {})
    findings = summary.get("findings", {})
    finding = findings.get(trick) if isinstance(findings, dict) else None
    own_table = experiment.table(results) if experiment.table is not None else None
    return ExperimentView(
        name=experiment.name,
        question=_question(experiment),
        claim=results.get("claim", ""),
        source=results.get("source", ""),
        finding=str(finding or summary.get("finding", "(no finding recorded)")),
        figures=[
            _figure(figures_dir / f, out_dir, _question(experiment))
            for f in results.get("figures", [])
            if (figures_dir / f).exists()
        ],
        table=results_table(results, own_table),
        setup=_setup(results),
        reproduce=_reproduce(results),
        verdicts=_verdicts(experiment, trick, results),
        data=data,
        anchor=_anchor(experiment, trick),
    )


def _copy_figures(results_path: Path, names: list[str], target: Path) -> None:
    # Replace the folder so figures of an older configuration do not linger.
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for figure in names:
        source = results_path.parent / figure
        if source.exists():
            shutil.copy2(source, target / figure)


def build_report(
    *,
    out_dir: Path,
    runs_dir: Path,
    quick: bool,
    only: Sequence[str] | None = None,
    force: bool = False,
    seed: int = 0,
    workers: int = 1,
    progress: ReportProgress | None = None,
) -> ReportOutcome:
    """Run the lab's experiments into ``runs_dir`` and write ``out_dir/index.html``.

    Experiments whose results exist with the same configuration are reused unless ``force``; an
    experiment interrupted in an earlier report (or ``dltricks run``) of the same configuration
    continues from its finished units unless ``force``.
    Every experiment runs with one torch thread; with ``workers > 1`` in parallel processes.
    A failed experiment is shown as failed on the page; the others still run. The sweep stores in
    ``runs_dir`` (``sweep-*.sqlite``) are shown, as they are, in a last section, Sweeps.
    """
    experiments = all_experiments()
    names = list(experiments) if not only else list(only)
    unknown = [n for n in names if n not in experiments]
    if unknown:
        raise ValueError(
            f"unknown experiment(s) {', '.join(unknown)}; known: {', '.join(experiments)}"
        )
    sink = progress or _NoProgress()
    outcome = ReportOutcome(index=out_dir / INDEX)
    start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    sink.start(names)
    paths: dict[str, Path] = {}
    to_run = []
    for name in names:
        cached = None if force else _cached_path(name, runs_dir, quick, seed)
        if cached is None:
            to_run.append(name)
        else:
            paths[name] = cached
            outcome.reused.append(name)
            sink.finished(name, "reused")
    names_to_run = to_run
    if workers > 1 and len(names_to_run) > 1:
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
        try:
            pending: dict[Future[tuple[str, bool]], str] = {
                pool.submit(_run_one, n, str(runs_dir), quick, seed, force): n for n in names_to_run
            }
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    name = pending.pop(future)
                    _collect(name, future, outcome, paths, sink)
        except BaseException:
            # Interrupted (Ctrl-C, SIGTERM): stop the workers now rather than wait for their
            # experiments; their finished units stay, and the next report continues from them.
            pool.shutdown(wait=False, cancel_futures=True)
            for child in multiprocessing.active_children():
                child.terminate()
            raise
        pool.shutdown()
    else:
        for name in names_to_run:
            result: Future[tuple[str, bool]] = Future()
            try:
                result.set_result(_run_one(name, str(runs_dir), quick, seed, force))
            except Exception as error:  # one failed experiment must not stop the report
                result.set_exception(error)
            _collect(name, result, outcome, paths, sink)

    sections = [SectionView(trick) for trick in TRICKS]
    names = lecture_order(names)
    for name in names:
        experiment = experiments[name]
        if name in outcome.failed:
            views = {
                trick: ExperimentView(
                    name=name,
                    question=_question(experiment),
                    claim=experiment.claim,
                    source=experiment.source,
                    finding="",
                    figures=[],
                    table=results_table({}),
                    setup={},
                    reproduce=f"dltricks run {name}" + (" --quick" if quick else ""),
                    error=outcome.failed[name],
                    anchor=_anchor(experiment, trick),
                )
                for trick in experiment.tricks
            }
        else:
            results = read_json(paths[name])
            figures_dir = out_dir / "figures" / name
            _copy_figures(paths[name], results.get("figures", []), figures_dir)
            data = [
                DataLink(label, (out_dir / DATA_DIR / file).relative_to(out_dir).as_posix())
                for label, file in write_data_files(paths[name], results, out_dir / DATA_DIR)
            ]
            views = {
                trick: _view(experiment, trick, results, figures_dir, out_dir, data)
                for trick in experiment.tricks
            }
        for section in sections:
            if section.trick in views:
                section.experiments.append(views[section.trick])
    size = "quick" if quick else "full"
    meta = (
        f"dltricks {__version__}, {size} size, experiments: {', '.join(names)}. "
        f"Made with: dltricks report{' --quick' if quick else ''}"
        + (f" --only {','.join(names)}" if only else "")
    )
    sweeps = sweep_views(runs_dir)
    if sweeps:
        meta += f". Sweeps: {len(sweeps)} in {len({v.store for v in sweeps})} store(s)"
    html = render_page(
        sections, title="Tips for training deep networks, measured", meta=meta, sweeps=sweeps
    )
    atomic_write_bytes(outcome.index, html.encode())
    outcome.seconds = time.perf_counter() - start
    return outcome


def _collect(
    name: str,
    future: Future[tuple[str, bool]],
    outcome: ReportOutcome,
    paths: dict[str, Path],
    sink: ReportProgress,
) -> None:
    error = future.exception()
    if error is not None:
        outcome.failed[name] = f"{type(error).__name__}: {error}"
        sink.finished(name, "failed")
        return
    path, reused = future.result()
    paths[name] = Path(path)
    (outcome.reused if reused else outcome.ran).append(name)
    sink.finished(name, "reused" if reused else "done")
