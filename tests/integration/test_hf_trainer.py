"""Hugging Face ``Trainer`` with a dltricks optimizer: save a checkpoint, resume, same run.

``Trainer(optimizers=(optimizer, scheduler))`` hands our optimizer to accelerate, which wraps
it and, on ``resume_from_checkpoint``, loads its state_dict through the round trips torch's
optimizers survive (``__setstate__``, a second ``load_state_dict``). The resumed run must end
where an uninterrupted one ends. A tiny model built here, tiny data, nothing downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import dltricks.optim as ours

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
transformers = pytest.importorskip(
    "transformers", reason="transformers is not installed (pip install -e '.[dev]')"
)
pytest.importorskip("accelerate", reason="accelerate is not installed (pip install -e '.[dev]')")

STEPS_PER_EPOCH, EPOCHS, BATCH = 3, 2, 4


class TinyRegressor(nn.Module):
    """What ``Trainer`` expects of a model: keyword inputs in, a dict with ``loss`` out."""

    def __init__(self, seed: int, width: int = 8) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(5, width), nn.Tanh(), nn.Linear(width, 1))

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        prediction = self.net(x).squeeze(-1)
        return {"loss": nn.functional.mse_loss(prediction, labels), "logits": prediction}


def _dataset() -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(STEPS_PER_EPOCH * BATCH, 5, generator=generator)
    y = x.sum(dim=1) + 0.1 * torch.randn(len(x), generator=generator)
    return [{"x": row, "labels": label} for row, label in zip(x, y, strict=True)]


def _trainer(output: Path, model: nn.Module, fast: bool, precision: str = "fp32") -> Any:
    optimizer = ours.AdamW(
        model.parameters(), lr=0.05, weight_decay=0.1, fast=fast, state_precision=precision
    )
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    arguments = transformers.TrainingArguments(
        output_dir=str(output),
        num_train_epochs=EPOCHS,
        per_device_train_batch_size=BATCH,
        save_strategy="steps",
        save_steps=STEPS_PER_EPOCH,
        logging_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    return transformers.Trainer(
        model=model,
        args=arguments,
        train_dataset=_dataset(),
        optimizers=(optimizer, scheduler),
    )


@pytest.mark.parametrize("fast", [False, True], ids=["eager", "fast"])
def test_trainer_resumes_from_a_checkpoint_on_the_uninterrupted_trajectory(
    tmp_path: Path, fast: bool
) -> None:
    uninterrupted = TinyRegressor(seed=0)
    _trainer(tmp_path / "full", uninterrupted, fast).train()
    checkpoint = tmp_path / "full" / f"checkpoint-{STEPS_PER_EPOCH}"
    assert (checkpoint / "optimizer.pt").is_file()

    resumed = TinyRegressor(seed=1)  # other weights: all must come from the checkpoint
    trainer = _trainer(tmp_path / "resumed", resumed, fast)
    trainer.train(resume_from_checkpoint=str(checkpoint))

    assert trainer.state.global_step == STEPS_PER_EPOCH * EPOCHS
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.05 * 0.5**3)
    for a, b in zip(resumed.parameters(), uninterrupted.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    moved = any(
        not torch.equal(a, b)
        for a, b in zip(resumed.parameters(), TinyRegressor(seed=0).parameters(), strict=True)
    )
    assert moved


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_trainer_resumes_low_precision_state_exactly(tmp_path: Path, precision: str) -> None:
    """bf16 and int8 optimizer state (a hidden layer of 5120 weights, so int8 codes cover
    it) through accelerate's save and load: the resumed run ends where the uninterrupted one
    ends, to float32 rounding, and its state is in the same stored form."""
    uninterrupted = TinyRegressor(seed=0, width=1024)
    full = _trainer(tmp_path / "full", uninterrupted, True, precision)
    full.train()
    checkpoint = tmp_path / "full" / f"checkpoint-{STEPS_PER_EPOCH}"
    resumed = TinyRegressor(seed=1, width=1024)
    trainer = _trainer(tmp_path / "resumed", resumed, True, precision)
    trainer.train(resume_from_checkpoint=str(checkpoint))
    assert trainer.state.global_step == STEPS_PER_EPOCH * EPOCHS
    for a, b in zip(resumed.parameters(), uninterrupted.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    weight = resumed.net[0].weight
    state = trainer.optimizer.optimizer.state[weight]
    expected = {"bf16": ("exp_avg", torch.bfloat16), "int8": ("exp_avg_int8", torch.uint8)}
    key, dtype = expected[precision]
    assert state[key].dtype == dtype
    reference = full.optimizer.optimizer.state[uninterrupted.net[0].weight][key]
    assert torch.equal(state[key], reference)
