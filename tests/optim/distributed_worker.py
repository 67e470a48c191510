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


def run_low_precision(rank: int, world: int, port: int, results: Any) -> None:
    """bf16 state on DTensor parameters (FSDP2, tensor parallel, and a replicated parameter),
    against torch's float32 AdamW on the same model; the state's layout and a distributed
    checkpoint's round trip; int8 refused. Puts a dict of findings in ``results``."""
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        from torch.distributed.checkpoint.state_dict import (
            get_optimizer_state_dict,
            set_optimizer_state_dict,
        )
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.tensor import Replicate, distribute_tensor

        mesh = init_device_mesh("cpu", (world,))
        out: dict[str, Any] = {}
        for kind in ("fsdp2", "tensor_parallel"):
            ours_model = _distribute(_model().float(), kind, mesh)
            ref_model = _distribute(_model().float(), kind, mesh)
            ours_opt = ours.AdamW(ours_model.parameters(), lr=1e-2, state_precision="bf16")
            ref_opt = torch.optim.AdamW(ref_model.parameters(), lr=1e-2)
            gen = torch.Generator().manual_seed(100 + rank)
            for _ in range(STEPS):
                x = torch.randn(4, 64, generator=gen)
                for model, opt in ((ours_model, ours_opt), (ref_model, ref_opt)):
                    opt.zero_grad()
                    model(x).pow(2).mean().backward()
                    opt.step()
            worst = 0.0
            layouts = []
            for p, q in zip(ours_model.parameters(), ref_model.parameters(), strict=True):
                worst = max(worst, float((p.full_tensor() - q.full_tensor()).abs().max()))
                state = ours_opt.state[p]
                for key in ("exp_avg", "exp_avg_sq"):
                    value = state[key]
                    layouts.append(
                        (type(value).__name__, value.dtype, value.placements == p.placements)
                    )
            # A sharded distributed checkpoint of the optimizer loads back bit for bit.
            saved = get_optimizer_state_dict(ours_model, ours_opt)
            twin_model = _distribute(_model().float(), kind, mesh)
            twin = ours.AdamW(twin_model.parameters(), lr=1e-2, state_precision="bf16")
            set_optimizer_state_dict(twin_model, twin, saved)
            identical = all(
                torch.equal(ours_opt.state[p][k].to_local(), twin.state[q][k].to_local())
                and twin.state[q][k].dtype == torch.bfloat16
                for p, q in zip(ours_model.parameters(), twin_model.parameters(), strict=True)
                for k in ("exp_avg", "exp_avg_sq")
            )
            out[kind] = (worst, sorted(set(layouts), key=str), identical)
        # A replicated parameter: every rank rounds its copy of the state the same way.
        weight = torch.randn(64, 64, generator=torch.Generator().manual_seed(3))
        replicated = torch.nn.Parameter(distribute_tensor(weight, mesh, [Replicate()]))
        opt = ours.AdamW([replicated], lr=1e-2, state_precision="bf16")
        for step in range(STEPS):
            grad = torch.randn(64, 64, generator=torch.Generator().manual_seed(step))
            replicated.grad = distribute_tensor(grad, mesh, [Replicate()])
            opt.step()
        local = opt.state[replicated]["exp_avg"].to_local().float()
        gathered = [torch.empty_like(local) for _ in range(world)]
        dist.all_gather(gathered, local)
        out["replicas_agree"] = all(torch.equal(g, gathered[0]) for g in gathered)
        # DDP: each process seeds torch differently (as data loading often does); the
        # replicas' bf16 states and parameters stay identical.
        from torch.nn.parallel import DistributedDataParallel

        torch.manual_seed(1000 + rank)
        ddp = DistributedDataParallel(_model().float())
        opt = ours.AdamW(ddp.parameters(), lr=1e-2, state_precision="bf16")
        gen = torch.Generator().manual_seed(200 + rank)
        for _ in range(STEPS):
            opt.zero_grad()
            ddp(torch.randn(4, 64, generator=gen)).pow(2).mean().backward()
            opt.step()
        mine = torch.cat([p.detach().reshape(-1) for p in ddp.parameters()])
        mine = torch.cat([mine] + [v.float().reshape(-1) for st in opt.state.values()
                                   for v in st.values() if v.dim() > 0])  # fmt: skip
        everyone = [torch.empty_like(mine) for _ in range(world)]
        dist.all_gather(everyone, mine)
        out["ddp_replicas_agree"] = all(torch.equal(e, everyone[0]) for e in everyone)
        try:
            ours.AdamW(
                _distribute(_model().float(), "fsdp2", mesh).parameters(), state_precision="int8"
            )
            out["int8"] = "accepted"
        except NotImplementedError as error:
            out["int8"] = str(error)
        results.put((rank, out))
    finally:
        dist.destroy_process_group()
