"""Initialisation matched to the activation.

All schemes draw weights with zero mean and set biases to 0:

- ``"he"``: ``N(0, gain^2 / fan_in)``, ``gain = sqrt(2)`` for ReLU, ``sqrt(2 / (1 + a^2))``
  for leaky/parametric ReLU with slope ``a``, :func:`maxout_gain` for Maxout
  (He et al. 2015). It keeps ``E[z^2]`` of the pre-activations constant through depth.
- ``"lecun"``: ``N(0, 1 / fan_in)`` (LeCun et al. 1998); SELU's required init
  (Klambauer et al. 2017).
- ``"xavier"``: ``U(-b, b)``, ``b = sqrt(6 / (fan_in + fan_out))``, Glorot & Bengio's
  normalized init for sigmoid/tanh (gain 1, as in the paper).
- ``"torch"``: torch's default for the layer type (``U(+-1/sqrt(fan_in))`` for weights and
  biases of ``nn.Linear``), redrawn from ``generator`` when one is given, else left as is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, cast, get_args

import torch
from torch import nn

from dltricks.nn.maxout import GroupMax, Maxout, maxout_gain
from dltricks.nn.registry import get_activation

__all__ = [
    "INIT_SCHEMES",
    "ActivationLike",
    "InitScheme",
    "InitSpec",
    "init_for_activation",
    "init_layer_",
    "recommended_init",
    "weight_layers",
]

InitScheme = Literal["he", "lecun", "xavier", "torch"]
INIT_SCHEMES: tuple[str, ...] = get_args(InitScheme)
ActivationLike = str | nn.Module | type[nn.Module]

# Layers whose weights the init helpers set: dense and convolutional.
_WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_RELU_LIKE = (nn.ReLU, nn.ReLU6, nn.ELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Softplus)
_XAVIER_LIKE = (nn.Sigmoid, nn.Tanh, nn.Softsign, nn.Hardtanh)


@dataclass(frozen=True)
class InitSpec:
    """An initialisation: ``scheme`` and the ``gain`` that scales its standard deviation."""

    scheme: InitScheme
    gain: float


def _as_module(activation: ActivationLike) -> nn.Module:
    if isinstance(activation, str):
        return get_activation(activation)
    if isinstance(activation, nn.Module):
        return activation
    if isinstance(activation, type) and issubclass(activation, nn.Module):
        if issubclass(activation, Maxout):
            return GroupMax(2)
        try:
            return activation()
        except TypeError as err:
            raise ValueError(
                f"cannot build {activation.__name__}() without arguments; pass an instance"
            ) from err
    raise ValueError(
        f"activation must be a name, an nn.Module instance or class, got {activation!r}"
    )


def _rectifier_gain(slope: float) -> float:
    return math.sqrt(2.0 / (1.0 + slope * slope))


def _he_gain(module: nn.Module) -> float:
    if isinstance(module, nn.LeakyReLU):
        return _rectifier_gain(module.negative_slope)
    if isinstance(module, nn.PReLU):
        # The slope as it is now (0.25 at construction): He et al. derive the gain from
        # the initial slope.
        return _rectifier_gain(float(module.weight.detach().mean()))
    if isinstance(module, (GroupMax, Maxout)):
        return maxout_gain(module.k)
    return math.sqrt(2.0)


def recommended_init(activation: ActivationLike) -> InitSpec:
    """The initialisation that suits ``activation`` (a name, module instance or class).

    He for the ReLU family (with the slope-aware gain for leaky/parametric ReLU), He with
    :func:`maxout_gain` for Maxout, LeCun normal for SELU and linear, Xavier for
    sigmoid/tanh. Raises ``ValueError`` for activations it does not know.
    """
    module = _as_module(activation)
    if isinstance(module, (nn.SELU, nn.Identity)):
        return InitSpec("lecun", 1.0)
    if isinstance(module, (nn.LeakyReLU, nn.PReLU, GroupMax, Maxout, *_RELU_LIKE)):
        return InitSpec("he", _he_gain(module))
    if getattr(module, "recommended_init", None) == "he":
        return InitSpec("he", _he_gain(module))
    if isinstance(module, _XAVIER_LIKE):
        return InitSpec("xavier", 1.0)
    raise ValueError(
        f"no recommended init for {type(module).__name__}; pass an explicit scheme, "
        f"one of {', '.join(INIT_SCHEMES)}"
    )


def _spec_for(scheme: str, activation: ActivationLike) -> InitSpec:
    if scheme == "auto":
        return recommended_init(activation)
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init {scheme!r}; valid: auto, {', '.join(INIT_SCHEMES)}")
    if scheme == "he":
        return InitSpec("he", _he_gain(_as_module(activation)))
    return InitSpec(cast(InitScheme, scheme), 1.0)


def _fans(weight: torch.Tensor) -> tuple[int, int]:
    receptive = math.prod(weight.shape[2:])
    return weight.shape[1] * receptive, weight.shape[0] * receptive


def init_layer_(
    layer: nn.Module,
    scheme: InitScheme,
    gain: float = 1.0,
    *,
    generator: torch.Generator | None = None,
) -> None:
    """Initialise one Linear/Conv layer in place with ``scheme`` and ``gain`` (see module doc)."""
    if not isinstance(layer, _WEIGHT_LAYERS):
        raise ValueError(f"init_layer_ expects a Linear or Conv layer, got {type(layer).__name__}")
    weight = layer.weight
    bias = layer.bias
    fan_in, fan_out = _fans(weight)
    with torch.no_grad():
        if scheme in ("he", "lecun"):
            weight.normal_(0.0, gain / math.sqrt(fan_in), generator=generator)
        elif scheme == "xavier":
            bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
            weight.uniform_(-bound, bound, generator=generator)
        elif scheme == "torch":
            if generator is None:
                return
            # torch's default: kaiming_uniform(a=sqrt(5)) == U(+-1/sqrt(fan_in)).
            bound = 1.0 / math.sqrt(fan_in)
            weight.uniform_(-bound, bound, generator=generator)
            if bias is not None:
                bias.uniform_(-bound, bound, generator=generator)
            return
        else:
            raise ValueError(f"unknown init {scheme!r}; valid: {', '.join(INIT_SCHEMES)}")
        if bias is not None:
            bias.zero_()


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """The Linear and Conv layers of ``model`` in registration order."""
    return [m for m in model.modules() if isinstance(m, _WEIGHT_LAYERS)]


def init_for_activation(
    model: nn.Module,
    activation: ActivationLike,
    scheme: str = "auto",
    *,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """Initialise every Linear/Conv layer of ``model`` for ``activation``; returns ``model``.

    ``scheme="auto"`` uses :func:`recommended_init`; ``"he"``, ``"lecun"``, ``"xavier"``,
    ``"torch"`` force a scheme (``"he"`` still uses the activation's slope-aware gain), e.g.
    ReLU with Xavier for the lecture's comparison. Raises ``ValueError`` when the model has
    no Linear/Conv layer.
    """
    layers = weight_layers(model)
    if not layers:
        raise ValueError(
            f"init_for_activation: {type(model).__name__} has no nn.Linear or nn.ConvNd layer"
        )
    spec = _spec_for(scheme, activation)
    for layer in layers:
        init_layer_(layer, spec.scheme, spec.gain, generator=generator)
    return model
