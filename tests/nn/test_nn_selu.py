"""SELU self-normalisation and alpha-dropout (Klambauer et al. 2017)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import Tensor, nn

import dltricks.nn as dnn

ALPHA = 1.6732632423543772848170429916717
LAMBDA = 1.0507009873554804934193349852946
WIDTH, BATCH, DEPTH = 256, 512, 32


def _selu_stack(x: Tensor, generator: torch.Generator) -> tuple[list[float], list[float]]:
    """Means and variances after each of DEPTH SELU layers with LeCun-normal weights."""
    model = dnn.MLP(WIDTH, WIDTH, WIDTH, DEPTH, "selu", init="auto", generator=generator)
    means: list[float] = []
    variances: list[float] = []

    def record(_module: nn.Module, _inputs: object, out: Tensor) -> None:
        means.append(out.mean().item())
        variances.append(out.var().item())

    for act in model.activations:
        act.register_forward_hook(record)
    with torch.no_grad():
        model(x)
    return means, variances


def test_mlp_selu_uses_lecun_normal() -> None:
    model = dnn.MLP(WIDTH, 10, WIDTH, 2, "selu", generator=torch.Generator().manual_seed(0))
    weight = model.hidden_layers[1].weight
    # Var(w) = 1/fan_in; the sample std of 65536 draws is within 1% of 1/16.
    assert weight.std().item() == pytest.approx(1.0 / math.sqrt(WIDTH), rel=0.01)
    assert weight.mean().abs().item() < 0.01 / math.sqrt(WIDTH) * 10


@pytest.mark.parametrize("seed", [0, 1])
def test_selu_keeps_mean_0_variance_1_through_32_layers(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH, WIDTH, generator=g)
    means, variances = _selu_stack(x, g)
    # Bounds measured before writing them: at this size (width 256, batch 512, float32)
    # over 12 seeds x 32 layers the worst |mean| was 0.018 and the worst |variance - 1| was
    # 0.076 (width 512: 0.011 / 0.036). 0.05 / 0.15 leave a 2-3x margin.
    assert max(abs(m) for m in means) < 0.05
    assert max(abs(v - 1.0) for v in variances) < 0.15


def test_selu_pulls_variance_toward_1_from_mean_1_variance_4() -> None:
    g = torch.Generator().manual_seed(2)
    x = 1.0 + 2.0 * torch.randn(BATCH, WIDTH, generator=g)
    _, variances = _selu_stack(x, g)
    # Measured over 12 seeds: variances 3.4, 2.7, 2.2, 1.85, 1.6, 1.46, 1.34, 1.25, ...;
    # the gap to 1 shrank at every one of the first 7 layers in all seeds (later layers sit
    # within noise of 1, so their order is random); the mean variance of the last 8 layers
    # was within 0.037 of 1 and the largest single gap there 0.107.
    gaps = [abs(v - 1.0) for v in variances]
    assert gaps[0] > 1.0  # the first layer still carries the large input variance
    assert all(later < earlier for earlier, later in itertools.pairwise(gaps[:7]))
    assert sum(variances[-8:]) / 8 == pytest.approx(1.0, abs=0.08)
    assert max(gaps[-8:]) < 0.2


def _selu_activations(n: int, seed: int) -> Tensor:
    # SELU of N(0, 1) pre-activations has mean 0 / variance 1: the fixed point.
    g = torch.Generator().manual_seed(seed)
    return LAMBDA * torch.nn.functional.elu(torch.randn(n, generator=g), ALPHA)


def test_alpha_dropout_keeps_mean_and_variance_plain_dropout_does_not() -> None:
    x = _selu_activations(400_000, 3)
    p = 0.2
    ours = dnn.AlphaDropout(p, generator=torch.Generator().manual_seed(4)).train()(x)
    torch.manual_seed(5)  # torch's modules draw from the global generator
    theirs = nn.AlphaDropout(p).train()(x)
    plain = nn.Dropout(p).train()(x)
    # Standard error of a mean / variance estimate over 4e5 samples is ~0.002 / ~0.003.
    assert x.mean().item() == pytest.approx(0.0, abs=0.01)
    assert x.var().item() == pytest.approx(1.0, abs=0.01)
    assert ours.mean().item() == pytest.approx(0.0, abs=0.01)
    assert ours.var().item() == pytest.approx(1.0, abs=0.015)
    assert ours.mean().item() == pytest.approx(theirs.mean().item(), abs=0.015)
    assert ours.var().item() == pytest.approx(theirs.var().item(), abs=0.02)
    # Plain dropout scales by 1/q: variance ~ E[x^2]/q = 1.25.
    assert plain.var().item() == pytest.approx(1.0 / (1.0 - p), abs=0.02)
    assert (ours == ours.min()).float().mean().item() == pytest.approx(p, abs=0.01)


def test_alpha_dropout_formula() -> None:
    p = 0.3
    q = 1.0 - p
    alpha_prime = -LAMBDA * ALPHA
    a = (q + alpha_prime**2 * q * (1 - q)) ** -0.5
    b = -a * (1 - q) * alpha_prime
    x = torch.randn(1000, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    y = dnn.AlphaDropout(p, generator=torch.Generator().manual_seed(7))(x)
    dropped = torch.isclose(y, torch.tensor(a * alpha_prime + b, dtype=torch.float64))
    torch.testing.assert_close(y[~dropped], a * x[~dropped] + b)
    assert 200 < int(dropped.sum()) < 400  # ~300 expected
    assert torch.equal(dnn.AlphaDropout(p).eval()(x), x)


def test_alpha_dropout_is_reproducible_with_a_generator() -> None:
    x = torch.randn(64)
    first = dnn.AlphaDropout(0.5, generator=torch.Generator().manual_seed(8))(x)
    second = dnn.AlphaDropout(0.5, generator=torch.Generator().manual_seed(8))(x)
    assert torch.equal(first, second)


def test_mlp_selu_with_dropout_uses_alpha_dropout() -> None:
    model = dnn.MLP(8, 2, 16, 3, "selu", dropout=0.1)
    assert sum(isinstance(m, dnn.AlphaDropout) for m in model.modules()) == 3
    assert not any(type(m) is nn.Dropout for m in model.modules())
    relu_model = dnn.MLP(8, 2, 16, 3, "relu", dropout=0.1)
    assert sum(type(m) is nn.Dropout for m in relu_model.modules()) == 3
