"""Second half of the resume test, run in a fresh Python process by ``test_resume.py``.

``python -m tests.optim.resume_worker JOBS.json``: for every job, build a model with other
weights, load the model and optimizer checkpoint written by the first process, train the
remaining steps and save the final parameters. Kept out of pytest's collection (no ``test_``
prefix) so that the file is only ever run as the new process.
"""

from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path
from typing import Any

import torch

from tests.optim.cases import CASES_BY_NAME
from tests.optim.harness import default_dtype, make_model, param_groups, train

VARIANT = "two_groups"


def factory(case_name: str, config_index: int, fast: bool) -> Any:
    """The optimizer factory of a job; the first process builds its optimizers with this too."""
    case = CASES_BY_NAME[case_name]
    config = case.configs[config_index]
    return partial(case.ours, fast=fast, **{"lr": case.lr, **config})


def resume(job: dict[str, Any]) -> None:
    dtype = getattr(torch, job["dtype"])
    case = CASES_BY_NAME[job["case"]]
    lr = case.configs[job["config"]].get("lr", case.lr)
    with default_dtype(dtype):
        # map_location: a checkpoint written on another device loads where this run is.
        saved = torch.load(job["checkpoint"], map_location="cpu", weights_only=True)
        model = make_model(seed=123, dtype=dtype)  # other weights: all must come from the file
        model.load_state_dict(saved["model"])
        opt = factory(job["case"], job["config"], job["fast"])(param_groups(model, VARIANT, lr))
        opt.load_state_dict(saved["optim"])
        train(
            lambda ps: opt,
            model,
            variant=VARIANT,
            lr=lr,
            steps=job["steps"],
            start=job["start"],
            optimizer=opt,
        )
        # Every library chain is fused: whole, or around its per-tensor blocks (Adafactor).
        if job["fast"]:
            flat = opt._flat
            if flat is None or not all(plan.buckets for plan in flat.plans if plan is not None):
                raise SystemExit(f"{job['name']}: the fast path was not taken after the load")
    torch.save([p.detach() for p in model.parameters()], job["out"])


def main(argv: list[str]) -> None:
    spec = json.loads(Path(argv[1]).read_text())
    # Same thread count as the first process: inductor specialises CPU kernels on it, and the
    # kernels the first process compiled then come from torch's on-disk cache.
    torch.set_num_threads(spec["threads"])
    for job in spec["jobs"]:
        resume(job)


if __name__ == "__main__":
    main(sys.argv)
