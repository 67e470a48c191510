"""Per-tensor blocks of Muon: Newton-Schulz orthogonalisation and the shape-dependent scale."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dltricks.optim.base import Hyper, Hyperparameter, Transform, resolve, stateless

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
"""Keller Jordan's quintic coefficients ``(a, b, c)``, as ``torch.optim.Muon``'s defaults."""

ADJUST_LR_FNS = (None, "original", "match_rms_adamw")
"""torch.optim.Muon's ``adjust_lr_fn`` values (None is "original")."""


def newton_schulz(
    grad: Tensor, coefficients: tuple[float, float, float], steps: int, eps: float
) -> Tensor:
    """The approximate orthogonal factor ``U V^T`` of ``grad = U S V^T``, in bfloat16.

    Math (``X_0 = G / max(||G||_F, eps)``, transposed so that it is wide)::

        A_k     = X_k X_k^T
        X_{k+1} = a X_k + (b A_k + c A_k^2) X_k

    ``steps`` times. The quintic's coefficients push every singular value into about
    [0.7, 1.2] in five steps (Jordan et al. 2024); the iteration runs in bfloat16 as in
    torch.optim.Muon (same operations, so the same bits), and the result is returned in
    bfloat16 for the caller to cast.
    """
    if steps >= 100:
        raise ValueError("Number of steps must be less than 100 for computational efficiency")
    if grad.dim() != 2:
        raise ValueError("Input tensor gradient must be a 2D matrix")
    if len(coefficients) != 3:
        raise ValueError("Coefficients must be a tuple of exactly 3 values")
    a, b, c = coefficients
    x = grad.bfloat16()
    tall = grad.size(0) > grad.size(1)
    if tall:
        x = x.T
    x.div_(x.norm().clamp(min=eps))
    for _ in range(steps):
        gram = x @ x.T
        polynomial = torch.addmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.addmm(x, polynomial, x, beta=a)
    return x.T if tall else x


def orthogonalize(
    ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
    ns_steps: int = 5,
    eps: Hyperparameter = "eps",
) -> Transform:
    """Muon's orthogonalisation of a matrix update (per tensor).

    Math::

        u' = NS_k^{(a,b,c)}(u; eps)        (see :func:`newton_schulz`)

    Every direction of the update gets about the same size: a 2-D update's rare directions are
    amplified, its dominant ones damped. Only for 2-D tensors (ValueError otherwise, torch's
    message). Jordan et al. 2024, "Muon: An optimizer for hidden layers in neural networks".
    """
    coefficients = tuple(ns_coefficients)
    if len(coefficients) != 3:
        raise ValueError("Coefficients must be a tuple of exactly 3 values")
    if ns_steps >= 100:
        raise ValueError("Number of steps must be less than 100 for computational efficiency")

    def factor(u: Tensor, hyper: Hyper) -> Tensor:
        stabiliser = float(resolve(eps, hyper))
        return newton_schulz(u, coefficients, ns_steps, stabiliser)  # type: ignore[arg-type]

    def update(u: Tensor, param: Tensor, hyper: Hyper) -> Tensor:
        return factor(u, hyper).to(u.dtype)

    def into(u: Tensor, param: Tensor, hyper: Hyper, out: Tensor) -> None:
        out.copy_(factor(u, hyper))  # bfloat16 widened in the copy (exact)

    return stateless(f"orthogonalize({ns_steps} steps)", update, per_tensor=True, into=into)


def shape_scale(shape: torch.Size | tuple[int, ...], adjust_lr_fn: str | None) -> float:
    """torch.optim.Muon's learning-rate factor for a matrix of shape ``(A, B)``.

    ``"original"`` (or None, Jordan): ``sqrt(max(1, A / B))``; ``"match_rms_adamw"`` (Liu et
    al. 2025, Moonlight): ``0.2 sqrt(max(A, B))``, which gives the update AdamW's RMS.
    """
    rows, cols = shape[:2]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return math.sqrt(max(1, rows / cols))
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    return 1.0


