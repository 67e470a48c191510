"""The ``dltricks`` command: thin commands that call the library and own all output.

Every bad invocation prints one line, ``dltricks: error: ...``, and exits with status 2; a
file system or store failure while working (a full disk, a read-only or immutable folder, a
damaged store) prints one line naming the file and the cause and exits with status 1. No
traceback reaches the user. Ctrl-C and SIGTERM stop a command the same way (finished work is
kept, a sweep's store releases its running rows) with status 130 and 143, and one line saying
how to continue.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import signal
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM

_FULL_DISK_ADVICE = "free some space and run the same command again: finished work is kept"
# How each command continues after an interruption (finished work is always kept).
_CONTINUE = {
    "run": "continue with the same command and --resume",
    "report": "run the same command to continue (finished experiments and units are kept)",
    "sweep": "run the same command to finish the sweep",
}


class UsageError(Exception):
    """A bad invocation: reported as one line, exit status 2."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be so that it stops a command the same way."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    # Python's default for SIGTERM ends the process without unwinding: a sweep's store would
    # keep rows "running" and a run's lock and progress display would not be released.
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def describe_os_error(error: OSError, fallback: Path | None = None) -> str:
    """One line for a failed file operation: the file(s), the cause and, for a full disk, what
    to do. ``fallback`` names the folder being written when the error names no file."""
    cause = error.strerror or str(error) or type(error).__name__
    if error.filename is not None:
        where = str(error.filename)
        if error.filename2 is not None:
            where += f" -> {error.filename2}"
    elif fallback is not None:
        where = f"writing under {fallback}"
    else:
        where = "file system"
    line = f"{where}: {cause}"
    if error.errno == errno.ENOSPC:
        line += f" ({_FULL_DISK_ADVICE})"
    elif error.errno in (errno.EPERM, errno.EACCES, errno.EROFS):
        line += " (choose a folder you can write to)"
    elif (
        error.errno == errno.ENOENT
        and isinstance(error.filename, str | bytes)
        and Path(os.fsdecode(error.filename)).parent.is_dir()
    ):
        # The folder exists and still refuses the name: a virtual file system such as /proc.
        line += f" (cannot be created in {Path(os.fsdecode(error.filename)).parent})"
    return line


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


#: The largest seed (the lab's limit: numpy's generators take seeds below 2**32).
MAX_SEED = 2**32 - 1
#: More torch threads than this only adds scheduling overhead on any machine we know of.
MAX_THREADS = 256


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer from {low} to {high}, got {text!r}"
            ) from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"expected an integer from {low} to {high}, got {value}"
            )
        return value

    return parse


_seed = _int_between(0, MAX_SEED)


def _setting(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="the small size (<= 60 s on 2 cores)")
    parser.add_argument("--seed", type=_seed, default=0, help="first seed (0)")
    parser.add_argument("--seeds", type=_positive_int, help="number of seeds (experiment default)")
    parser.add_argument("--out", type=Path, default=Path("runs"), help="output root (./runs)")
    parser.add_argument("--data-dir", type=Path, help="folder with MNIST/Fashion-MNIST IDX files")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--threads",
        type=_int_between(1, MAX_THREADS),
        default=1,
        help="torch threads (1: the lab's models are small, and results are bit-identical "
        "only for the same thread count)",
    )


