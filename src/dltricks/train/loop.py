"""``fit``: the training loop that applies early stopping, regularisation and dropout correctly.

Reproducibility contract (CPU): the same model weights, optimizer, data and
:class:`~dltricks.train.TrainConfig` give a bit-identical history. All randomness the loop
uses comes from two seeded sources that are checkpointed with the run:

* a ``torch.Generator`` seeded with ``config.seed`` draws the batch order of every epoch;
* the global torch RNG, which dropout layers read, is *forked* for the duration of ``fit`` and
  seeded from ``config.seed``, so training neither depends on nor changes the caller's RNG.

An interrupted run (exception, Ctrl-C, SIGKILL) resumes from its last per-epoch checkpoint with
``resume=True`` and ends with exactly the result and weights of an uninterrupted run: the
checkpoint holds the model, the optimizer, both RNG states, the history and the early-stopping
state. It also holds a fingerprint of everything that changes the trajectory: the
:class:`~dltricks.train.TrainConfig` (seed included), the data (a digest of every split), the
model's modules (type and settings, so ReLU vs Tanh or another dropout rate is seen) and
tensor shapes, the optimizer's class and every group's hyperparameters (lr, betas, eps,
weight decay, momentum...) and the loss. A checkpoint whose fingerprint differs from the call
raises :class:`~dltricks.train.checkpoint.CheckpointMismatchError` naming what differs,
instead of silently mixing runs; one that lacks what resuming needs (no fingerprint: written
by other code) raises :class:`~dltricks.train.checkpoint.CheckpointError`. A function called
inside ``forward`` (rather than a module) is not part of the fingerprint.
Bit-identity assumes the same torch build and the same number of intra-op threads
(``torch.get_num_threads()``), since threaded reductions may sum in another order.
On GPUs bit-identity additionally needs ``torch.use_deterministic_algorithms(True)``, which
is the caller's choice because it is global.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from dltricks.data.container import SplitDataset
from dltricks.train.callbacks import Callback, EpochContext, StepContext
from dltricks.train.checkpoint import (
    CheckpointError,
    CheckpointMismatchError,
    checkpoint_lock,
    load_checkpoint,
    save_checkpoint,
)
from dltricks.train.config import TrainConfig
from dltricks.train.early_stopping import EarlyStoppingMonitor
from dltricks.train.metrics import LossFn, evaluate
from dltricks.train.progress import EpochProgress
from dltricks.train.regularization import penalized_parameters, regularization_penalty
from dltricks.train.result import EpochRecord, SplitMetrics, StopReason, TrainResult

__all__ = ["OptimizerFactory", "fit"]

#: Builds an optimizer from the model's parameters, e.g. ``lambda p: torch.optim.Adam(p, 1e-3)``.
OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


def _derived_seed(seed: int, purpose: str) -> int:
    # Distinct, reproducible seeds for distinct streams, so batch order and dropout masks are
    # not drawn from the same sequence.
    digest = hashlib.sha256(f"dltricks:{purpose}:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _build_optimizer(
    optimizer: torch.optim.Optimizer | OptimizerFactory, model: nn.Module
) -> torch.optim.Optimizer:
    opt = optimizer if isinstance(optimizer, torch.optim.Optimizer) else None
    if opt is None:
        if not callable(optimizer):
            raise ValueError(
                f"optimizer must be a torch.optim.Optimizer or a factory, got {optimizer!r}"
            )
        opt = optimizer(model.parameters())
        if not isinstance(opt, torch.optim.Optimizer):
            raise ValueError(f"optimizer factory returned {type(opt).__name__}, not an Optimizer")
    own = {id(p) for p in model.parameters()}
    for group in opt.param_groups:
        for p in group["params"]:
            if id(p) not in own:
                raise ValueError("the optimizer holds parameters that are not the model's")
    return opt


def _tensor_digest(tensors: Sequence[torch.Tensor]) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(str((tuple(t.shape), str(t.dtype))).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _plain_value(value: Any) -> Any:
    """A hyperparameter as plain data that compares by value (tensors as numbers)."""
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _plain_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_value(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


def _optimizer_fingerprint(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    # Every group's hyperparameters (lr, betas, eps, weight_decay, momentum, ...) and which
    # parameters it holds: any of them changes the trajectory.
    index: dict[int, int] = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            index.setdefault(id(p), len(index))
    return {
        "class": f"{type(optimizer).__module__}.{type(optimizer).__qualname__}",
        "param_groups": [
            {
                **{k: _plain_value(v) for k, v in sorted(group.items()) if k != "params"},
                "params": [index[id(p)] for p in group["params"]],
            }
            for group in optimizer.param_groups
        ],
    }


def _model_fingerprint(model: nn.Module) -> dict[str, Any]:
    # The modules (type and their own settings, e.g. ReLU vs Tanh, dropout p, a leaky slope)
    # and the tensors' names, shapes and dtypes. A function called inside forward() is not a
    # module and is not seen.
    return {
        "modules": [
            [name, f"{type(m).__module__}.{type(m).__qualname__}", m.extra_repr()]
            for name, m in model.named_modules()
        ],
        "tensors": [[k, list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()],
    }


def _fingerprint(
    config: TrainConfig,
    data: SplitDataset,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
) -> dict[str, Any]:
    """What must match for a checkpoint to belong to this call: everything that changes the
    trajectory (settings and seed, data, model structure and activations, optimizer class and
    hyperparameters, loss)."""
    return {
        "config": config.to_dict(),
        "data": data.summary(),
        "data_sha256": _tensor_digest(
            [data.x_train, data.y_train, data.x_val, data.y_val, data.x_test, data.y_test]
        ),
        "model": _model_fingerprint(model),
        "optimizer": _optimizer_fingerprint(optimizer),
        "loss_fn": getattr(loss_fn, "__qualname__", type(loss_fn).__qualname__),
    }


def _differences(saved: Any, current: Any, path: str, out: list[str]) -> None:
    """Where ``saved`` and ``current`` differ, as ``path: checkpoint X, now Y`` phrases."""
    if isinstance(saved, dict) and isinstance(current, dict):
        for key in sorted(saved.keys() | current.keys(), key=str):
            _differences(saved.get(key), current.get(key), f"{path}.{key}", out)
    elif (
        isinstance(saved, list | tuple)
        and isinstance(current, list | tuple)
        and len(saved) == len(current)
    ):
        for i, (a, b) in enumerate(zip(saved, current, strict=True)):
            _differences(a, b, f"{path}[{i}]", out)
    elif saved != current:
        out.append(f"{path.lstrip('.')}: checkpoint {_short(saved)}, now {_short(current)}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _mismatch(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The differing parts of two fingerprints, each naming what differs (data: by digest)."""
    found: list[str] = []
    for key in sorted(current.keys() | saved.keys()):
        if saved.get(key) == current.get(key):
            continue
        if key in ("data", "data_sha256"):
            found.append(f"{key} (another data set or split)")
            continue
        details: list[str] = []
        _differences(saved.get(key), current.get(key), key, details)
        found.extend(details[:3] or [key])
        if len(details) > 3:
            found.append(f"{key}: {len(details) - 3} more")
    return found


