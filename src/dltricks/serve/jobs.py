"""Training jobs of the network lab: an MLP trained by :func:`dltricks.train.fit` in a thread.

A job is the lab's training, unchanged: :class:`dltricks.nn.MLP` (seeded with the job's
``seed``, init by activation), the data set from :func:`dltricks.data.load_dataset` (validation
split seed 0, as the lab's runs), :class:`dltricks.train.TrainConfig` with the job's penalties
and early stopping, and the optimizer from :mod:`dltricks.serve.optimizers`. Two callbacks watch
it: after every epoch the epoch's record is published with the mean over the epoch's steps of
each Linear layer's weight-gradient norm (:class:`dltricks.diagnose.GradientNorms`, input side
first, output layer last), and before every step a cancelled job stops.

A run whose loss turns non-finite is stopped by ``fit`` and ends ``"done"`` with
``"diverged": true``; non-finite numbers are sent as ``null`` (JSON has no NaN).

Limits: at most ``max_active`` jobs queued or running at once (:class:`TooManyJobsError` beyond,
which the app answers with 429), and at most ``max_kept`` jobs remembered (the oldest finished
ones are forgotten first). Jobs share the process's torch RNG for dropout masks, so a run with
dropout is reproducible only when it runs alone.
"""

from __future__ import annotations

import itertools
import math
import shlex
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from dltricks.lab.settings import Bool, Choice, Float, Int
from dltricks.serve.fields import Field, RequestError, parse_fields
from dltricks.serve.optimizers import HYPERPARAMETERS, OPTIMIZERS, build_optimizer, hyperparameters
from dltricks.train.callbacks import Callback, EpochContext, StepContext

if TYPE_CHECKING:
    from dltricks.data import SplitDataset
    from dltricks.diagnose import GradientNorms

__all__ = [
    "DATASETS",
    "LIMITS",
    "TRAIN_FIELDS",
    "JobManager",
    "JobStatus",
    "TooManyJobsError",
    "TrainingJob",
    "reproduce",
    "train_options",
]

JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]
_FINISHED = ("done", "failed", "cancelled")

#: The data sets a job may train on (embedded or generated: nothing to download).
DATASETS: tuple[str, ...] = ("digits", "mnist1d")
#: The bounds of a job's size.
LIMITS: dict[str, int] = {"depth": 20, "width": 512, "epochs": 200, "batch_size": 4096}


def _activations() -> tuple[str, ...]:
    from dltricks.nn.registry import activation_names

    return activation_names()


def _inits() -> tuple[str, ...]:
    from dltricks.nn.init import INIT_SCHEMES

    return ("auto", *INIT_SCHEMES)


_PENALTY = Float(0.0, 1.0)
TRAIN_FIELDS: dict[str, Field] = {
    "dataset": Field(Choice(DATASETS), "digits"),
    "depth": Field(Int(1, LIMITS["depth"]), 3),
    "width": Field(Int(1, LIMITS["width"]), 64),
    "activation": Field(Choice(_activations()), "relu"),
    "init": Field(Choice(_inits()), "auto"),
    "optimizer": Field(Choice(tuple(OPTIMIZERS)), "Adam"),
    "lr": Field(Float(0.0, 10.0, low_open=True), 1e-3),
    "epochs": Field(Int(1, LIMITS["epochs"]), 10),
    "batch_size": Field(Int(1, LIMITS["batch_size"]), 64),
    "dropout": Field(Float(0.0, 0.9), 0.0),
    "l1": Field(_PENALTY, 0.0),
    "l2": Field(_PENALTY, 0.0),
    "weight_decay": Field(_PENALTY, 0.0),
    "early_stopping": Field(Bool(), False),
    "patience": Field(Int(0, 100), 5),
    "seed": Field(Int(0, 2**31 - 1), 0),
    **{name: Field(rule, None) for name, rule in HYPERPARAMETERS.items()},
}


def train_options() -> dict[str, Any]:
    """What a job may be: the choices, the bounds and the defaults (the page builds its form
    from this)."""
    return {
        "datasets": list(DATASETS),
        "activations": list(_activations()),
        "inits": list(_inits()),
        "optimizers": list(OPTIMIZERS),
        "limits": dict(LIMITS),
        "defaults": {k: f.default for k, f in TRAIN_FIELDS.items() if k not in HYPERPARAMETERS},
    }


class TooManyJobsError(RuntimeError):
    """As many jobs are queued or running as the manager allows."""


class _CancelledError(Exception):
    pass


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


