"""Optimizer parameter groups that keep weight decay off the parameters it harms."""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["param_groups_no_decay"]

_NORM_LAYERS = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
)


def param_groups_no_decay(
    model: nn.Module,
    weight_decay: float,
    exclude_bias: bool = True,
    exclude_norm: bool = True,
) -> list[dict[str, Any]]:
    """Two ``torch.optim`` param groups: decayed weights and parameters with no decay.

    PReLU slopes are always excluded: He et al. 2015 train them without decay, since decay
    pulls every slope to 0, i.e. back to ReLU. Biases (``exclude_bias``) and normalization
    scales/shifts (``exclude_norm``) are excluded by default because shrinking them does not
    limit the function's capacity. Shared parameters are listed once; parameters with
    ``requires_grad=False`` are skipped. Empty groups are omitted.

    Use: ``torch.optim.AdamW(param_groups_no_decay(model, 0.01), lr=1e-3)``.
    """
    if not weight_decay >= 0.0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if id(param) in seen or not param.requires_grad:
                continue
            seen.add(id(param))
            skip = (
                isinstance(module, nn.PReLU)
                or (exclude_norm and isinstance(module, _NORM_LAYERS))
                or (exclude_bias and name == "bias")
            )
            (no_decay if skip else decay).append(param)
    groups: list[dict[str, Any]] = []
    if decay:
        groups.append({"params": decay, "weight_decay": float(weight_decay)})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    if not groups:
        raise ValueError(f"{type(model).__name__} has no trainable parameters")
    return groups
