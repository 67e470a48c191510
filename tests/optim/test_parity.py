"""Every optimizer, every configuration: 60 float64 steps match the reference to 1e-10.

Both execution paths are checked. The eager path runs the whole table; the fast path (a
compiled kernel per chain, seconds to compile) runs every configuration that reuses its
optimizer's default chain (numeric hyperparameters are kernel inputs, so these cost no
compilation), every structural variant of the harness on Adam, and a few structural
configurations (:data:`FAST_STRUCTURAL`).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
import torch

from tests.optim.cases import CASES, OptimizerCase, config_id
from tests.optim.harness import VARIANTS, clone, default_dtype, make_model, train

TOLERANCE = 1e-10

# Configurations that change the chain, run on the fast path too (one compilation each).
FAST_STRUCTURAL = {
    ("Adam", "amsgrad=True"),
    ("RMSprop", "alpha=0.9-centered=True-momentum=0.5"),
}


def _same_chain_as_default(case: OptimizerCase, config: dict[str, Any]) -> bool:
    probe = [torch.nn.Parameter(torch.zeros(1))]
    default, other = case.ours(probe), case.ours(probe, **config)
    structure = default.structure_of  # type: ignore[attr-defined]
    return bool(
        structure(default.param_groups[0]) == other.structure_of(other.param_groups[0])  # type: ignore[attr-defined]
    )


def _on_fast_path(case: OptimizerCase, config: dict[str, Any], variant: str) -> bool:
    if variant != "plain":
        return case.name == "Adam" and not config
    return _same_chain_as_default(case, config) or (case.name, config_id(config)) in FAST_STRUCTURAL


PARAMS = [
    pytest.param(
        case, config, variant, path, id=f"{case.name}-{config_id(config)}-{variant}-{path}"
    )
    for case in CASES
    for config in case.configs
    for variant in VARIANTS
    # Structural variants are exercised once per optimizer, on its default configuration.
    if variant == "plain" or not config
    for path in ("eager", "fast")
    if path == "eager" or _on_fast_path(case, config, variant)
]


def _run_pair(
    case: OptimizerCase, config: dict[str, Any], variant: str, path: str = "eager"
) -> tuple[Any, ...]:
    lr = config.get("lr", case.lr)
    config = {**config, "lr": lr}
    with default_dtype(torch.float64):
        base = make_model()
        ours_model, ref_model = clone(base), clone(base)
        factory = partial(case.ours, fast=path == "fast", **config)
        ours_opt = train(factory, ours_model, variant=variant, lr=lr)
        ref_opt = train(
            partial(case.reference, **case.reference_extra, **config),
            ref_model,
            variant=variant,
            lr=lr,
        )
    return ours_model, ref_model, ours_opt, ref_opt


@pytest.mark.parametrize(("case", "config", "variant", "path"), PARAMS)
def test_matches_reference_in_float64(
    case: OptimizerCase, config: dict[str, Any], variant: str, path: str
) -> None:
    ours_model, ref_model, ours_opt, ref_opt = _run_pair(case, config, variant, path)
    if path == "fast":
        flat = ours_opt._flat  # type: ignore[attr-defined]
        assert flat is not None
        # Every library chain is fused: whole, or around its per-tensor blocks (Adafactor).
        assert flat.plans[0].buckets, "the fast path fell back to eager"
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
