"""Every optimizer, every configuration: 60 float64 steps match the reference to 1e-10."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
import torch

from tests.optim.cases import CASES, OptimizerCase, config_id
from tests.optim.harness import VARIANTS, clone, default_dtype, make_model, train

TOLERANCE = 1e-10

PARAMS = [
    pytest.param(case, config, variant, id=f"{case.name}-{config_id(config)}-{variant}")
    for case in CASES
    for config in case.configs
    for variant in VARIANTS
    # Structural variants are exercised once per optimizer, on its default configuration.
    if variant == "plain" or not config
]


def _run_pair(case: OptimizerCase, config: dict[str, Any], variant: str) -> tuple[Any, ...]:
    lr = config.get("lr", case.lr)
    config = {**config, "lr": lr}
    with default_dtype(torch.float64):
        base = make_model()
        ours_model, ref_model = clone(base), clone(base)
        ours_opt = train(partial(case.ours, **config), ours_model, variant=variant, lr=lr)
        ref_opt = train(
            partial(case.reference, **case.reference_extra, **config),
            ref_model,
            variant=variant,
            lr=lr,
        )
    return ours_model, ref_model, ours_opt, ref_opt


@pytest.mark.parametrize(("case", "config", "variant"), PARAMS)
def test_matches_reference_in_float64(
    case: OptimizerCase, config: dict[str, Any], variant: str
) -> None:
    ours_model, ref_model, ours_opt, ref_opt = _run_pair(case, config, variant)
    moved = False
    for p_ours, p_ref, p_start in zip(
        ours_model.parameters(), ref_model.parameters(), make_model().parameters(), strict=True
    ):
        scale = p_ref.detach().abs().max()
        torch.testing.assert_close(p_ours, p_ref, rtol=0, atol=TOLERANCE * float(scale))
        moved |= not torch.equal(p_ref, p_start)
    assert moved, "the reference never moved: the test would not see a wrong update"
    # State entries that torch names the same way must agree too.
    for p_ours, p_ref in zip(ours_model.parameters(), ref_model.parameters(), strict=True):
        ours_state, ref_state = ours_opt.state[p_ours], ref_opt.state[p_ref]
        ref_tensors = {k for k, v in ref_state.items() if isinstance(v, torch.Tensor)}
        shared = set(ours_state) & ref_tensors
        assert shared or not ref_tensors, "no shared state names: state would not read as torch's"
        for key in shared:
            ref_value = torch.as_tensor(ref_state[key], dtype=torch.float64)
            ours_value = torch.as_tensor(ours_state[key], dtype=torch.float64)
            atol = TOLERANCE * float(ref_value.abs().max().clamp_min(1e-12))
            torch.testing.assert_close(ours_value, ref_value, rtol=0, atol=atol, msg=key)