class _Run:
    """Mutable bookkeeping of one run: everything besides model and optimizer to checkpoint."""

    def __init__(self) -> None:
        self.epoch = 0
        self.steps = 0
        self.history: list[EpochRecord] = []
        self.stopped_epoch: int | None = None
        self.stop_reason: StopReason = "epochs"


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | OptimizerFactory,
    data: SplitDataset,
    config: TrainConfig,
    *,
    loss_fn: LossFn | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    checkpoint_path: str | os.PathLike[str] | None = None,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Train a classifier on ``data`` with mini-batch steps and per-epoch evaluation.

    Each epoch: ``model.train()`` (dropout active), one pass over the shuffled train split in
    batches of ``config.batch_size``, each step minimising ``loss_fn + penalty``; then
    ``model.eval()`` (dropout off) and the data loss and accuracy on the *whole* train,
    validation and test splits. Train metrics are measured in eval mode after the epoch, not
    averaged over the moving mini-batches, so they describe the same network that is tested
    and dropout noise does not distort them (the batch average is kept as
    ``EpochRecord.mean_batch_loss``). An optimizer with ``train()`` and ``eval()`` methods
    (:class:`~dltricks.optim.ScheduleFreeAdamW`) is switched with the model, so evaluation
    and checkpoints see its averaged weights. The test split is measured for curves only and
    never informs any decision. Early stopping (``config.early_stopping``) watches the
    validation loss.

    Args:
        model: any classifier mapping ``(batch, n_features)`` to ``(batch, n_classes)`` logits.
            Moved to ``device``; returned in the train/eval mode it came in.
        optimizer: an optimizer over ``model``'s parameters, or a factory called with
            ``model.parameters()`` (preferred: it is built after the model is moved).
        data: a :class:`~dltricks.data.SplitDataset`; moved to ``device``.
        config: the run's settings (epochs, batch size, penalties, early stopping, seed).
        loss_fn: ``loss_fn(logits, targets) -> mean loss``; default cross-entropy.
        device: where to train (default: where ``data`` is).
        progress: show a per-epoch progress bar on stderr.
        checkpoint_path: write a checkpoint file here after every epoch (atomically, with a
            checksum) and once more when the run is finished.
        resume: continue from ``checkpoint_path`` if it exists (a finished checkpoint returns
            its result and weights without training). Without ``resume`` an existing
            checkpoint is replaced by the new run's.
        callbacks: :class:`~dltricks.train.Callback` hooks (per step and per epoch).

    Returns:
        A :class:`~dltricks.train.TrainResult`; the model holds the final weights (those of the
        best epoch when early stopping restores them).

    Raises:
        ValueError: bad arguments, e.g. early stopping without a validation split, an optimizer
            over other parameters, ``resume`` without ``checkpoint_path``.
        CheckpointError: the checkpoint to resume from is corrupt, truncated, or not a
            training checkpoint of ``fit`` (e.g. it has no fingerprint).
        CheckpointMismatchError: the checkpoint belongs to a different run: another
            optimizer or hyperparameter, model structure or activation, data, seed or
            setting (the message names what differs).
        CheckpointLockedError: another process is training into ``checkpoint_path``.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(data, SplitDataset):
        raise ValueError(f"data must be a SplitDataset, got {type(data).__name__}")
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
    if resume and checkpoint_path is None:
        raise ValueError("resume=True needs a checkpoint_path")
    if config.early_stopping is not None and data.n_val == 0:
        raise ValueError("early stopping needs a validation split (val_fraction > 0)")
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise ValueError(f"callbacks must be Callback instances, got {type(cb).__name__}")

    target = torch.device(device) if device is not None else data.device
    if target.type == "cuda" and target.index is None:
        target = torch.device("cuda", torch.cuda.current_device())
    data = data.to(target)
    model.to(target)
    opt = _build_optimizer(optimizer, model)
    loss = loss_fn if loss_fn is not None else functional.cross_entropy

    lock = checkpoint_lock(checkpoint_path) if checkpoint_path is not None else nullcontext()
    rng_devices = [target.index] if target.type == "cuda" else []
    was_training = model.training
    try:
        with lock, torch.random.fork_rng(devices=rng_devices):
            return _fit(
                model, opt, data, config, loss, target, progress, checkpoint_path, resume, callbacks
            )
    finally:
        model.train(was_training)


