"""The work of one rank in test_fast_distributed.py (importable by spawned processes)."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

import dltricks.optim as ours
from dltricks.optim.fast import MIN_FAST_NUMEL

CASES = [(kind, name) for kind in ("fsdp2", "tensor_parallel") for name in ("Adam", "AdamW")]
STEPS = 4


def _model() -> nn.Sequential:
    gen = torch.Generator().manual_seed(0)
    # Each layer above MIN_FAST_NUMEL elements: default settings would fuse it.
    model = nn.Sequential(nn.Linear(64, 600), nn.Tanh(), nn.Linear(600, 64)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.3)
    assert all(p.numel() >= MIN_FAST_NUMEL for p in model[0::2].parameters() if p.dim() == 2)
    return model


def _distribute(model: nn.Sequential, kind: str, mesh: Any) -> nn.Sequential:
    if kind == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        fully_shard(model[0], mesh=mesh)
        fully_shard(model[2], mesh=mesh)
        fully_shard(model, mesh=mesh)
    else:
        from torch.distributed.tensor.parallel import (
            ColwiseParallel,
            RowwiseParallel,
            parallelize_module,
        )

        parallelize_module(model, mesh, {"0": ColwiseParallel(), "2": RowwiseParallel()})
    return model


def run(rank: int, world: int, port: int, results: Any) -> None:
    """Train a distributed model with dltricks and one with torch; put the largest
    difference of each case (parameters, exp_avg, exp_avg_sq, step) in ``results``."""
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        from torch.distributed.device_mesh import init_device_mesh

        mesh = init_device_mesh("cpu", (world,))
        out: dict[str, Any] = {}
        for kind, name in CASES:
            ours_model = _distribute(_model(), kind, mesh)
            ref_model = _distribute(_model(), kind, mesh)
            # Default settings, as a user would write them: the fast path is on.
            ours_opt = getattr(ours, name)(ours_model.parameters(), lr=1e-2, weight_decay=0.1)
            ref_opt = getattr(torch.optim, name)(ref_model.parameters(), lr=1e-2, weight_decay=0.1)
            gen = torch.Generator().manual_seed(100 + rank)
            for _ in range(STEPS):
                x = torch.randn(4, 64, generator=gen, dtype=torch.float64)
                for model, opt in ((ours_model, ours_opt), (ref_model, ref_opt)):
                    opt.zero_grad()
                    model(x).pow(2).mean().backward()
                    opt.step()
            worst = 0.0
            pairs = zip(ours_model.parameters(), ref_model.parameters(), strict=True)
            for p, q in pairs:
                worst = max(worst, float((p.full_tensor() - q.full_tensor()).abs().max()))
                mine, theirs = ours_opt.state[p], ref_opt.state[q]
                for key in ("exp_avg", "exp_avg_sq"):
                    diff = mine[key].full_tensor() - theirs[key].full_tensor()
                    worst = max(worst, float(diff.abs().max()))
                worst = max(worst, abs(float(mine["step"]) - float(theirs["step"])))
            out[f"{kind}/{name}"] = (type(p).__name__, worst)
        results.put((rank, out))
    finally:
        dist.destroy_process_group()
