"""ASGD's two kernels on the fast path (dltricks.optim.fast.switched): the one for the steps
before averaging starts (``mu = 1``, ``ax`` written without being read) and the general one,
picked by the run's ``mu``, against ``torch.optim.ASGD`` in float64 across ``t0``."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
from torch import Tensor, nn

import dltricks.optim as ours
from dltricks.optim import blocks as b
from dltricks.optim.fast.kernel import FusedUpdate, fused_update_for
from dltricks.optim.fast.switched import SwitchedUpdate
from tests.optim.harness import default_dtype

T0 = 3
STEPS = 8  # steps 1..t0 + 2 read mu = 1 (mu_t = 1 / max(1, t - t0)), later ones less


def _bucket(opt: torch.optim.Optimizer) -> object:
    (bucket,) = opt._flat.plans[0].buckets  # type: ignore[attr-defined]
    return bucket


@pytest.mark.parametrize("config", [{}, {"weight_decay": 0.1, "lambd": 0.01, "maximize": True}])
def test_asgd_switches_kernels_at_t0_and_keeps_torchs_numbers(
    config: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    picked: list[bool] = []  # per step: whether the special kernel ran
    pick = SwitchedUpdate.pick

    def spy(self: SwitchedUpdate, args: Sequence[Tensor | None]) -> FusedUpdate:
        variant = pick(self, args)
        picked.append(variant is self.special)
        return variant

    monkeypatch.setattr(SwitchedUpdate, "pick", spy)
    with default_dtype(torch.float64):  # torch keeps eta and mu in the default dtype
        mus = _run_beside_torch(config)
    # The special kernel exactly in the steps that read mu = 1 (the first t0 + 2).
    assert picked == [mu == 1.0 for mu in mus]
    assert picked == [True] * (T0 + 2) + [False] * (STEPS - T0 - 2)


def _run_beside_torch(config: dict[str, object]) -> list[float]:
    """ASGD on the fast path and torch's, side by side; the ``mu`` each step read."""
    generator = torch.Generator().manual_seed(0)
    start = [torch.randn(3000, generator=generator, dtype=torch.float64) for _ in range(2)]
    mine = [nn.Parameter(t.clone()) for t in start]
    theirs = [nn.Parameter(t.clone()) for t in start]
    opt = ours.ASGD(mine, lr=0.05, t0=T0, fast=True, **config)  # type: ignore[arg-type]
    reference = torch.optim.ASGD(theirs, lr=0.05, t0=T0, **config)  # type: ignore[arg-type]
    mus = []
    for _ in range(STEPS):
        for p, q in zip(mine, theirs, strict=True):
            g = torch.randn(p.shape, generator=generator, dtype=torch.float64)
            p.grad, q.grad = g.clone(), g.clone()
        state = opt.state[mine[0]]
        mus.append(float(state["mu"]) if state else 1.0)  # mu_{t-1}, what the step reads
        opt.step()
        reference.step()
        assert isinstance(_bucket(opt).fused, SwitchedUpdate)  # type: ignore[attr-defined]
        for p, q in zip(mine, theirs, strict=True):
            scale = float(q.detach().abs().max())
            torch.testing.assert_close(p.detach(), q.detach(), rtol=0, atol=1e-10 * scale)
            torch.testing.assert_close(
                opt.state[p]["ax"], reference.state[q]["ax"], rtol=0, atol=1e-10 * scale
            )
    assert not _bucket(opt).fused.failure  # type: ignore[attr-defined]
    return mus


def test_variants_of_different_layouts_are_refused() -> None:
    hyper = {"lr": 0.1, "lambd": 1e-4, "alpha": 0.75, "t0": 1e6, "step": 1.0}
    asgd = fused_update_for(("test", "asgd"), ours.chain(b.averaged_sgd()), hyper)
    sgd = fused_update_for(("test", "sgd"), ours.chain(b.scale_by_learning_rate()), hyper)
    assert not isinstance(asgd, str)
    assert not isinstance(sgd, str)
    with pytest.raises(ValueError, match="share their layout"):
        SwitchedUpdate(asgd, sgd, 3, 1.0)  # type: ignore[arg-type]
