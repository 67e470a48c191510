"""DTensor parameters (FSDP2's fully_shard, tensor parallel) with default settings.

Two ranks on gloo over 127.0.0.1, CPU only: dltricks' Adam and AdamW with their defaults
(fast path on) match torch's on the same distributed model, parameters and state.
"""

from __future__ import annotations

import socket

import pytest
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


@pytest.mark.slow
def test_fsdp2_and_tensor_parallel_models_match_torch_with_default_settings() -> None:
    context = mp.get_context("spawn")
    results = context.Queue()
    mp.start_processes(
        distributed_worker.run,
        args=(WORLD, _free_port(), results),
        nprocs=WORLD,
        start_method="spawn",
    )
    by_rank = dict(results.get(timeout=10) for _ in range(WORLD))
    assert sorted(by_rank) == list(range(WORLD))
    for rank, cases in by_rank.items():
        assert sorted(cases) == sorted(f"{k}/{n}" for k, n in distributed_worker.CASES)
        for case, (kind, worst) in cases.items():
            assert kind == "DTensor", f"rank {rank} {case}: parameters are {kind}"
            assert worst <= 1e-12, f"rank {rank} {case}: differs from torch by {worst}"