def build_parser() -> argparse.ArgumentParser:
    from dltricks import __version__

    parser = _Parser(
        prog="dltricks",
        description="The tricks that make deep networks train: a lab of reproducible experiments.",
    )
    parser.add_argument("--version", action="version", version=f"dltricks {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    commands.add_parser("list", help="list the experiments and their claims")

    run = commands.add_parser("run", help="run one experiment into OUT/NAME/")
    run.add_argument("name", help="experiment name (see `dltricks list`)")
    _add_run_options(run)
    run.add_argument("--resume", action="store_true", help="continue an interrupted run")
    run.add_argument(
        "--set",
        dest="settings",
        type=_setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting of the experiment (repeatable; VALUE is JSON or text)",
    )

    report = commands.add_parser(
        "report", help="run the lab (reusing unchanged runs) and write an HTML report"
    )
    report.add_argument("--quick", action="store_true", help="quick sizes (~5 min on 2 cores)")
    report.add_argument(
        "--out", type=Path, default=Path("runs/report"), help="report folder (./runs/report)"
    )
    report.add_argument(
        "--runs", type=Path, default=Path("runs"), help="where experiments write (./runs)"
    )
    report.add_argument("--only", help="comma-separated experiment names")
    report.add_argument("--force", action="store_true", help="rerun even unchanged experiments")
    report.add_argument("--seed", type=_seed, default=0, help="first seed (0)")
    report.add_argument(
        "--workers", type=_positive_int, default=None, help="parallel experiments (cores, max 2)"
    )
    report.add_argument("--quiet", action="store_true", help="no progress display")

    demo = commands.add_parser("demo", help="every optimizer trains one MLP on digits (~20 s)")
    demo.add_argument("--epochs", type=_positive_int, default=5)
    demo.add_argument("--seed", type=_seed, default=0)

    sweep = commands.add_parser(
        "sweep", help="run a grid of settings x seeds of one experiment in parallel"
    )
    sweep.add_argument("name", help="experiment name (see `dltricks list`)")
    sweep.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="values of one setting to sweep (repeatable; each value JSON or text)",
    )
    sweep.add_argument("--quick", action="store_true", help="the experiment's quick size")
    sweep.add_argument("--seeds", type=_positive_int, default=1, help="seeds per grid point (1)")
    sweep.add_argument("--seed", type=_seed, default=0, help="first seed (0)")
    sweep.add_argument(
        "--executor", choices=("local", "ray", "sequential"), default="local", help="(local)"
    )
    sweep.add_argument("--workers", type=_positive_int, help="parallel runs (the cores)")
    sweep.add_argument("--ray-address", help="join this Ray cluster (default: start one here)")
    sweep.add_argument(
        "--ray-timeout",
        type=float,
        metavar="SECONDS",
        help="give up joining --ray-address after this long (30, or $DLTRICKS_RAY_TIMEOUT)",
    )
    sweep.add_argument(
        "--retries", type=_non_negative_int, default=2, help="extra attempts per failed run (2)"
    )
    sweep.add_argument("--out", type=Path, default=Path("runs"), help="output root (./runs)")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")

    serve = commands.add_parser("serve", help="the playground: surfaces and nets live in a browser")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    serve.add_argument("--port", type=_int_between(1, 65535), default=8765, help="port (8765)")
    serve.add_argument("--open", action="store_true", help="open the page in a browser")
    serve.add_argument(
        "--report", type=Path, default=Path("runs/report"), help="report to link (./runs/report)"
    )
    return parser


def _check_out(out: Path, flag: str = "--out") -> None:
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"{flag} {out}: {probe} is not a folder")
    if not os.access(probe, os.W_OK):
        raise UsageError(f"{flag} {out}: {probe} is not writable")