def _fit(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    data: SplitDataset,
    config: TrainConfig,
    loss_fn: LossFn,
    device: torch.device,
    progress: bool,
    checkpoint_path: str | os.PathLike[str] | None,
    resume: bool,
    callbacks: Sequence[Callback],
) -> TrainResult:
    batch_rng = torch.Generator(device="cpu")
    batch_rng.manual_seed(config.seed)
    torch.default_generator.manual_seed(_derived_seed(config.seed, "torch"))
    if device.type == "cuda":
        torch.cuda.manual_seed(_derived_seed(config.seed, "torch"))

    penalized = penalized_parameters(model, include_biases=config.penalize_biases)
    monitor = EarlyStoppingMonitor(config.early_stopping) if config.early_stopping else None
    run = _Run()
    fingerprint = (
        _fingerprint(config, data, model, opt, loss_fn) if checkpoint_path is not None else {}
    )

    def snapshot(result: TrainResult | None) -> dict[str, Any]:
        state: dict[str, Any] = {
            "fingerprint": fingerprint,
            "epoch": run.epoch,
            "steps": run.steps,
            "history": [r.to_dict() for r in run.history],
            "stopped_epoch": run.stopped_epoch,
            "stop_reason": run.stop_reason,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "batch_rng": batch_rng.get_state(),
            "torch_rng": torch.get_rng_state(),
            "early_stopping": monitor.state_dict() if monitor is not None else None,
            "result": None if result is None else result.to_dict(),
        }
        if device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(device)
        return state

    if resume and checkpoint_path is not None and Path(checkpoint_path).exists():
        saved = load_checkpoint(checkpoint_path)
        _check_complete(saved, checkpoint_path)
        differ = _mismatch(saved["fingerprint"], fingerprint)
        if differ:
            raise CheckpointMismatchError(
                f"checkpoint {checkpoint_path} belongs to a different run "
                f"(differs in: {'; '.join(differ)}); use another path or resume=False"
            )
        model.load_state_dict(saved["model"])
        if saved["result"] is not None:
            return TrainResult.from_dict(saved["result"], resumed_from_epoch=saved["epoch"])
        opt.load_state_dict(saved["optimizer"])
        batch_rng.set_state(saved["batch_rng"])
        torch.set_rng_state(saved["torch_rng"])
        if device.type == "cuda" and "cuda_rng" in saved:
            torch.cuda.set_rng_state(saved["cuda_rng"], device)
        if monitor is not None:
            monitor.load_state_dict(saved["early_stopping"])
        run.epoch = int(saved["epoch"])
        run.steps = int(saved["steps"])
        run.history = [EpochRecord(**r) for r in saved["history"]]
        run.stopped_epoch = saved["stopped_epoch"]
        run.stop_reason = saved["stop_reason"]
    resumed_from = run.epoch

    n_train = data.n_train
    batch_size = config.batch_size or n_train
    with EpochProgress(config.epochs, completed=run.epoch, enabled=progress) as bar:
        while run.epoch < config.epochs and run.stopped_epoch is None:
            epoch = run.epoch + 1
            model.train()
            _set_optimizer_mode(opt, training=True)
            if config.shuffle:
                order = torch.randperm(n_train, generator=batch_rng)
            else:
                order = torch.arange(n_train)
            batch_losses = torch.zeros((), dtype=torch.float64, device=device)
            for batch_index, start in enumerate(range(0, n_train, batch_size)):
                idx = order[start : start + batch_size].to(device)
                xb, yb = data.x_train[idx], data.y_train[idx]
                opt.zero_grad()
                data_loss = loss_fn(model(xb), yb)
                penalty = regularization_penalty(penalized, l1=config.l1, l2=config.l2)
                total = data_loss if penalty is None else data_loss + penalty
                total.backward()
                batch_losses += data_loss.detach().double() * idx.shape[0]
                ctx = None
                if callbacks:
                    ctx = StepContext(
                        epoch=epoch,
                        step=run.steps,
                        batch_index=batch_index,
                        loss=data_loss.detach(),
                        penalty=None if penalty is None else penalty.detach(),
                        model=model,
                        optimizer=opt,
                    )
                    _call(callbacks, "on_after_backward", ctx, model, device)
                opt.step()
                if ctx is not None:
                    _call(callbacks, "on_step_end", ctx, model, device)
                run.steps += 1

            record = _epoch_record(
                model, opt, data, config, loss_fn, penalized, epoch, run.steps, batch_losses
            )
            run.history.append(record)
            run.epoch = epoch
            if monitor is not None and monitor.update(epoch, _val_for_rule(record), model):
                run.stopped_epoch, run.stop_reason = epoch, "early_stopping"
            if not math.isfinite(record.train_loss) and run.stopped_epoch is None:
                # Nothing is learned after the loss turns NaN/inf; stop instead of burning time.
                run.stopped_epoch, run.stop_reason = epoch, "diverged"
            if checkpoint_path is not None:
                save_checkpoint(checkpoint_path, snapshot(None))
            bar.advance(record)
            if callbacks:
                _call(callbacks, "on_epoch_end", EpochContext(record, model, opt), model, device)

    restored = monitor.restore(model) if monitor is not None else False
    model.eval()
    best_epoch = _best_epoch(monitor, run.history)
    # The model now holds the weights of an epoch already evaluated (the best one when
    # restored, else the last): its record has the final metrics, no second evaluation needed.
    held = run.history[best_epoch - 1] if restored and best_epoch is not None else run.history[-1]
    result = TrainResult(
        config=config.to_dict(),
        history=list(run.history),
        best_epoch=best_epoch,
        stopped_epoch=run.stopped_epoch,
        stop_reason=run.stop_reason,
        restored_best=restored,
        final=_metrics_of(held),
        resumed_from_epoch=resumed_from,
    )
    if checkpoint_path is not None:
        save_checkpoint(checkpoint_path, snapshot(result))
    return result


