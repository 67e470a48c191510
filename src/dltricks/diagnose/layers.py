"""Which modules of a model the diagnostics watch, and how to read their outputs."""

from __future__ import annotations

from typing import Literal

from torch import nn

from dltricks.nn.activations import Swish
from dltricks.nn.maxout import GroupMax, Maxout

__all__ = [
    "ACTIVATION_TYPES",
    "WEIGHT_LAYER_TYPES",
    "ActivationKind",
    "activation_kind",
    "find_layers",
]

# Layers whose parameters get gradient norms and update ratios by default.
WEIGHT_LAYER_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Bilinear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)

ActivationKind = Literal["sigmoid", "tanh", "rectifier", "maxout", "other"]

_SIGMOID: tuple[type[nn.Module], ...] = (nn.Sigmoid,)
_TANH: tuple[type[nn.Module], ...] = (nn.Tanh,)
# Units whose output is > 0 exactly when their input is > 0: "active" means output > 0,
# and a unit that is never active on a batch passes (almost) no gradient: it is dead.
_RECTIFIER: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    Swish,
)
_MAXOUT: tuple[type[nn.Module], ...] = (GroupMax, Maxout)
ACTIVATION_TYPES: tuple[type[nn.Module], ...] = _SIGMOID + _TANH + _RECTIFIER + _MAXOUT


def activation_kind(module: nn.Module) -> ActivationKind:
    """``"sigmoid"``/``"tanh"`` (saturation is measured), ``"rectifier"`` (dead units are
    measured), ``"maxout"`` or ``"other"`` (mean and std only)."""
    if isinstance(module, _SIGMOID):
        return "sigmoid"
    if isinstance(module, _TANH):
        return "tanh"
    if isinstance(module, _RECTIFIER):
        return "rectifier"
    if isinstance(module, _MAXOUT):
        return "maxout"
    return "other"


def find_layers(
    model: nn.Module,
    types: tuple[type[nn.Module], ...] | None,
    *,
    what: str,
) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` for each module of ``model`` of one of ``types``, in registration
    order (the forward order for sequential models). ``types=None`` selects every module
    that owns parameters directly. Raises ``ValueError`` naming the model and the types when
    nothing matches, since a monitor with nothing to watch is always a mistake."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"{what}: expected an nn.Module, got {type(model).__name__}")
    found: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if types is None:
            if any(True for _ in module.parameters(recurse=False)):
                found.append((name or type(module).__name__, module))
        elif isinstance(module, types):
            found.append((name or type(module).__name__, module))
    if not found:
        wanted = (
            "modules with parameters"
            if types is None
            else ", ".join(sorted({t.__name__ for t in types}))
        )
        raise ValueError(
            f"{what}: {type(model).__name__} has no matching layers (looked for {wanted}); "
            f"pass layer_types=... to choose which modules to watch"
        )
    return found


def trainable_params(
    model: nn.Module, layers: list[tuple[str, nn.Module]], *, what: str
) -> list[tuple[str, str, nn.Parameter]]:
    """``(layer name, parameter name, parameter)`` for each parameter of ``layers`` that
    requires grad, in layer order. Raises ``ValueError`` when there is none: a monitor of
    gradients or updates would have nothing to watch."""
    params = [
        (layer_name, param_name, param)
        for layer_name, layer in layers
        for param_name, param in layer.named_parameters(recurse=False)
        if param.requires_grad
    ]
    if not params:
        raise ValueError(
            f"{what}: the matching layers of {type(model).__name__} have no trainable "
            f"parameters (none requires grad)"
        )
    return params