def scale_by_shape(adjust_lr_fn: str | None = None) -> Transform:
    """Scale a matrix update by its shape (per tensor): ``u' = s(A, B) u``.

    ``s`` is :func:`shape_scale`: an orthogonalised update has RMS ``1 / sqrt(max(A, B))``
    whatever its size; this factor makes the step size mean the same for every matrix.
    """
    if adjust_lr_fn not in ADJUST_LR_FNS:
        raise ValueError(f"Adjust learning rate function {adjust_lr_fn} is not supported")

    def update(u: Tensor, param: Tensor, hyper: Hyper) -> Tensor:
        return u * shape_scale(param.shape, adjust_lr_fn)

    return stateless(f"scale_by_shape({adjust_lr_fn})", update, per_tensor=True)


def shape_scaled_orthogonalize(
    ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
    ns_steps: int = 5,
    eps: Hyperparameter = "eps",
    adjust_lr_fn: str | None = None,
) -> Transform:
    """:func:`orthogonalize` then :func:`scale_by_shape` in one per-tensor block.

    Math::

        u' = s(A, B) NS_k^{(a,b,c)}(u; eps)

    Muon's per-matrix work, and nothing else: what follows it (weight decay, the learning
    rate) is elementwise, so the fast path fuses it into one kernel with the step.
    """
    orthogonal = orthogonalize(ns_coefficients, ns_steps, eps)
    if adjust_lr_fn not in ADJUST_LR_FNS:
        raise ValueError(f"Adjust learning rate function {adjust_lr_fn} is not supported")

    into_factor = orthogonal.update_into
    assert into_factor is not None

    def update(u: Tensor, param: Tensor, hyper: Hyper) -> Tensor:
        ortho, _ = orthogonal.update(u, {}, param, hyper)
        scale = shape_scale(param.shape, adjust_lr_fn)
        return ortho if scale == 1.0 else ortho.mul_(scale)  # its own tensor

    def into(u: Tensor, param: Tensor, hyper: Hyper, out: Tensor) -> None:
        into_factor(u, {}, param, hyper, out)
        scale = shape_scale(param.shape, adjust_lr_fn)
        if scale != 1.0:  # a wide matrix's factor under "original" is 1: no pass
            out.mul_(scale)

    return stateless(
        f"shape_scaled_orthogonalize({ns_steps} steps, {adjust_lr_fn})",
        update,
        per_tensor=True,
        into=into,
    )


def shape_scaled_descent(
    adjust_lr_fn: str | None = None,
    lr: Hyperparameter = "lr",
    weight_decay: Hyperparameter = "weight_decay",
) -> Transform:
    """Muon's last step (per tensor): ``u' = -eta (s(A, B) u + lambda theta)``.

    :func:`scale_by_shape`, :func:`~dltricks.optim.blocks.decay.add_decayed_weights` and
    :func:`~dltricks.optim.blocks.scale.scale_by_learning_rate` in one block: two passes over
    the tensor instead of five, which is what lets Muon's step keep up with torch's in-place
    one at 20M parameters (the chain runs eagerly, tensor by tensor).
    """
    if adjust_lr_fn not in ADJUST_LR_FNS:
        raise ValueError(f"Adjust learning rate function {adjust_lr_fn} is not supported")

    def update(u: Tensor, param: Tensor, hyper: Hyper) -> Tensor:
        eta = resolve(lr, hyper)
        decay = resolve(weight_decay, hyper)
        out = u * (-eta * shape_scale(param.shape, adjust_lr_fn))
        if isinstance(eta, Tensor) or isinstance(decay, Tensor):
            return out - (eta * decay) * param
        return out.add_(param, alpha=-eta * decay)  # in place on this block's own tensor

    return stateless(
        f"shape_scaled_descent({adjust_lr_fn}, {lr}, {weight_decay})", update, per_tensor=True
    )
