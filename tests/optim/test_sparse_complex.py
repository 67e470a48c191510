"""Sparse gradients (SGD, Adagrad) and complex parameters (every optimizer), against torch.

torch's SGD and Adagrad take the sparse gradients of ``nn.Embedding(sparse=True)``; every
torch optimizer updates a complex parameter as the pair of real ones ``torch.view_as_real``
shows. Each runs here through ours (eager, and ``fast=True``, which must route them to the
eager step) and through torch, in float32 and float64, and must follow torch's trajectory.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import nn

import dltricks.optim as ours
from tests.optim.harness import default_dtype

DTYPES = [torch.float32, torch.float64]
PATHS = [False, True]
TOLERANCE = {
    torch.float32: {"rtol": 1e-5, "atol": 1e-6},
    torch.float64: {"rtol": 1e-12, "atol": 1e-14},
}
COMPLEX = {torch.float32: torch.complex64, torch.float64: torch.complex128}

SPARSE_CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.2}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    ("SGD", {"lr": 0.1, "maximize": True}),
    ("Adagrad", {"lr": 0.1}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.1, "initial_accumulator_value": 0.2}),
    ("Adagrad", {"lr": 0.1, "maximize": True, "eps": 1e-6}),
]


def _embedding_run(
    cls: Any, config: dict[str, Any], dtype: torch.dtype, steps: int = 6
) -> tuple[nn.Embedding, torch.optim.Optimizer]:
    generator = torch.Generator().manual_seed(0)
    embedding = nn.Embedding(12, 4, sparse=True).to(dtype)
    with torch.no_grad():
        embedding.weight.copy_(torch.randn(12, 4, generator=generator, dtype=dtype))
    opt = cls(embedding.parameters(), **config)
    for step in range(steps):
        opt.zero_grad()
        # Repeated indices (an uncoalesced gradient) and rows left out of some steps.
        rows = torch.tensor([step % 4, 7, step % 4, 9 if step % 2 else 2])
        (embedding(rows) ** 2).sum().backward()
        assert embedding.weight.grad is not None
        assert embedding.weight.grad.is_sparse
        opt.step()
    return embedding, opt


@pytest.mark.parametrize("fast", PATHS, ids=["eager", "fast"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    ("name", "config"), SPARSE_CONFIGS, ids=[f"{n}-{'-'.join(c)}" for n, c in SPARSE_CONFIGS]
)
def test_sparse_gradients_follow_torch(
    name: str, config: dict[str, Any], dtype: torch.dtype, fast: bool
) -> None:
    with default_dtype(dtype):
        mine, opt = _embedding_run(getattr(ours, name), {**config, "fast": fast}, dtype)
        theirs, _ = _embedding_run(getattr(torch.optim, name), config, dtype)
    torch.testing.assert_close(mine.weight, theirs.weight, **TOLERANCE[dtype])
    # The gradient is left as the user's sparse tensor, as torch leaves it.
    assert mine.weight.grad is not None
    assert mine.weight.grad.is_sparse
    assert opt.state_dict()["param_groups"][0]["lr"] == config["lr"]


def test_adagrad_refuses_weight_decay_with_sparse_gradients_as_torch() -> None:
    for cls in (torch.optim.Adagrad, ours.Adagrad):
        embedding = nn.Embedding(5, 2, sparse=True)
        before = embedding.weight.detach().clone()
        opt = cls(embedding.parameters(), lr=0.1, weight_decay=0.1)
        embedding(torch.tensor([1, 3])).sum().backward()
        with pytest.raises(RuntimeError, match="weight_decay option is not compatible"):
            opt.step()
        assert torch.equal(embedding.weight, before)


@pytest.mark.parametrize("fast", PATHS, ids=["eager", "fast"])
@pytest.mark.parametrize("name", ["Adam", "RMSprop", "Lion"])
def test_other_optimizers_refuse_sparse_gradients_before_any_update(name: str, fast: bool) -> None:
    dense, embedding = nn.Linear(3, 2), nn.Embedding(5, 2, sparse=True)
    params = [*dense.parameters(), *embedding.parameters()]
    before = [p.detach().clone() for p in params]
    opt = getattr(ours, name)(params, lr=0.1, fast=fast)
    (dense(torch.ones(3)).sum() + embedding(torch.tensor([1, 3])).sum()).backward()
    with pytest.raises(RuntimeError, match=f"{name} does not support sparse gradients"):
        opt.step()
    for p, b in zip(params, before, strict=True):
        assert torch.equal(p, b)
    if hasattr(torch.optim, name):  # torch raises the same type
        with pytest.raises(RuntimeError, match="does not support sparse gradients"):
            getattr(torch.optim, name)(params, lr=0.1).step()


COMPLEX_CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("SGD", {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.1}),
    ("SGD", {"lr": 0.005, "momentum": 0.5, "nesterov": True, "maximize": True}),
    ("Adagrad", {"lr": 0.1, "initial_accumulator_value": 0.1, "lr_decay": 0.01}),
    ("RMSprop", {"lr": 0.01}),
    ("RMSprop", {"lr": 0.01, "centered": True, "momentum": 0.5, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.05}),
    ("Adam", {"lr": 0.05, "amsgrad": True, "weight_decay": 0.1, "maximize": True}),
    ("AdamW", {"lr": 0.05, "weight_decay": 0.3}),
    ("Adamax", {"lr": 0.05, "weight_decay": 0.1}),
    ("NAdam", {"lr": 0.05}),
    ("NAdam", {"lr": 0.05, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("Adadelta", {"lr": 1.0, "weight_decay": 0.1}),
    ("RAdam", {"lr": 0.05, "weight_decay": 0.1}),
    ("Rprop", {"lr": 0.01, "maximize": True}),
    ("ASGD", {"lr": 0.01, "t0": 2, "weight_decay": 0.1}),
]


def _complex_run(
    cls: Any, config: dict[str, Any], dtype: torch.dtype, steps: int = 6
) -> tuple[list[nn.Parameter], torch.optim.Optimizer]:
    generator = torch.Generator().manual_seed(1)
    shapes = [(6, 5), (5,)]
    params = [
        nn.Parameter(torch.randn(shape, generator=generator, dtype=COMPLEX[dtype]))
        for shape in shapes
    ]
    real = nn.Parameter(torch.randn(4, generator=generator, dtype=dtype))  # mixed with real
    target = torch.randn(6, generator=generator, dtype=COMPLEX[dtype])
    opt = cls([*params, real], **config)
    for _ in range(steps):
        opt.zero_grad()
        out = params[0] @ params[1] - target
        loss = (out.abs() ** 2).sum() + (out.real * real.sum()).sum()
        loss.backward()
        opt.step()
    return [*params, real], opt


@pytest.mark.parametrize("fast", PATHS, ids=["eager", "fast"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    ("name", "config"), COMPLEX_CONFIGS, ids=[f"{n}-{'-'.join(c)}" for n, c in COMPLEX_CONFIGS]
)
def test_complex_parameters_follow_torch(
    name: str, config: dict[str, Any], dtype: torch.dtype, fast: bool
) -> None:
    with default_dtype(dtype):
        mine, opt = _complex_run(getattr(ours, name), {**config, "fast": fast}, dtype)
        theirs, reference = _complex_run(getattr(torch.optim, name), config, dtype)
    for a, b in zip(mine, theirs, strict=True):
        torch.testing.assert_close(a, b, **TOLERANCE[dtype])
    # State is complex where torch's is, so checkpoints go both ways.
    for p_mine, p_theirs in zip(mine, theirs, strict=True):
        for key, value in reference.state[p_theirs].items():
            if key == "step":
                continue  # kept in float32 (see the README), torch in the default dtype
            assert mine_state_dtype(opt, p_mine, key) == value.dtype, key
    saved = copy.deepcopy(opt.state_dict())
    reloaded = getattr(ours, name)(mine, **config)
    reloaded.load_state_dict(saved)
    copy.deepcopy(reference).load_state_dict(saved)


def mine_state_dtype(opt: torch.optim.Optimizer, p: torch.Tensor, key: str) -> torch.dtype:
    return opt.state[p][key].dtype  # type: ignore[no-any-return]
