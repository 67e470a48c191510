"""Initialisation by activation, the MLP builder and weight-decay groups."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import nn

import dltricks.nn as dnn


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    ("activation", "scheme", "gain"),
    [
        ("relu", "he", math.sqrt(2.0)),
        ("gelu", "he", math.sqrt(2.0)),
        ("elu", "he", math.sqrt(2.0)),
        (dnn.LeakyReLU(0.2), "he", math.sqrt(2.0 / 1.04)),
        ("prelu", "he", math.sqrt(2.0 / (1.0 + 0.25**2))),
        (nn.PReLU, "he", math.sqrt(2.0 / (1.0 + 0.25**2))),
        ("selu", "lecun", 1.0),
        ("sigmoid", "xavier", 1.0),
        (nn.Tanh, "xavier", 1.0),
        ("identity", "lecun", 1.0),
        ("maxout", "he", 1.0),  # k = 2: E[max(z1, z2)^2] = E[z^2]
    ],
)
def test_recommended_init(activation: dnn.ActivationLike, scheme: str, gain: float) -> None:
    spec = dnn.recommended_init(activation)
    assert spec.scheme == scheme
    assert spec.gain == pytest.approx(gain, rel=1e-12)


@pytest.mark.parametrize("k", [2, 3, 4, 6])
def test_maxout_gain_matches_monte_carlo(k: int) -> None:
    z = torch.randn(400_000, k, generator=_gen(k), dtype=torch.float64)
    second_moment = z.max(dim=1).values.pow(2).mean().item()
    # MC standard error of E[M^2] over 4e5 samples is < 0.3%.
    assert dnn.maxout_gain(k) == pytest.approx(second_moment**-0.5, rel=0.005)


@pytest.mark.parametrize(
    ("scheme", "expected_std"),
    [
        ("he", math.sqrt(2.0 / 400)),
        ("lecun", math.sqrt(1.0 / 400)),
        ("xavier", math.sqrt(6.0 / (400 + 300)) / math.sqrt(3.0)),  # U(-b, b): std b/sqrt 3
    ],
)
def test_init_for_activation_weight_statistics(scheme: str, expected_std: float) -> None:
    model = nn.Sequential(nn.Linear(400, 300), nn.ReLU(), nn.Linear(300, 300))
    dnn.init_for_activation(model, "relu", scheme, generator=_gen(1))
    first = model[0]
    assert isinstance(first, nn.Linear)
    # 120000 draws: the sample std is within 1% of the population std.
    assert first.weight.std().item() == pytest.approx(expected_std, rel=0.01)
    assert torch.all(first.bias == 0)
    if scheme == "xavier":
        bound = math.sqrt(6.0 / 700)
        assert first.weight.abs().max().item() <= bound


def test_init_for_activation_handles_conv_and_is_seeded() -> None:
    def build() -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))

    a = dnn.init_for_activation(build(), "relu", generator=_gen(2))
    b = dnn.init_for_activation(build(), "relu", generator=_gen(2))
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    conv = a[0]
    assert isinstance(conv, nn.Conv2d)
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2.0 / 27), rel=0.2)


def test_mlp_structure_and_depth_meaning() -> None:
    model = dnn.MLP(64, 10, 32, 3, "tanh", generator=_gen(3))
    assert len(model.hidden_layers) == 3
    assert [layer.in_features for layer in model.linear_layers] == [64, 32, 32, 32]
    assert model.output_layer.out_features == 10
    assert all(isinstance(a, nn.Tanh) for a in model.activations)
    assert model(torch.zeros(5, 1, 8, 8)).shape == (5, 10)  # images are flattened
    one_hidden = dnn.MLP(4, 2, 8, 1)
    assert sum(isinstance(m, nn.Linear) for m in one_hidden.modules()) == 2


def test_mlp_prelu_layers_have_own_slopes() -> None:
    model = dnn.MLP(4, 2, 8, 3, dnn.PReLU(num_parameters=8))
    slopes = [a.weight for a in model.activations]
    assert len({id(s) for s in slopes}) == 3
    assert all(s.shape == (8,) for s in slopes)


def test_mlp_maxout_has_k_pieces_per_unit() -> None:
    model = dnn.MLP(6, 3, 5, 2, "maxout", maxout_k=3, generator=_gen(4))
    assert [layer.out_features for layer in model.hidden_layers] == [15, 15]
    assert [layer.in_features for layer in model.hidden_layers] == [6, 5]
    x = torch.randn(7, 6, generator=_gen(5))
    first = model.hidden_layers[0](x).view(7, 5, 3).max(dim=2).values
    torch.testing.assert_close(model.activations[0](model.hidden_layers[0](x)), first)
    assert model(x).shape == (7, 3)


def test_mlp_init_choice_is_applied() -> None:
    relu_xavier = dnn.MLP(300, 10, 300, 2, "relu", init="xavier", generator=_gen(6))
    relu_he = dnn.MLP(300, 10, 300, 2, "relu", init="auto", generator=_gen(6))
    w_xavier = relu_xavier.hidden_layers[1].weight.std().item()
    w_he = relu_he.hidden_layers[1].weight.std().item()
    assert w_xavier == pytest.approx(math.sqrt(2.0 / 600), rel=0.02)
    assert w_he == pytest.approx(math.sqrt(2.0 / 300), rel=0.02)
    torch_default = dnn.MLP(300, 10, 300, 2, "relu", init="torch", generator=_gen(6))
    bound = 1.0 / math.sqrt(300)
    assert torch_default.hidden_layers[1].weight.abs().max().item() <= bound
    assert torch_default.hidden_layers[1].bias.abs().max().item() > 0.0


def test_mlp_is_reproducible_from_a_generator() -> None:
    a = dnn.MLP(5, 2, 7, 2, "gelu", generator=_gen(7))
    b = dnn.MLP(5, 2, 7, 2, "gelu", generator=_gen(7))
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_param_groups_no_decay() -> None:
    model = nn.Sequential(nn.Linear(4, 4), dnn.PReLU(4), nn.LayerNorm(4), nn.Linear(4, 2))
    groups = dnn.param_groups_no_decay(model, 0.1)
    decay_ids = {id(p) for p in groups[0]["params"]}
    no_decay_ids = {id(p) for p in groups[1]["params"]}
    assert groups[0]["weight_decay"] == 0.1
    assert groups[1]["weight_decay"] == 0.0
    assert decay_ids == {id(model[0].weight), id(model[3].weight)}
    assert id(model[1].weight) in no_decay_ids
    assert id(model[0].bias) in no_decay_ids
    keep_bias = dnn.param_groups_no_decay(model, 0.1, exclude_bias=False)
    assert id(model[0].bias) in {id(p) for p in keep_bias[0]["params"]}
    # PReLU slopes stay out of decay whatever the flags say.
    assert id(model[1].weight) not in {id(p) for p in keep_bias[0]["params"]}
    torch.optim.AdamW(groups, lr=1e-3)  # accepted by torch.optim


BAD_INPUTS: list[tuple[Callable[[], object], str]] = [
    (lambda: dnn.MLP(0, 2, 4, 1), r"in_features must be a positive integer"),
    (lambda: dnn.MLP(3, 2, 4, 0), r"depth must be a positive integer"),
    (lambda: dnn.MLP(3, 2, 4.0, 1), r"width must be a positive integer"),  # type: ignore[arg-type]
    (lambda: dnn.MLP(3, 2, 4, 1, dropout=1.0), r"dropout must be in \[0, 1\)"),
    (lambda: dnn.MLP(3, 2, 4, 1, dropout=-0.1), r"dropout must be in \[0, 1\)"),
    (lambda: dnn.MLP(3, 2, 4, 1, "rellu"), r"unknown activation 'rellu'"),
    (lambda: dnn.MLP(3, 2, 4, 1, init="glorot"), r"unknown init 'glorot'"),
    (lambda: dnn.MLP(3, 2, 4, 1, "maxout", maxout_k=1), r"k \(pieces per unit\)"),
    (
        lambda: dnn.MLP(3, 2, 4, 1, "leaky_relu", activation_kwargs={"negative_slope": 2.0}),
        r"negative_slope",
    ),
    (
        lambda: dnn.init_for_activation(nn.Sequential(nn.ReLU()), "relu"),
        r"no nn.Linear or nn.ConvNd",
    ),
    (lambda: dnn.recommended_init(nn.Softmax(dim=1)), r"no recommended init for Softmax"),
    (lambda: dnn.param_groups_no_decay(nn.Linear(2, 2), -1.0), r"weight_decay must be >= 0"),
]


@pytest.mark.parametrize(("call", "match"), BAD_INPUTS, ids=[m for _, m in BAD_INPUTS])
def test_bad_inputs_raise_clear_errors(call: Callable[[], object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
