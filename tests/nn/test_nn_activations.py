"""Activations against torch.nn.functional and against their formulas, in float64."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (torch convention)
from torch import Tensor, nn

import dltricks.nn as dnn
from dltricks.nn import functional as DF  # noqa: N812 (mirrors F)

# The paper's constants, typed in from Klambauer et al. 2017 (not imported from the code).
ALPHA = 1.6732632423543772848170429916717
LAMBDA = 1.0507009873554804934193349852946


def _sig(x: Tensor) -> Tensor:
    return 1.0 / (1.0 + torch.exp(-x))


def _phi_cdf(x: Tensor) -> Tensor:
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _phi_pdf(x: Tensor) -> Tensor:
    return torch.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _softplus(x: Tensor) -> Tensor:
    return torch.log1p(torch.exp(x))


# name, module factory, torch reference, closed-form f, closed-form f'
Fn = Callable[[Tensor], Tensor]
CASES: list[tuple[str, Callable[[], nn.Module], Fn, Fn, Fn]] = [
    ("sigmoid", dnn.Sigmoid, torch.sigmoid, _sig, lambda x: _sig(x) * (1 - _sig(x))),
    ("tanh", dnn.Tanh, torch.tanh, torch.tanh, lambda x: 1 - torch.tanh(x) ** 2),
    ("relu", dnn.ReLU, F.relu, lambda x: x.clamp(min=0), lambda x: (x > 0).double()),
    (
        "leaky_relu",
        lambda: dnn.LeakyReLU(0.1),
        lambda x: F.leaky_relu(x, 0.1),
        lambda x: torch.where(x > 0, x, 0.1 * x),
        lambda x: torch.where(x > 0, torch.ones_like(x), torch.full_like(x, 0.1)),
    ),
    (
        "prelu",
        dnn.PReLU,  # init 0.25, shared slope
        lambda x: F.prelu(x, torch.tensor([0.25], dtype=x.dtype)),
        lambda x: torch.where(x > 0, x, 0.25 * x),
        lambda x: torch.where(x > 0, torch.ones_like(x), torch.full_like(x, 0.25)),
    ),
    (
        "elu",
        dnn.ELU,
        F.elu,
        lambda x: torch.where(x > 0, x, torch.expm1(x)),
        lambda x: torch.where(x > 0, 1.0, torch.exp(x)),
    ),
    (
        "selu",
        dnn.SELU,
        F.selu,
        lambda x: LAMBDA * torch.where(x > 0, x, ALPHA * torch.expm1(x)),
        lambda x: LAMBDA * torch.where(x > 0, 1.0, ALPHA * torch.exp(x)),
    ),
    (
        "gelu",
        dnn.GELU,
        F.gelu,
        lambda x: x * _phi_cdf(x),
        lambda x: _phi_cdf(x) + x * _phi_pdf(x),
    ),
    (
        "silu",
        dnn.SiLU,
        F.silu,
        lambda x: x * _sig(x),
        lambda x: _sig(x) + x * _sig(x) * (1 - _sig(x)),
    ),
    (
        "swish_beta2",
        lambda: dnn.Swish(2.0),
        lambda x: x * torch.sigmoid(2.0 * x),
        lambda x: x * _sig(2 * x),
        lambda x: _sig(2 * x) + 2 * x * _sig(2 * x) * (1 - _sig(2 * x)),
    ),
    (
        "mish",
        dnn.Mish,
        F.mish,
        lambda x: x * torch.tanh(_softplus(x)),
        lambda x: torch.tanh(_softplus(x)) + x * (1 - torch.tanh(_softplus(x)) ** 2) * _sig(x),
    ),
]
IDS = [c[0] for c in CASES]


def _inputs(seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    x = 3.0 * torch.randn(64, 8, generator=g, dtype=torch.float64)
    # Keep away from the kink at 0, where the derivative is a convention.
    return torch.where(x.abs() < 1e-3, torch.full_like(x, 0.5), x)


@pytest.mark.parametrize(("name", "factory", "torch_ref", "f", "df"), CASES, ids=IDS)
def test_forward_and_gradient_match_torch_and_formula(
    name: str, factory: Callable[[], nn.Module], torch_ref: Fn, f: Fn, df: Fn
) -> None:
    module = factory().double()
    x = _inputs().requires_grad_(True)
    y = module(x)
    (grad,) = torch.autograd.grad(y.sum(), x)

    x_ref = x.detach().clone().requires_grad_(True)
    y_ref = torch_ref(x_ref)
    (grad_ref,) = torch.autograd.grad(y_ref.sum(), x_ref)

    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-12, atol=1e-12)
    # The formula and derivative in the docstrings, evaluated independently.
    torch.testing.assert_close(y.detach(), f(x.detach()), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, df(x.detach()), rtol=1e-10, atol=1e-12)


GRADCHECK_MODULES: list[tuple[str, Callable[[], nn.Module]]] = [
    *[(c[0], c[1]) for c in CASES],
    ("prelu_per_channel", lambda: dnn.PReLU(num_parameters=8)),
    ("gelu_tanh", lambda: dnn.GELU("tanh")),
    ("group_max_k2", lambda: dnn.GroupMax(2)),
    ("group_max_k4", lambda: dnn.GroupMax(4)),
    ("maxout_layer", lambda: dnn.Maxout(8, 3, k=3, generator=torch.Generator().manual_seed(1))),
]


@pytest.mark.parametrize(
    ("name", "factory"), GRADCHECK_MODULES, ids=[m[0] for m in GRADCHECK_MODULES]
)
def test_gradcheck(name: str, factory: Callable[[], nn.Module]) -> None:
    module = factory().double()
    x = _inputs(1)[:6].requires_grad_(True)
    params = tuple(p for p in module.parameters())
    assert torch.autograd.gradcheck(lambda inp, *ps: module(inp), (x, *params))


def test_gradcheck_functional_forms() -> None:
    x = _inputs(2)[:4].requires_grad_(True)
    w = torch.tensor([0.3], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(DF.prelu, (x, w))
    assert torch.autograd.gradcheck(lambda t: DF.leaky_relu(t, 0.2), (x,))
    assert torch.autograd.gradcheck(lambda t: DF.swish(t, 1.5), (x,))
    assert torch.autograd.gradcheck(lambda t: DF.maxout(t, 2), (x,))

    def dropped(t: Tensor) -> Tensor:
        # A fresh generator per call: gradcheck evaluates the same mask every time.
        return DF.alpha_dropout(t, 0.3, True, torch.Generator().manual_seed(3))

    assert torch.autograd.gradcheck(dropped, (x,))


def test_prelu_slope_gradient_is_min_x_0() -> None:
    module = dnn.PReLU(num_parameters=3).double()
    x = _inputs(3)[:, :3].unsqueeze(-1)  # (N, C=3, L=1): slopes per channel (dim 1)
    module(x).sum().backward()
    expected = x.clamp(max=0).sum(dim=(0, 2))
    assert module.weight.grad is not None
    torch.testing.assert_close(module.weight.grad, expected)
    assert torch.all(module.weight.detach() == 0.25)


def test_maxout_k2_with_zero_piece_is_relu_exactly() -> None:
    g = torch.Generator().manual_seed(4)
    layer = dnn.Maxout(5, 7, k=2).double()
    reference = nn.Linear(5, 7).double()
    with torch.no_grad():
        reference.weight.copy_(torch.randn(7, 5, generator=g, dtype=torch.float64))
        reference.bias.copy_(torch.randn(7, generator=g, dtype=torch.float64))
        # Unit j's pieces are rows 2j (the linear piece) and 2j+1 (fixed at zero).
        layer.linear.weight.zero_()
        layer.linear.bias.zero_()
        layer.linear.weight[0::2] = reference.weight
        layer.linear.bias[0::2] = reference.bias
    x = torch.randn(32, 5, generator=g, dtype=torch.float64)

    # Bit-exact on the same pre-activations, value and gradient.
    z = layer.linear(x).detach().requires_grad_(True)
    z_ref = z.detach().clone().requires_grad_(True)
    y = DF.maxout(z, 2)
    y_ref = torch.relu(z_ref[:, 0::2])
    assert torch.equal(y, y_ref)
    upstream = torch.randn(y.shape, generator=g, dtype=torch.float64)
    y.backward(upstream)
    y_ref.backward(upstream)
    assert z.grad is not None
    assert z_ref.grad is not None
    # The linear pieces get ReLU's gradient; what reaches the fixed piece when it wins is
    # discarded (its weights are zero and frozen), so it never reaches the input.
    assert torch.equal(z.grad[:, 0::2], z_ref.grad[:, 0::2])
    x_leaf = x.clone().requires_grad_(True)
    x_ref = x.clone().requires_grad_(True)
    layer(x_leaf).backward(upstream)
    torch.relu(reference(x_ref)).backward(upstream)
    assert x_leaf.grad is not None
    assert x_ref.grad is not None
    torch.testing.assert_close(x_leaf.grad, x_ref.grad, rtol=1e-14, atol=1e-14)

    # End to end against a Linear + ReLU (matmuls of different shapes round differently).
    torch.testing.assert_close(layer(x), torch.relu(reference(x)), rtol=1e-14, atol=1e-14)


def test_group_max_matches_reshape_max() -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 12, generator=g)
    expected = torch.stack([x[:, 3 * j : 3 * j + 3].max(dim=1).values for j in range(4)], 1)
    assert torch.equal(dnn.GroupMax(3)(x), expected)


def test_selu_constants_are_the_papers() -> None:
    assert dnn.SELU_ALPHA == ALPHA
    assert dnn.SELU_SCALE == LAMBDA


@pytest.mark.parametrize(
    ("name", "expected_type"),
    [
        ("relu", dnn.ReLU),
        ("ReLU", dnn.ReLU),
        ("Leaky-ReLU", dnn.LeakyReLU),
        ("LEAKY_RELU", dnn.LeakyReLU),
        ("prelu", dnn.PReLU),
        ("selu", dnn.SELU),
        ("Swish", dnn.Swish),
        ("maxout", dnn.GroupMax),
        ("linear", nn.Identity),
    ],
)
def test_get_activation_by_name(name: str, expected_type: type[nn.Module]) -> None:
    assert type(dnn.get_activation(name)) is expected_type


def test_get_activation_passes_keywords() -> None:
    act = dnn.get_activation("leaky_relu", negative_slope=0.2)
    assert isinstance(act, nn.LeakyReLU)
    assert act.negative_slope == 0.2
    group = dnn.get_activation("maxout", k=3)
    assert isinstance(group, dnn.GroupMax)
    assert group.k == 3


BAD_INPUTS: list[tuple[Callable[[], object], str]] = [
    (lambda: dnn.get_activation("relux"), r"unknown activation 'relux'.*valid names:.*relu"),
    (lambda: dnn.get_activation("softmaxx"), r"leaky_relu, prelu"),
    (lambda: dnn.LeakyReLU(-0.1), r"negative_slope must be a finite float in \[0, 1\)"),
    (lambda: dnn.LeakyReLU(1.5), r"negative_slope"),
    (lambda: dnn.LeakyReLU(float("nan")), r"negative_slope"),
    (lambda: dnn.PReLU(init=-1.0), r"PReLU: init"),
    (lambda: dnn.PReLU(num_parameters=0), r"num_parameters must be a positive integer"),
    (lambda: dnn.ELU(alpha=0.0), r"alpha must be a finite float > 0"),
    (lambda: dnn.Swish(beta=-1.0), r"beta must be a finite float > 0"),
    (lambda: dnn.GELU("fast"), r"approximate must be 'none' or 'tanh'"),
    (lambda: dnn.GroupMax(1), r"k \(pieces per unit\) must be an integer >= 2"),
    (lambda: dnn.GroupMax(2.0), r"k \(pieces per unit\)"),  # type: ignore[arg-type]
    (lambda: dnn.Maxout(4, 3, k=0), r"k \(pieces per unit\)"),
    (lambda: dnn.Maxout(0, 3, k=2), r"in_features must be a positive integer"),
    (lambda: dnn.GroupMax(3)(torch.zeros(2, 10)), r"10 .* not divisible by k=3"),
    (lambda: DF.maxout(torch.zeros(2, 7), 2), r"not divisible by k=2"),
    (lambda: dnn.AlphaDropout(1.0), r"p must be a float in \[0, 1\)"),
    (lambda: DF.alpha_dropout(torch.zeros(3), -0.1), r"p must be in \[0, 1\)"),
    (lambda: dnn.maxout_gain(1), r"k \(pieces per unit\)"),
]


@pytest.mark.parametrize(("call", "match"), BAD_INPUTS, ids=[m for _, m in BAD_INPUTS])
def test_bad_inputs_raise_clear_errors(call: Callable[[], object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
