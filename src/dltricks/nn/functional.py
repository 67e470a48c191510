"""Activation functions as plain functions of tensors.

Notation: ``x`` is the pre-activation, ``y = f(x)`` the output, ``f'(x)`` the derivative.
Where torch has a fused kernel for a function we call it (one kernel, no saved
intermediates); the docstring gives the formula the kernel computes. SELU, Swish with a
general ``beta``, Maxout and alpha-dropout are written here from their papers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812 (torch convention)
from torch import Tensor

__all__ = [
    "ALPHA_DROPOUT_SATURATION",
    "SELU_ALPHA",
    "SELU_SCALE",
    "alpha_dropout",
    "alpha_dropout_affine",
    "check_k",
    "elu",
    "gelu",
    "leaky_relu",
    "maxout",
    "mish",
    "prelu",
    "relu",
    "selu",
    "sigmoid",
    "silu",
    "swish",
    "tanh",
]

# Klambauer et al. 2017, "Self-Normalizing Neural Networks": the fixed point (mean 0,
# variance 1) of the SELU map under LeCun-normal weights determines these two numbers.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
# The value SELU saturates to for x -> -inf: alpha' = -lambda * alpha.
ALPHA_DROPOUT_SATURATION = -SELU_SCALE * SELU_ALPHA


def sigmoid(x: Tensor) -> Tensor:
    """Logistic sigmoid ``y = 1 / (1 + exp(-x))``; ``f'(x) = y (1 - y) <= 1/4``.

    The bound 1/4 is why deep sigmoid nets lose gradient: each layer multiplies the
    back-propagated signal by at most 1/4 times the weights. Init: Xavier/Glorot
    (Glorot & Bengio 2010).
    """
    return torch.sigmoid(x)


def tanh(x: Tensor) -> Tensor:
    """Hyperbolic tangent ``y = tanh(x)``; ``f'(x) = 1 - y^2 <= 1``.

    Init: Xavier/Glorot (Glorot & Bengio 2010; LeCun et al. 1998, "Efficient BackProp").
    """
    return torch.tanh(x)


def relu(x: Tensor) -> Tensor:
    """Rectified linear unit ``y = max(0, x)``; ``f'(x) = 1[x > 0]`` (0 at x = 0).

    The derivative is exactly 1 on the active side, so gradients do not shrink through
    active units. Init: He, ``std = sqrt(2 / fan_in)`` (Nair & Hinton 2010; Glorot,
    Bordes & Bengio 2011; He et al. 2015).
    """
    return F.relu(x)


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """Leaky ReLU ``y = x if x > 0 else a x``; ``f'(x) = 1 if x > 0 else a``.

    Init: He with gain ``sqrt(2 / (1 + a^2))`` (Maas et al. 2013; He et al. 2015).
    """
    return F.leaky_relu(x, negative_slope)


def prelu(x: Tensor, weight: Tensor) -> Tensor:
    """Parametric ReLU: leaky ReLU with a learned slope ``a`` (shared or per channel).

    ``y = x if x > 0 else a x``; ``dy/dx = 1 if x > 0 else a``; ``dy/da = min(x, 0)``.
    ``weight`` has one element (shared) or one per channel (dim 1 of ``x``).
    Init: slope 0.25, He gain ``sqrt(2 / (1 + a^2))``; no weight decay on ``a``
    (He et al. 2015, "Delving Deep into Rectifiers").
    """
    return F.prelu(x, weight)


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """Exponential linear unit ``y = x if x > 0 else alpha (exp(x) - 1)``.

    ``f'(x) = 1 if x > 0 else alpha exp(x) (= y + alpha)``. Init: He (Clevert et al. 2016).
    """
    return F.elu(x, alpha)


def selu(x: Tensor) -> Tensor:
    """Scaled ELU ``y = lambda (x if x > 0 else alpha (exp(x) - 1))``.

    ``f'(x) = lambda if x > 0 else lambda alpha exp(x)``, with ``alpha = SELU_ALPHA``,
    ``lambda = SELU_SCALE``. With LeCun-normal weights ``N(0, 1/fan_in)`` and standardized
    inputs, activations converge to mean 0 / variance 1 through depth
    (Klambauer et al. 2017, "Self-Normalizing Neural Networks").
    """
    return SELU_SCALE * F.elu(x, SELU_ALPHA)


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """Gaussian error linear unit ``y = x Phi(x)`` (``Phi`` the standard normal CDF).

    ``f'(x) = Phi(x) + x phi(x)``. ``approximate="tanh"`` uses
    ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``. Init: He (Hendrycks & Gimpel 2016).
    """
    return F.gelu(x, approximate=approximate)


def silu(x: Tensor) -> Tensor:
    """Sigmoid-weighted linear unit ``y = x sigmoid(x)`` (Swish with beta = 1).

    ``f'(x) = s + x s (1 - s)`` with ``s = sigmoid(x)``. Init: He
    (Elfwing et al. 2018; Ramachandran et al. 2017).
    """
    return F.silu(x)


def swish(x: Tensor, beta: float = 1.0) -> Tensor:
    """Swish ``y = x sigmoid(beta x)``; ``f'(x) = s + beta x s (1 - s)``, ``s = sigmoid(beta x)``.

    beta = 1 is SiLU; beta -> inf tends to ReLU. Init: He (Ramachandran et al. 2017).
    """
    if beta == 1.0:
        return F.silu(x)
    return x * torch.sigmoid(beta * x)


def mish(x: Tensor) -> Tensor:
    """Mish ``y = x tanh(softplus(x))``, ``softplus(x) = log(1 + exp(x))``.

    ``f'(x) = tanh(sp) + x (1 - tanh(sp)^2) sigmoid(x)``. Init: He (Misra 2019).
    """
    return F.mish(x)


def maxout(x: Tensor, k: int, dim: int = -1) -> Tensor:
    """Max over groups of ``k`` consecutive features: ``y_j = max_{i < k} x_{j k + i}``.

    The gradient flows only to the winning piece of each group (1 there, 0 elsewhere).
    Applied after a linear layer with ``k * m`` outputs it is Maxout with ``m`` units and
    ``k`` linear pieces each (Goodfellow et al. 2013). ReLU is ``k = 2`` with the second
    piece fixed at zero. Raises ``ValueError`` when the size of ``dim`` is not divisible by k.
    """
    check_k(k)
    size = x.shape[dim]
    if size % k != 0:
        raise ValueError(
            f"maxout: feature size {size} (dim {dim}) is not divisible by k={k}; "
            f"a maxout layer needs k pieces per output unit"
        )
    dim = dim % x.ndim
    grouped = x.unflatten(dim, (size // k, k))
    # amax would split the gradient evenly between tied pieces; max() sends it to one
    # piece, which is the subgradient the Maxout paper uses and what makes k=2 with a
    # zero piece reproduce ReLU's gradient.
    return grouped.max(dim=dim + 1).values


def check_k(k: int) -> None:
    """Raise ``ValueError`` unless ``k`` (Maxout pieces per unit) is an integer >= 2."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ValueError(f"maxout: k (pieces per unit) must be an integer >= 2, got {k!r}")