#: What a training checkpoint holds besides its format number.
_CHECKPOINT_KEYS = (
    "fingerprint",
    "epoch",
    "steps",
    "history",
    "stopped_epoch",
    "stop_reason",
    "model",
    "optimizer",
    "batch_rng",
    "torch_rng",
    "early_stopping",
    "result",
)


def _check_complete(saved: dict[str, Any], path: str | os.PathLike[str]) -> None:
    # A file with a valid checksum can still lack what resuming needs (written by other code
    # through save_checkpoint, or by an older dltricks): name what is missing.
    missing = [k for k in _CHECKPOINT_KEYS if k not in saved]
    if missing:
        raise CheckpointError(
            f"unusable checkpoint {path}: it is not a training checkpoint of fit() "
            f"(missing: {', '.join(missing)}); use another path or resume=False"
        )
    if not isinstance(saved["fingerprint"], dict):
        raise CheckpointError(
            f"unusable checkpoint {path}: its run fingerprint is not a mapping; "
            "use another path or resume=False"
        )


def _call(
    callbacks: Sequence[Callback], hook: str, ctx: Any, model: nn.Module, device: torch.device
) -> None:
    # Fork the RNG so callbacks cannot shift the run's dropout masks, and put the model back
    # in train mode in case a callback evaluated it.
    devices = [device.index] if device.type == "cuda" else []
    training = model.training
    with torch.random.fork_rng(devices=devices):
        for cb in callbacks:
            getattr(cb, hook)(ctx)
    model.train(training)


