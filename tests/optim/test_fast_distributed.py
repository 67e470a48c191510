"""DTensor parameters (FSDP2's fully_shard, tensor parallel) with default settings.

Two ranks on gloo over 127.0.0.1, CPU only: dltricks' Adam and AdamW with their defaults
(fast path on) match torch's on the same distributed model, parameters and state.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.optim import distributed_worker

WORLD = 2

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed/gloo"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _on_every_rank(worker: Callable[..., None]) -> dict[int, Any]:
    """What ``worker(rank, WORLD, port, results)`` put in ``results`` on each of WORLD
    spawned ranks, by rank."""
    context = mp.get_context("spawn")
    results = context.Queue()
    mp.start_processes(
        worker, args=(WORLD, _free_port(), results), nprocs=WORLD, start_method="spawn"
    )
    by_rank = dict(results.get(timeout=10) for _ in range(WORLD))
    assert sorted(by_rank) == list(range(WORLD))
    return by_rank


@pytest.mark.slow
def test_fsdp2_and_tensor_parallel_models_match_torch_with_default_settings() -> None:
    by_rank = _on_every_rank(distributed_worker.run)
    for rank, cases in by_rank.items():
        assert sorted(cases) == sorted(f"{k}/{n}" for k, n in distributed_worker.CASES)
        for case, (kind, worst) in cases.items():
            assert kind == "DTensor", f"rank {rank} {case}: parameters are {kind}"
            assert worst <= 1e-12, f"rank {rank} {case}: differs from torch by {worst}"


@pytest.mark.slow
def test_bf16_state_on_dtensor_parameters_and_int8_refused() -> None:
    """state_precision="bf16" on FSDP2 and tensor-parallel models: training follows torch's
    float32 AdamW to bfloat16 rounding, the moments are bfloat16 DTensors laid out as their
    parameters, a distributed checkpoint loads back bit for bit, and replicas (a replicated
    DTensor; DDP with a different random state in each process) round alike; "int8" is
    refused with the reason."""
    by_rank = _on_every_rank(distributed_worker.run_low_precision)
    for rank, out in by_rank.items():
        for kind in ("fsdp2", "tensor_parallel"):
            worst, layouts, identical = out[kind]
            # bf16 moments (8 significant bits): 4 steps of lr 1e-2 move a parameter by at
            # most 4e-2; the rounding changes each step by well under 1% of that.
            assert worst <= 1e-3, f"rank {rank} {kind}: differs from torch by {worst}"
            assert layouts == [("DTensor", torch.bfloat16, True)], (rank, kind, layouts)
            assert identical, f"rank {rank} {kind}: checkpoint round trip changed the state"
        assert out["replicas_agree"], f"rank {rank}: replicas rounded differently"
        assert out["ddp_replicas_agree"], f"rank {rank}: DDP replicas drifted apart"
        assert "int8" in out["int8"]
        assert "DTensor" in out["int8"]
