"""Checkpoints: exact resume after an interruption, detection of bad files, locking."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from dltricks.train import (
    Callback,
    CheckpointError,
    CheckpointLockedError,
    CheckpointMismatchError,
    EarlyStopping,
    StepContext,
    TrainConfig,
    fit,
    load_checkpoint,
    save_checkpoint,
)
from dltricks.train.checkpoint import checkpoint_lock
from tests.train.helpers import adam, small_data, small_mlp, states_equal

# Dropout, L1+L2, Adam state, shuffling and early stopping: every piece of state that resume
# must restore affects this run.
CONFIG = TrainConfig(
    epochs=6,
    batch_size=48,
    l1=1e-4,
    l2=1e-3,
    seed=3,
    early_stopping=EarlyStopping(patience=10),
)


class InterruptError(Exception):
    pass


class InterruptAt(Callback):
    def __init__(self, epoch: int, step: int | None = None) -> None:
        self.epoch, self.step = epoch, step

    def on_step_end(self, ctx: StepContext) -> None:
        if self.step is not None and ctx.step == self.step:
            raise InterruptError

    def on_epoch_end(self, ctx) -> None:
        if self.step is None and ctx.record.epoch == self.epoch:
            raise InterruptError


@pytest.fixture(scope="module")
def reference() -> tuple[dict, dict]:
    model = small_mlp(dropout=0.5)
    result = fit(model, adam, small_data(), CONFIG, progress=False)
    return result.to_dict(), model.state_dict()


# 180 training examples in batches of 48: 4 steps per epoch, so step 9 is in epoch 3.
@pytest.mark.parametrize(
    ("interrupt", "resumed_from"),
    [(InterruptAt(epoch=2), 2), (InterruptAt(epoch=6), 6), (InterruptAt(epoch=0, step=9), 2)],
    ids=["after-epoch-2", "after-last-epoch", "mid-epoch-3"],
)
def test_resume_equals_uninterrupted(
    tmp_path: Path, reference: tuple[dict, dict], interrupt: InterruptAt, resumed_from: int
) -> None:
    path = tmp_path / "run.ckpt"
    data = small_data()
    with pytest.raises(InterruptError):
        fit(small_mlp(dropout=0.5), adam, data, CONFIG, checkpoint_path=path, callbacks=[interrupt])
    # A fresh process would build a fresh model (different init) and optimizer.
    model = small_mlp(seed=99, dropout=0.5)
    result = fit(model, adam, data, CONFIG, checkpoint_path=path, resume=True, progress=False)
    assert result.resumed_from_epoch == resumed_from
    assert result.to_dict() == reference[0]
    ref_state = reference[1]
    assert all(torch.equal(model.state_dict()[k], ref_state[k]) for k in ref_state)


def test_finished_checkpoint_returns_result_without_training(tmp_path: Path) -> None:
    path = tmp_path / "run.ckpt"
    data = small_data()
    first_model = small_mlp(dropout=0.5)
    first = fit(first_model, adam, data, CONFIG, checkpoint_path=path, progress=False)

    class NoSteps(Callback):
        def on_after_backward(self, ctx: StepContext) -> None:
            raise AssertionError("a finished run must not train again")

    model = small_mlp(seed=5, dropout=0.5)
    again = fit(model, adam, data, CONFIG, checkpoint_path=path, resume=True, callbacks=[NoSteps()])
    assert again.to_dict() == first.to_dict()
    assert again.resumed_from_epoch == 6
    assert states_equal(model, first_model)


def test_resume_without_checkpoint_starts_fresh(
    tmp_path: Path, reference: tuple[dict, dict]
) -> None:
    model = small_mlp(dropout=0.5)
    path = tmp_path / "new" / "run.ckpt"
    result = fit(model, adam, small_data(), CONFIG, checkpoint_path=path, resume=True)
    assert result.to_dict() == reference[0]
    assert result.resumed_from_epoch == 0
    assert load_checkpoint(path)["result"] == reference[0]


def interrupted_checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "run.ckpt"
    with pytest.raises(InterruptError):
        fit(
            small_mlp(dropout=0.5),
            adam,
            small_data(),
            CONFIG,
            checkpoint_path=path,
            progress=False,
            callbacks=[InterruptAt(epoch=2)],
        )
    return path


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "foreign"])
def test_corrupt_checkpoint_detected_and_left_alone(tmp_path: Path, damage: str) -> None:
    path = interrupted_checkpoint(tmp_path)
    blob = path.read_bytes()
    if damage == "flip":
        blob = blob[:-50] + bytes([blob[-50] ^ 0x10]) + blob[-49:]
    elif damage == "truncate":
        blob = blob[: len(blob) * 2 // 3]
    elif damage == "empty":
        blob = b""
    else:
        blob = b"PK\x03\x04 not a checkpoint\n" + blob
    path.write_bytes(blob)
    with pytest.raises(CheckpointError, match=str(path.name)):
        fit(small_mlp(dropout=0.5), adam, small_data(), CONFIG, checkpoint_path=path, resume=True)
    assert path.read_bytes() == blob  # never overwritten


@pytest.mark.parametrize(
    "change",
    ["config", "model", "optimizer", "data"],
)
def test_checkpoint_of_another_run_refused(tmp_path: Path, change: str) -> None:
    path = interrupted_checkpoint(tmp_path)
    before = path.read_bytes()
    model, opt, data, config = small_mlp(dropout=0.5), adam, small_data(), CONFIG
    if change == "config":
        config = TrainConfig(epochs=6, batch_size=48, seed=4)
    elif change == "model":
        model = torch.nn.Sequential(torch.nn.Linear(8, 3))
    elif change == "optimizer":
        opt = lambda p: torch.optim.SGD(p, lr=0.1)  # noqa: E731
    else:
        data = small_data(n=200)
    with pytest.raises(CheckpointMismatchError, match=change):
        fit(model, opt, data, config, checkpoint_path=path, resume=True)
    assert path.read_bytes() == before


def _relu_mlp(dropout: float = 0.5) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Dropout(dropout), torch.nn.Linear(16, 3)
    )


# Each change alters the trajectory but keeps every tensor's shape: the fingerprint must see it.
TRAJECTORY_CHANGES = {
    "lr": (lambda p: torch.optim.Adam(p, lr=0.1), small_mlp, "lr: checkpoint 0.01, now 0.1"),
    "betas": (
        lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.999)),
        small_mlp,
        "betas[0]: checkpoint 0.9, now 0.8",
    ),
    "weight_decay": (
        lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=1e-2),
        small_mlp,
        "weight_decay: checkpoint 0, now 0.01",
    ),
    "optimizer class": (
        lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.0),
        small_mlp,
        "optimizer.class: checkpoint 'torch.optim.adam.Adam', now 'torch.optim.adamw.AdamW'",
    ),
    "activation": (
        adam,
        _relu_mlp,
        "model.modules[2][1]: checkpoint 'torch.nn.modules.activation.Tanh', "
        "now 'torch.nn.modules.activation.ReLU'",
    ),
    "dropout": (
        adam,
        lambda: small_mlp(dropout=0.2),
        "model.modules[3][2]: checkpoint 'p=0.5, inplace=False', now 'p=0.2, inplace=False'",
    ),
}


@pytest.mark.parametrize("change", list(TRAJECTORY_CHANGES))
def test_resume_with_another_trajectory_setting_is_refused(tmp_path: Path, change: str) -> None:
    optimizer, make_model, detail = TRAJECTORY_CHANGES[change]
    path = interrupted_checkpoint(tmp_path)
    before = path.read_bytes()
    with pytest.raises(CheckpointMismatchError) as caught:
        fit(
            make_model(),
            optimizer,
            small_data(),
            CONFIG,
            checkpoint_path=path,
            resume=True,
            progress=False,
        )
    message = str(caught.value)
    assert "belongs to a different run" in message
    assert detail in message
    assert "\n" not in message
    assert path.read_bytes() == before


def test_resume_with_another_seed_is_refused(tmp_path: Path) -> None:
    path = interrupted_checkpoint(tmp_path)
    other = TrainConfig(**{**CONFIG.__dict__, "seed": 4})
    with pytest.raises(CheckpointMismatchError, match=r"config\.seed: checkpoint 3, now 4"):
        fit(small_mlp(dropout=0.5), adam, small_data(), other, checkpoint_path=path, resume=True)


def test_resume_with_the_same_settings_passes_the_fingerprint(tmp_path: Path) -> None:
    path = interrupted_checkpoint(tmp_path)
    # A fresh but identically built model and optimizer: the fingerprint matches.
    result = fit(
        small_mlp(dropout=0.5), adam, small_data(), CONFIG, checkpoint_path=path, resume=True
    )
    assert result.resumed_from_epoch == 2


@pytest.mark.parametrize("drop", ["fingerprint", "history"])
def test_a_checked_checkpoint_without_what_resume_needs_is_a_clear_error(
    tmp_path: Path, drop: str
) -> None:
    path = interrupted_checkpoint(tmp_path)
    state = load_checkpoint(path)
    del state[drop], state["format"]
    save_checkpoint(path, state)  # valid checksum, incomplete content
    with pytest.raises(CheckpointError, match=rf"not a training checkpoint .*missing: {drop}\)"):
        fit(small_mlp(dropout=0.5), adam, small_data(), CONFIG, checkpoint_path=path, resume=True)


def test_checkpoint_payload_contents(tmp_path: Path) -> None:
    path = interrupted_checkpoint(tmp_path)
    state = load_checkpoint(path)
    assert state["epoch"] == 2
    assert len(state["history"]) == 2
    assert state["result"] is None
    assert {"model", "optimizer", "batch_rng", "torch_rng", "early_stopping"} <= state.keys()
    assert not list(tmp_path.glob("*.tmp"))


def test_second_run_into_same_checkpoint_refused(tmp_path: Path) -> None:
    path = tmp_path / "run.ckpt"
    with checkpoint_lock(path), pytest.raises(CheckpointLockedError, match="in use"):
        fit(small_mlp(), adam, small_data(), CONFIG, checkpoint_path=path)
    fit(small_mlp(), adam, small_data(), TrainConfig(epochs=1), checkpoint_path=path)


KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    from dltricks.train import Callback, fit
    from tests.train.helpers import adam, small_data, small_mlp
    from tests.train.test_checkpoint import CONFIG

    class Kill(Callback):
        def on_step_end(self, ctx):
            if ctx.step == int(sys.argv[2]):
                os.kill(os.getpid(), signal.SIGKILL)

    # Bit-identity holds for one thread count: use the parent's.
    torch.set_num_threads(int(sys.argv[3]))
    fit(small_mlp(dropout=0.5), adam, small_data(), CONFIG, checkpoint_path=sys.argv[1],
        progress=False, callbacks=[Kill()])
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_sigkill_mid_run_then_resume(tmp_path: Path, reference: tuple[dict, dict]) -> None:
    import random

    # 6 epochs of 4 steps: steps 0..23; kill somewhere in epochs 2..6.
    step = random.Random(os.getpid()).randrange(4, 24)
    path = tmp_path / "run.ckpt"
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), str(root / "src")]))
    proc = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(path), str(step), str(torch.get_num_threads())],
        cwd=root,
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, (step, proc.stderr.decode()[-2000:])
    model = small_mlp(seed=1, dropout=0.5)
    result = fit(model, adam, small_data(), CONFIG, checkpoint_path=path, resume=True)
    assert result.resumed_from_epoch >= 1
    assert result.to_dict() == reference[0]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in reference[1].items())