def _val_for_rule(record: EpochRecord) -> float:
    return math.nan if record.val_loss is None else record.val_loss


def _best_epoch(monitor: EarlyStoppingMonitor | None, history: list[EpochRecord]) -> int | None:
    if monitor is not None:
        return monitor.best_epoch
    best: int | None = None
    best_loss = math.inf
    for r in history:
        if r.val_loss is not None and r.val_loss < best_loss:
            best, best_loss = r.epoch, r.val_loss
    return best


def _split_metrics(
    model: nn.Module, data: SplitDataset, loss_fn: LossFn, batch_size: int
) -> SplitMetrics:
    train = evaluate(model, data.x_train, data.y_train, loss_fn, batch_size)
    test = evaluate(model, data.x_test, data.y_test, loss_fn, batch_size)
    val = evaluate(model, data.x_val, data.y_val, loss_fn, batch_size) if data.n_val else None
    return SplitMetrics(
        train_loss=train[0],
        train_accuracy=train[1],
        val_loss=None if val is None else val[0],
        val_accuracy=None if val is None else val[1],
        test_loss=test[0],
        test_accuracy=test[1],
    )


def _metrics_of(record: EpochRecord) -> SplitMetrics:
    return SplitMetrics(
        train_loss=record.train_loss,
        train_accuracy=record.train_accuracy,
        val_loss=record.val_loss,
        val_accuracy=record.val_accuracy,
        test_loss=record.test_loss,
        test_accuracy=record.test_accuracy,
    )


def _set_optimizer_mode(opt: torch.optim.Optimizer, *, training: bool) -> None:
    """Switch an optimizer that has a train and an eval mode (Schedule-Free's: the parameters
    hold the point where gradients are taken while training, the averaged weights while
    evaluating) along with the model; other optimizers have no such methods."""
    switch = getattr(opt, "train" if training else "eval", None)
    if callable(switch):
        switch()


def _epoch_record(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    data: SplitDataset,
    config: TrainConfig,
    loss_fn: LossFn,
    penalized: list[nn.Parameter],
    epoch: int,
    steps: int,
    batch_losses: torch.Tensor,
) -> EpochRecord:
    model.eval()
    _set_optimizer_mode(opt, training=False)
    metrics = _split_metrics(model, data, loss_fn, config.eval_batch_size)
    with torch.no_grad():
        penalty = regularization_penalty(penalized, l1=config.l1, l2=config.l2)
    return EpochRecord(
        epoch=epoch,
        steps=steps,
        train_loss=metrics.train_loss,
        train_accuracy=metrics.train_accuracy,
        val_loss=metrics.val_loss,
        val_accuracy=metrics.val_accuracy,
        test_loss=metrics.test_loss,
        test_accuracy=metrics.test_accuracy,
        penalty=0.0 if penalty is None else float(penalty),
        mean_batch_loss=float(batch_losses) / data.n_train,
        lr=float(opt.param_groups[0]["lr"]),
    )
