"""Run an experiment into its own folder: config, resumable units, results.json, figures."""

from __future__ import annotations

import contextlib
import fcntl
import os
import platform
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dltricks import __version__
from dltricks.lab.context import ProgressSink, RunContext, SilentProgress
from dltricks.lab.registry import get_experiment
from dltricks.lab.results import config_hash, read_json, write_json
from dltricks.lab.settings import SEEDS, ExperimentConfig, SettingError
from dltricks.lab.verdicts import check_verdicts

RESULTS_FILE = "results.json"
RUN_FILE = "run.json"
LOCK_FILE = ".lock"


class RunError(Exception):
    """A run cannot start or continue; the message says why and what to do."""


@dataclass(frozen=True)
class RunOutcome:
    """Where a finished run wrote its results, and whether it was reused."""

    name: str
    out_dir: Path
    results_path: Path
    results: dict[str, Any]
    reused: bool
    seconds: float
    notices: tuple[str, ...] = ()


def resolve_device(device: str) -> torch.device:
    """``"cpu"`` or ``"cuda"`` (or ``"cuda:N"``), checked against what this machine has."""
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise RunError(f"device {device!r} requested but CUDA is not available here")
        return torch.device(device)
    raise RunError(f"unknown device {device!r}; use cpu or cuda")


#: The largest seed: numpy's generators and many tools take seeds below 2**32.
MAX_SEED = 2**32 - 1


def run_config(
    name: str,
    *,
    quick: bool,
    seed: int,
    seeds: int | None,
    data_dir: Path | None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The full, resolved configuration of a run; its hash decides whether old results apply.

    ``overrides`` are checked against the experiment's typed settings
    (:mod:`dltricks.lab.settings`) and stored normalised.

    Raises:
        RunError: an unknown setting, a value its rule refuses, or a bad seed range (one line
            naming the setting and what it allows).
    """
    experiment = get_experiment(name)
    defaults = experiment.configure(quick)
    if not isinstance(defaults, ExperimentConfig):
        raise TypeError(
            f"experiment {name!r}: configure() must return an ExperimentConfig, "
            f"got {type(defaults).__name__}"
        )
    try:
        config = defaults.with_overrides(overrides or {}).to_dict()
    except SettingError as error:
        raise RunError(str(error)) from None
    count = int(config.get("seeds", 1)) if seeds is None else seeds
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= SEEDS.high:
        raise RunError(f"--seeds must be an integer from 1 to {SEEDS.high}, got {count!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise RunError(f"--seed must be an integer from 0 to {MAX_SEED}, got {seed!r}")
    if seed + count - 1 > MAX_SEED:
        raise RunError(
            f"--seed {seed} with {count} seeds passes the largest seed {MAX_SEED}; "
            "use a smaller --seed"
        )
    return {
        "experiment": name,
        "quick": quick,
        "seeds": list(range(seed, seed + count)),
        "config": config,
        "data_dir": str(data_dir) if data_dir is not None else None,
    }


@contextlib.contextmanager
def exclusive_lock(out_dir: Path) -> Iterator[None]:
    """Refuse to run when another process is writing into the same folder."""
    out_dir.mkdir(parents=True, exist_ok=True)
    lock_path = out_dir / LOCK_FILE
    handle = lock_path.open("a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunError(
                f"another dltricks run is writing into {out_dir}; wait for it or use another --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()


def cached_results(out_dir: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """The finished results in ``out_dir`` if they were made with exactly ``config``."""
    path = out_dir / RESULTS_FILE
    if not path.exists():
        return None
    results = read_json(path)
    if results.get("config_hash") != config_hash(config):
        return None
    if "verdicts" not in results:
        return None  # made before experiments judged their claims: run again to judge them
    return results


def run_experiment(
    name: str,
    *,
    out_root: Path,
    quick: bool = False,
    seed: int = 0,
    seeds: int | None = None,
    data_dir: Path | None = None,
    device: str = "cpu",
    overrides: dict[str, Any] | None = None,
    resume: bool = False,
    reuse: bool = False,
    progress: ProgressSink | None = None,
) -> RunOutcome:
    """Run experiment ``name`` into ``out_root/name``.

    Args:
        resume: continue an interrupted run of the same configuration, reusing its finished
            units; without it a run starts afresh.
        reuse: return existing results made with the same configuration instead of running
            (what ``dltricks report`` does unless ``--force``).

    Raises:
        RunError: bad settings, a locked folder, or a resume whose configuration differs.
        CorruptFileError: an existing results or run file is damaged (it is left as it is).
    """
    experiment = get_experiment(name)
    if data_dir is not None and not data_dir.is_dir():
        raise RunError(f"--data-dir {data_dir} is not a folder")
    torch_device = resolve_device(device)
    config = run_config(
        name, quick=quick, seed=seed, seeds=seeds, data_dir=data_dir, overrides=overrides
    )
    digest = config_hash(config)
    out_dir = out_root / name
    start = time.perf_counter()
    with exclusive_lock(out_dir):
        if reuse:
            cached = cached_results(out_dir, config)
            if cached is not None:
                return RunOutcome(name, out_dir, out_dir / RESULTS_FILE, cached, True, 0.0)
        run_file = out_dir / RUN_FILE
        if resume and run_file.exists():
            previous = read_json(run_file)
            if previous.get("config_hash") != digest:
                raise RunError(
                    f"cannot resume {name}: the interrupted run in {out_dir} used another "
                    "configuration; run without --resume to start afresh"
                )
        elif not resume:
            shutil.rmtree(out_dir / "units", ignore_errors=True)
        write_json(run_file, {"config": config, "config_hash": digest, "status": "running"})
        ctx = RunContext(
            experiment=name,
            out_dir=out_dir,
            config=config["config"],
            seeds=tuple(config["seeds"]),
            quick=quick,
            data_dir=data_dir,
            device=torch_device,
            resume=resume,
            progress=progress or SilentProgress(),
        )
        if data_dir is not None and quick:
            ctx.notices.append("--data-dir is used by full-size runs only; --quick keeps its data")
        summary = experiment.run(ctx)
        figures = sorted(p.name for p in out_dir.glob("*.png")) + sorted(
            p.name for p in out_dir.glob("*.gif")
        )
        results = {
            "experiment": name,
            "claim": experiment.claim,
            "source": experiment.source,
            "tricks": list(experiment.tricks),
            "config": config,
            "config_hash": digest,
            "datasets": ctx.datasets_used,
            "records": ctx.records,
            # The names that identify a record (setting and seed); the rest are measurements.
            "record_keys": ctx.key_names,
            "summary": summary,
            "figures": figures,
            "dltricks_version": __version__,
        }
        results["verdicts"] = (
            check_verdicts(experiment.judge(results)) if experiment.judge is not None else []
        )
        results_path = out_dir / RESULTS_FILE
        write_json(results_path, results)
        seconds = time.perf_counter() - start
        write_json(
            out_dir / "timing.json",
            {"seconds": seconds, "machine": platform.platform(), "cpus": os.cpu_count()},
        )
        write_json(run_file, {"config": config, "config_hash": digest, "status": "finished"})
        # Re-read what was written: the caller gets exactly the file's content.
        written = read_json(results_path)
    return RunOutcome(name, out_dir, results_path, written, False, seconds, tuple(ctx.notices))