@dataclass
class TrainingJob:
    """One job: its checked settings, status and the epochs published so far."""

    id: str
    settings: dict[str, Any]
    optimizer_settings: dict[str, Any]
    status: JobStatus = "queued"
    epochs: list[dict[str, Any]] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)
    stop_reason: str | None = None
    best_epoch: int | None = None
    error: str | None = None
    created: float = field(default_factory=time.monotonic)
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def snapshot(self) -> dict[str, Any]:
        """The job as the API shows it (a copy: the thread may append meanwhile)."""
        diverged = self.stop_reason == "diverged"
        return {
            "id": self.id,
            "status": self.status,
            "settings": dict(self.settings),
            "hyperparameters": {
                k: list(v) if isinstance(v, tuple) else v
                for k, v in self.optimizer_settings.items()
            },
            "layers": list(self.layers),
            "epochs": [dict(e) for e in self.epochs],
            "stop_reason": self.stop_reason,
            "best_epoch": self.best_epoch,
            "diverged": diverged,
            "diverged_epoch": self.epochs[-1]["epoch"] if diverged and self.epochs else None,
            "error": self.error,
            "reproduce": reproduce(self.settings),
        }


def reproduce(settings: Mapping[str, Any]) -> dict[str, Any]:
    """How to run the same job again: the API request, and the CLI when one experiment covers it.

    The ``vanishing`` experiment trains the same MLP with the same data split, seeds and
    optimizer for one activation, so a job with no dropout, penalty, early stopping or
    non-default hyperparameter is ``dltricks run vanishing`` with its settings.
    """
    import json

    body = json.dumps({k: v for k, v in settings.items() if v is not None}, sort_keys=True)
    out: dict[str, Any] = {
        "request": f"curl -s -X POST http://127.0.0.1:8765/api/train -d {shlex.quote(body)}",
        "cli": None,
    }
    plain = (
        settings["dropout"] == 0.0
        and settings["l1"] == 0.0
        and settings["l2"] == 0.0
        and settings["weight_decay"] == 0.0
        and not settings["early_stopping"]
        and all(settings.get(k) is None for k in HYPERPARAMETERS)
    )
    from dltricks.lab.training import LAB_OPTIMIZERS

    if plain and settings["optimizer"] in LAB_OPTIMIZERS and settings["optimizer"] != "AdamW":
        sets = {
            "dataset": settings["dataset"],
            "activations": json.dumps([settings["activation"]]),
            "depth": settings["depth"],
            "width": settings["width"],
            "init": settings["init"],
            "optimizer": settings["optimizer"],
            "lr": settings["lr"],
            "batch_size": settings["batch_size"],
            "epochs": settings["epochs"],
        }
        parts = ["dltricks", "run", "vanishing", "--seed", str(settings["seed"]), "--seeds", "1"]
        for key, value in sets.items():
            parts += ["--set", f"{key}={value}"]
        out["cli"] = shlex.join(parts)
    return out


class _Publish(Callback):
    """Publishes each epoch with its mean per-layer gradient norms; stops a cancelled job."""

    def __init__(self, job: TrainingJob, grads: GradientNorms, layers: list[str]) -> None:
        self.job = job
        self.grads = grads
        self.layers = layers

    def on_after_backward(self, ctx: StepContext) -> None:
        if self.job.cancel.is_set():
            raise _CancelledError

    def on_epoch_end(self, ctx: EpochContext) -> None:
        sums = dict.fromkeys(self.layers, 0.0)
        counts = dict.fromkeys(self.layers, 0)
        for row in self.grads.records():
            if row["param"] == "weight" and row["layer"] in sums:
                sums[row["layer"]] += row["grad_norm"]
                counts[row["layer"]] += 1
        self.grads.clear()
        record = ctx.record
        self.job.epochs.append(
            {
                "epoch": record.epoch,
                "steps": record.steps,
                "train_loss": _finite(record.train_loss),
                "val_loss": _finite(record.val_loss),
                "test_loss": _finite(record.test_loss),
                "train_accuracy": _finite(record.train_accuracy),
                "val_accuracy": _finite(record.val_accuracy),
                "test_accuracy": _finite(record.test_accuracy),
                "grad_norms": [
                    _finite(sums[name] / counts[name]) if counts[name] else None
                    for name in self.layers
                ],
            }
        )


