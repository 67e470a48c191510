"""State never aliases the gradient: in-place writes to ``p.grad`` leave the optimizer alone.

SGD's momentum buffer is the gradient itself at the first step (``b_1 = g_1``); a chain that
kept that tensor as its state would see its buffer change whenever ``p.grad`` is written in
place: by the next backward (which accumulates), by ``zero_grad(set_to_none=False)``, or by a
training loop that copies fresh gradients into ``p.grad``. torch clones the gradient there;
each run below is compared with torch's, in float64.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

import dltricks.optim as ours
from dltricks.optim import blocks as b

Make = Callable[[list[torch.Tensor]], torch.optim.Optimizer]


def _run(make: Make, dtype: torch.dtype, *, zero_in_place: bool) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    params = [
        torch.nn.Parameter(torch.randn(n, generator=gen, dtype=torch.float64).to(dtype))
        for n in (5, 3)
    ]
    opt = make(params)
    for p in params:
        p.grad = torch.zeros_like(p)
    for _ in range(6):
        if zero_in_place:
            opt.zero_grad(set_to_none=False)  # zeroes p.grad in place
        for p in params:
            fresh = torch.randn(p.shape, generator=gen, dtype=torch.float64).to(dtype)
            # Accumulate into the existing tensor, as backward does.
            p.grad.add_(fresh) if zero_in_place else p.grad.copy_(fresh)
        opt.step()
    return [p.detach().clone() for p in params]


CASES: dict[str, tuple[Make, Make]] = {
    "SGD momentum, no weight decay": (
        lambda ps: ours.SGD(ps, lr=0.1, momentum=0.9, fast=False),
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
    ),
    "a user chain that starts with momentum": (
        lambda ps: ours.ChainOptimizer(
            ps, ours.chain(b.trace(0.9, 0.0), b.scale_by_learning_rate()), lr=0.1, fast=False
        ),
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
    ),
    "Nesterov": (
        lambda ps: ours.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, fast=False),
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
    ),
}


@pytest.mark.parametrize("zero_in_place", [True, False], ids=["zero_grad-in-place", "copy_"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128], ids=["real", "complex"])
@pytest.mark.parametrize("case", list(CASES))
def test_in_place_gradient_writes_do_not_reach_the_state(
    case: str, dtype: torch.dtype, zero_in_place: bool
) -> None:
    mine_make, torch_make = CASES[case]
    mine = _run(mine_make, dtype, zero_in_place=zero_in_place)
    ref = _run(torch_make, dtype, zero_in_place=zero_in_place)
    for p, q in zip(mine, ref, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