def _cmd_list() -> int:
    from dltricks.lab.registry import all_experiments

    experiments = all_experiments()
    width = max((len(n) for n in experiments), default=0)
    for name, experiment in experiments.items():
        print(f"{name:<{width}}  {experiment.claim}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from dltricks.lab.progress import progress_bar
    from dltricks.lab.registry import get_experiment
    from dltricks.lab.runner import resolve_device, run_config, run_experiment

    try:
        get_experiment(args.name)
    except ValueError as error:
        raise UsageError(str(error)) from None
    _check_out(args.out)
    overrides = dict(args.settings)
    # Validate everything before anything is drawn or written.
    resolve_device(args.device)
    if args.data_dir is not None and not args.data_dir.is_dir():
        raise UsageError(f"--data-dir {args.data_dir} is not a folder")
    run_config(
        args.name,
        quick=args.quick,
        seed=args.seed,
        seeds=args.seeds,
        data_dir=args.data_dir,
        overrides=overrides,
    )
    import torch

    torch.set_num_threads(args.threads)
    with progress_bar(enabled=not args.quiet, title=args.name) as bar:
        outcome = run_experiment(
            args.name,
            out_root=args.out,
            quick=args.quick,
            seed=args.seed,
            seeds=args.seeds,
            data_dir=args.data_dir,
            device=args.device,
            overrides=overrides,
            resume=args.resume,
            progress=bar,
        )
    for notice in outcome.notices:
        print(f"note: {notice}", file=sys.stderr)
    summary = outcome.results.get("summary", {})
    finding = summary.get("finding")
    if finding:
        print(finding)
    print(f"results: {outcome.results_path}")
    figures = outcome.results.get("figures", [])
    if figures:
        print(
            f"figures: {len(figures)} in {outcome.out_dir}/ ({', '.join(figures[:3])}"
            + (", ..." if len(figures) > 3 else "")
            + ")"
        )
    print(f"({outcome.seconds:.1f} s)")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from dltricks.lab.progress import report_progress
    from dltricks.lab.registry import all_experiments
    from dltricks.lab.report import build_report
    from dltricks.sweep.executors import ExecutorError, check_workers

    only = None
    if args.only is not None:
        only = [n.strip() for n in args.only.split(",") if n.strip()]
        if not only:
            raise UsageError("--only needs at least one experiment name")
        known = all_experiments()
        unknown = [n for n in only if n not in known]
        if unknown:
            raise UsageError(
                f"unknown experiment(s) {', '.join(unknown)} in --only; known: {', '.join(known)}"
            )
    _check_out(args.out)
    _check_out(args.runs, "--runs")
    if args.workers is not None:
        try:
            check_workers(args.workers, "local")
        except ExecutorError as bad:
            raise UsageError(str(bad)) from None
    workers = args.workers or max(1, min(2, os.cpu_count() or 1))
    with report_progress(enabled=not args.quiet) as progress:
        outcome = build_report(
            out_dir=args.out,
            runs_dir=args.runs,
            quick=args.quick,
            only=only,
            force=args.force,
            seed=args.seed,
            workers=workers,
            progress=progress,
        )
    print(
        f"ran {len(outcome.ran)}, reused {len(outcome.reused)}, failed {len(outcome.failed)} "
        f"experiment(s) in {outcome.seconds:.0f} s"
    )
    for name, error in outcome.failed.items():
        print(f"failed: {name}: {error}", file=sys.stderr)
    print(f"open {outcome.index.resolve().as_uri()}")
    return 1 if outcome.failed else 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from dltricks.demo import run_demo

    print(
        f"Every optimizer trains the same 64-128-128-10 ReLU MLP on scikit-learn's digits "
        f"for {args.epochs} epochs (batch 64, torch's default learning rates or the lab's)."
    )
    print(f"{'optimizer':<10} {'lr':>8} {'train loss':>11} {'test accuracy':>14}")
    for row in run_demo(epochs=args.epochs, seed=args.seed):
        print(
            f"{row.optimizer:<10} {row.lr:>8.0e} {row.train_loss:>11.4f} {row.test_accuracy:>14.1%}"
        )
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from dltricks.lab.registry import get_experiment
    from dltricks.sweep import (
        ExecutorError,
        SweepSpec,
        SweepSpecError,
        expand,
        headline_metric,
        make_executor,
        parse_grid_item,
        run_sweep,
    )
    from dltricks.sweep.executors import check_executor
    from dltricks.sweep.progress import sweep_progress

    # Validate everything before anything starts or is written.
    try:
        get_experiment(args.name)
    except ValueError as error:
        raise UsageError(str(error)) from None
    grid: dict[str, list[Any]] = {}
    try:
        for item in args.grid:
            key, values = parse_grid_item(item)
            if key in grid:
                raise UsageError(f"--grid {key} given twice; list all its values in one --grid")
            grid[key] = values
        check_executor(
            args.executor,
            workers=args.workers,
            ray_address=args.ray_address,
            ray_timeout=args.ray_timeout,
        )
        sweep = SweepSpec(args.name, grid, seeds=args.seeds, seed=args.seed, quick=args.quick)
        specs = expand(sweep)
    except (SweepSpecError, ExecutorError) as error:
        raise UsageError(str(error)) from None
    _check_out(args.out)
    executor = make_executor(
        args.executor,
        workers=args.workers,
        ray_address=args.ray_address,
        ray_timeout=args.ray_timeout,
    )
    try:
        with executor, sweep_progress(enabled=not args.quiet, title=args.name) as progress:
            outcome = run_sweep(
                sweep,
                out_root=args.out,
                executor=executor,
                retries=args.retries,
                progress=progress,
                specs=specs,
            )
    except ExecutorError as error:  # e.g. a Ray cluster that cannot be joined
        raise UsageError(str(error)) from None
    for notice in outcome.notices:
        print(f"note: {notice}", file=sys.stderr)
    headline = headline_metric(outcome.rows)
    header = ["run id", "settings", "status", headline or "", "seconds"]
    table = [header]
    for spec, row in zip(outcome.specs, outcome.rows, strict=True):
        value = (row.metrics or {}).get("summary", {}).get(headline) if headline else None
        table.append(
            [
                row.id,
                spec.label(),
                row.status if row.status == "done" else f"{row.status} ({row.attempts}x)",
                f"{value:.6g}" if isinstance(value, int | float) else "",
                f"{row.duration:.1f}" if row.duration is not None else "",
            ]
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for line in table:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    failed = outcome.failed
    for row in failed:
        last = (row.error or "").strip().splitlines()[-1:] or ["(no error text)"]
        print(f"failed: {row.id}: {last[0]}", file=sys.stderr)
    print(
        f"{len(outcome.rows)} runs: {len(outcome.rows) - len(failed)} done "
        f"({outcome.skipped} already in the store), {len(failed)} failed; "
        f"{outcome.seconds:.1f} s on {args.executor}"
    )
    print(f"store: {outcome.store_path}")
    return 1 if failed else 0


def _input_errors() -> tuple[type[Exception], ...]:
    # Imported only when an exception reaches main: they pull in torch, which `dltricks serve`
    # loads only after its server is up (to start within 3 s).
    from dltricks.data import CorruptFileError, DatasetFileNotFoundError, IDXFormatError
    from dltricks.lab.runner import RunError

    return (RunError, CorruptFileError, DatasetFileNotFoundError, IDXFormatError)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dltricks`` console script; returns the exit status."""
    parser = build_parser()
    args: argparse.Namespace | None = None
    try:
        with _sigterm_as_interrupt():
            args = parser.parse_args(argv)
            return _dispatch(args)
    except UsageError as error:
        print(f"dltricks: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except _input_errors() as error:
        print(f"dltricks: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:
        out = getattr(args, "out", None)
        print(f"dltricks: error: {describe_os_error(error, out)}", file=sys.stderr)
        return EXIT_FAILURE
    except sqlite3.Error as error:  # StoreError names its file; a bare one gets a prefix
        from dltricks.sweep.store import StoreError

        text = str(error) if isinstance(error, StoreError) else f"SQLite: {error}"
        if "disk is full" in text:
            text += f" ({_FULL_DISK_ADVICE})"
        print(f"dltricks: error: {text}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt as interrupt:
        command = getattr(args, "command", None)
        advice = _CONTINUE.get(command or "")
        what = "terminated" if isinstance(interrupt, Terminated) else "interrupted"
        print(f"dltricks: {what}" + (f"; {advice}" if advice else ""), file=sys.stderr)
        return EXIT_TERMINATED if isinstance(interrupt, Terminated) else EXIT_INTERRUPTED


def _dispatch(args: argparse.Namespace) -> int:
    if args.command is None:
        raise UsageError("no command given; try `dltricks --help`")
    if args.command == "list":
        return _cmd_list()
    if args.command == "run":
        return _cmd_run(args)
    if args.command == "report":
        return _cmd_report(args)
    if args.command == "demo":
        return _cmd_demo(args)
    if args.command == "sweep":
        return _cmd_sweep(args)
    if args.command == "serve":
        from dltricks.serve import serve

        print(f"dltricks playground on http://{args.host}:{args.port}/ (Ctrl-C stops it)")
        serve(args.host, args.port, open_browser=args.open, report_dir=args.report)
        return 0
    raise UsageError(f"unknown command {args.command!r}")


if __name__ == "__main__":
    sys.exit(main())