def alpha_dropout_affine(p: float) -> tuple[float, float]:
    """The affine map ``(a, b)`` that restores mean 0 / variance 1 after alpha-dropout.

    With keep probability ``q = 1 - p`` and ``alpha' = -lambda alpha`` (SELU's saturation
    value): ``a = (q + alpha'^2 q (1 - q))^(-1/2)``, ``b = -a (1 - q) alpha'``
    (Klambauer et al. 2017, section "New Dropout Technique").
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"alpha_dropout: p must be in [0, 1), got {p!r}")
    q = 1.0 - p
    a = 1.0 / math.sqrt(q + ALPHA_DROPOUT_SATURATION**2 * q * (1.0 - q))
    b = -a * (1.0 - q) * ALPHA_DROPOUT_SATURATION
    return a, b


def alpha_dropout(
    x: Tensor,
    p: float = 0.5,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Alpha-dropout for SELU networks (Klambauer et al. 2017).

    Each element is kept with probability ``q = 1 - p``; a dropped element is set to SELU's
    saturation value ``alpha'`` (not 0, which is not a "silent" value for SELU), then
    ``y = a x' + b`` with ``(a, b) = alpha_dropout_affine(p)``. For inputs with mean 0 and
    variance 1 the output keeps mean 0 and variance 1, so self-normalisation survives.
    Identity when not training or ``p == 0``.
    """
    a, b = alpha_dropout_affine(p)
    if not training or p == 0.0:
        return x
    keep = torch.empty_like(x).bernoulli_(1.0 - p, generator=generator)
    # a (x m + alpha' (1 - m)) + b  ==  (x - alpha') (a m) + (a alpha' + b): the mask is
    # touched once and no (1 - m) tensor is built.
    return (x - ALPHA_DROPOUT_SATURATION) * (keep * a) + (a * ALPHA_DROPOUT_SATURATION + b)
