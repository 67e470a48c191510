"""Lightning with a dltricks optimizer: save a checkpoint, resume with ``ckpt_path=``, same run.

``configure_optimizers`` returns a dltricks optimizer and a scheduler; Lightning saves their
state_dicts in its checkpoint and loads them into the new run's optimizer. The resumed run must
end where an uninterrupted one ends. A tiny model built here, tiny data, nothing downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import dltricks.optim as ours

lightning = pytest.importorskip(
    "lightning", reason="lightning is not installed (pip install -e '.[dev]')"
)

STEPS_PER_EPOCH, EPOCHS, BATCH = 3, 2, 4


class TinyRegressor(lightning.LightningModule):  # type: ignore[misc,name-defined]
    def __init__(self, seed: int, fast: bool) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 1))
        self.fast = fast

    def training_step(self, batch: Any, batch_index: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self.net(x).squeeze(-1), y)

    def configure_optimizers(self) -> Any:
        optimizer = ours.AdamW(self.parameters(), lr=0.05, weight_decay=0.1, fast=self.fast)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def _data() -> DataLoader[Any]:
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(STEPS_PER_EPOCH * BATCH, 5, generator=generator)
    y = x.sum(dim=1) + 0.1 * torch.randn(len(x), generator=generator)
    return DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=False)


def _trainer(root: Path, checkpoints: list[Any]) -> Any:
    return lightning.Trainer(
        default_root_dir=str(root),
        max_epochs=EPOCHS,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=checkpoints,
        enable_checkpointing=bool(checkpoints),
    )


@pytest.mark.parametrize("fast", [False, True], ids=["eager", "fast"])
def test_lightning_resumes_from_a_checkpoint_on_the_uninterrupted_trajectory(
    tmp_path: Path, fast: bool
) -> None:
    every_epoch = lightning.pytorch.callbacks.ModelCheckpoint(
        dirpath=str(tmp_path / "checkpoints"), every_n_epochs=1, save_top_k=-1
    )
    uninterrupted = TinyRegressor(seed=0, fast=fast)
    _trainer(tmp_path / "full", [every_epoch]).fit(uninterrupted, _data())
    first_epoch = tmp_path / "checkpoints" / f"epoch=0-step={STEPS_PER_EPOCH}.ckpt"
    assert first_epoch.is_file(), sorted(p.name for p in (tmp_path / "checkpoints").iterdir())

    resumed = TinyRegressor(seed=1, fast=fast)  # other weights: all from the checkpoint
    trainer = _trainer(tmp_path / "resumed", [])
    trainer.fit(resumed, _data(), ckpt_path=str(first_epoch))

    assert trainer.global_step == STEPS_PER_EPOCH * EPOCHS
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.05 * 0.5**3)
    for a, b in zip(resumed.parameters(), uninterrupted.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    start = TinyRegressor(seed=0, fast=fast)
    assert any(
        not torch.equal(a, b) for a, b in zip(resumed.parameters(), start.parameters(), strict=True)
    )