class _Datasets:
    """Data sets loaded once per process (MNIST-1D takes seconds to generate)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: dict[str, SplitDataset] = {}

    def get(self, name: str) -> SplitDataset:
        from dltricks.data import load_dataset

        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = load_dataset(name, seed=0)
            return self._loaded[name]


def _train(job: TrainingJob, datasets: _Datasets) -> None:
    import torch

    from dltricks.diagnose import GradientNorms
    from dltricks.nn import MLP
    from dltricks.train import EarlyStopping, TrainConfig, fit

    s = job.settings
    data = datasets.get(s["dataset"])
    model = MLP(
        data.n_features,
        data.n_classes,
        s["width"],
        s["depth"],
        s["activation"],
        init=s["init"],
        dropout=s["dropout"],
        generator=torch.Generator().manual_seed(s["seed"]),
    )
    config = TrainConfig(
        epochs=s["epochs"],
        batch_size=s["batch_size"],
        l1=s["l1"],
        l2=s["l2"],
        early_stopping=EarlyStopping(patience=s["patience"]) if s["early_stopping"] else None,
        seed=s["seed"],
    )
    factory = build_optimizer(s["optimizer"], s["lr"], job.optimizer_settings, s["weight_decay"])
    with GradientNorms(model, every=1) as grads:
        layers = [layer for layer, name, _ in grads.params if name == "weight"]
        job.layers = layers
        if job.cancel.is_set():
            raise _CancelledError
        job.status = "running"
        result = fit(
            model, factory, data, config, progress=False, callbacks=[_Publish(job, grads, layers)]
        )
    job.stop_reason = result.stop_reason
    job.best_epoch = result.best_epoch


def _run(job: TrainingJob, datasets: _Datasets) -> None:
    try:
        _train(job, datasets)
        job.status = "done"
    except _CancelledError:
        job.status = "cancelled"
    except Exception as error:  # any failure is the job's result, shown to its user
        job.error = f"{type(error).__name__}: {error}"
        job.status = "failed"


class JobManager:
    """Starts, lists and cancels training jobs, within ``max_active`` and ``max_kept``."""

    def __init__(self, *, max_active: int = 2, max_kept: int = 32) -> None:
        if max_active < 1 or max_kept < max_active:
            raise ValueError("need max_active >= 1 and max_kept >= max_active")
        self.max_active = max_active
        self.max_kept = max_kept
        self._jobs: dict[str, TrainingJob] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._datasets = _Datasets()

    def _active(self) -> int:
        return sum(
            1
            for job in self._jobs.values()
            if job.status not in _FINISHED or (job.thread is not None and job.thread.is_alive())
        )

    def submit(self, body: Any) -> TrainingJob:
        """Check the request ``body`` and start a job for it.

        Raises:
            RequestError: a field is unknown or out of range.
            TooManyJobsError: ``max_active`` jobs are already queued or running.
        """
        what = "training job"
        settings = parse_fields(body, TRAIN_FIELDS, what)
        given = {k: settings[k] for k in HYPERPARAMETERS}
        optimizer_settings = hyperparameters(settings["optimizer"], given, what)
        if settings["early_stopping"] and settings["epochs"] < 2:
            raise RequestError(
                f"{what}: field 'epochs': early stopping needs at least 2 epochs", "epochs"
            )
        with self._lock:
            if self._active() >= self.max_active:
                raise TooManyJobsError(
                    f"{self.max_active} training jobs are already running; "
                    "stop one (DELETE /api/train/ID) or wait for it to finish"
                )
            job = TrainingJob(f"job-{next(self._ids)}", settings, optimizer_settings)
            self._forget_old()
            self._jobs[job.id] = job
            job.thread = threading.Thread(
                target=_run, args=(job, self._datasets), name=f"dltricks-{job.id}", daemon=True
            )
            job.thread.start()
        return job

    def _forget_old(self) -> None:
        finished = sorted(
            (j for j in self._jobs.values() if j.status in _FINISHED), key=lambda j: j.created
        )
        while len(self._jobs) >= self.max_kept and finished:
            del self._jobs[finished.pop(0).id]

    def get(self, job_id: str) -> TrainingJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def cancel(self, job_id: str, wait: float = 10.0) -> TrainingJob | None:
        """Ask job ``job_id`` to stop and wait up to ``wait`` s for it (None: no such job)."""
        job = self.get(job_id)
        if job is None:
            return None
        job.cancel.set()
        if job.thread is not None:
            job.thread.join(wait)
        return job

    def shutdown(self, wait: float = 10.0) -> None:
        """Cancel every job and wait for their threads."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel.set()
        for job in jobs:
            if job.thread is not None:
                job.thread.join(wait)
