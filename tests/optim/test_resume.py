"""Resume in a new process: save at step k, load in a fresh interpreter, continue, compare.

For every optimizer of the table, in float32 and float64, on the eager and on the fast path:
the parameters after ``k`` steps, a ``torch.save`` of the model's and optimizer's state_dicts,
a ``torch.load`` in a new Python process and ``n`` more steps there equal (``torch.equal``) the
parameters of an uninterrupted run of ``k + n`` steps. One subprocess per path runs every job,
so the interpreter start and (on the fast path) dynamo's warm-up are paid once; the kernels the
first process compiled come from torch's on-disk inductor cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.optim.cases import CASES
from tests.optim.harness import default_dtype, make_model, param_groups, train
from tests.optim.resume_worker import VARIANT, factory

ROOT = Path(__file__).resolve().parents[2]
K, N = 7, 6
DTYPES = ("float32", "float64")


def _jobs(fast: bool) -> list[tuple[str, int]]:
    # The eager path also runs each optimizer's richest configuration (the table's last: flags
    # that change the chain and the state); the fast path the default one, whose kernels the
    # other fast tests compile too.
    rows = [(case.name, 0) for case in CASES]
    if not fast:
        rows += [(case.name, len(case.configs) - 1) for case in CASES if len(case.configs) > 1]
    return rows


@pytest.mark.parametrize("fast", [False, True], ids=["eager", "fast"])
def test_resume_in_a_new_process_is_bit_identical(fast: bool, tmp_path: Path) -> None:
    jobs: list[dict[str, Any]] = []
    expected: dict[str, list[torch.Tensor]] = {}
    for case_name, config in _jobs(fast):
        case = next(c for c in CASES if c.name == case_name)
        lr = case.configs[config].get("lr", case.lr)
        make_opt = factory(case_name, config, fast)
        for dtype_name in DTYPES:
            dtype = getattr(torch, dtype_name)
            name = f"{case_name}-{config}-{dtype_name}"
            with default_dtype(dtype):
                whole = make_model(dtype=dtype)
                train(make_opt, whole, variant=VARIANT, lr=lr, steps=K + N)
                first = make_model(dtype=dtype)
                opt = make_opt(param_groups(first, VARIANT, lr))
                train(lambda ps, o=opt: o, first, variant=VARIANT, lr=lr, steps=K, optimizer=opt)
                checkpoint = tmp_path / f"{name}.pt"
                torch.save({"model": first.state_dict(), "optim": opt.state_dict()}, checkpoint)
            expected[name] = [p.detach().clone() for p in whole.parameters()]
            jobs.append(
                {
                    "name": name,
                    "case": case_name,
                    "config": config,
                    "dtype": dtype_name,
                    "fast": fast,
                    "checkpoint": str(checkpoint),
                    "start": K,
                    "steps": N,
                    "out": str(tmp_path / f"{name}.out.pt"),
                }
            )
    spec = tmp_path / "jobs.json"
    spec.write_text(json.dumps({"threads": torch.get_num_threads(), "jobs": jobs}))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.optim.resume_worker", str(spec)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    differing = []
    for job in jobs:
        resumed = torch.load(job["out"], weights_only=True)
        for index, (p, q) in enumerate(zip(resumed, expected[job["name"]], strict=True)):
            assert p.dtype == q.dtype == getattr(torch, job["dtype"])
            if not torch.equal(p, q):
                differing.append(f"{job['name']} parameter {index}")
    assert not differing, f"resumed runs differ from uninterrupted ones: {differing}"
