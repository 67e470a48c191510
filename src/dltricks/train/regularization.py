"""L1 and L2 penalties added to the loss (coupled regularisation).

Notation: ``w`` ranges over the penalised parameters, ``lambda`` is the coefficient.

* L2: ``R(w) = (lambda / 2) * sum w^2``, gradient ``lambda * w``. With SGD at learning rate
  ``eta`` the step is ``w <- (1 - eta * lambda) w - eta * dL/dw`` ("weight decay" in the
  lecture); identical to ``torch.optim.SGD(weight_decay=lambda)``.
* L1: ``R(w) = lambda * sum |w|``, gradient ``lambda * sign(w)`` (0 at exactly 0, torch's
  subgradient), i.e. ``w <- w - eta * lambda * sign(w) - eta * dL/dw``: a constant pull toward
  zero that drives small weights to zero, where L2's pull shrinks in proportion to ``w``.

Under adaptive optimizers (Adam, RMSProp) the penalty's gradient is divided by the same running
RMS as the data gradient, so it is *not* weight decay; decoupled weight decay lives in the
optimizer (``torch.optim.AdamW``).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["l1_penalty", "l2_penalty", "penalized_parameters", "regularization_penalty"]


def penalized_parameters(model: nn.Module, *, include_biases: bool = False) -> list[nn.Parameter]:
    """Trainable parameters a penalty applies to: tensors with ``ndim >= 2`` unless
    ``include_biases`` (then all of them). In the order of ``model.parameters()``."""
    return [p for p in model.parameters() if p.requires_grad and (include_biases or p.dim() >= 2)]


def l1_penalty(params: list[nn.Parameter], coefficient: float) -> torch.Tensor:
    """``coefficient * sum_i |w_i|`` over all ``params`` (a 0-d tensor with grad)."""
    if not params:
        return torch.zeros(())
    return coefficient * torch.stack([p.abs().sum() for p in params]).sum()


def l2_penalty(params: list[nn.Parameter], coefficient: float) -> torch.Tensor:
    """``(coefficient / 2) * sum_i w_i^2`` over all ``params`` (a 0-d tensor with grad)."""
    if not params:
        return torch.zeros(())
    return 0.5 * coefficient * torch.stack([p.pow(2).sum() for p in params]).sum()


def regularization_penalty(
    params: list[nn.Parameter], *, l1: float = 0.0, l2: float = 0.0
) -> torch.Tensor | None:
    """The sum of the active penalties, or ``None`` when both coefficients are 0.

    Returning ``None`` (rather than a zero tensor) keeps an unregularised run's arithmetic
    exactly that of the plain loss.
    """
    terms = []
    if l1 > 0:
        terms.append(l1_penalty(params, l1))
    if l2 > 0:
        terms.append(l2_penalty(params, l2))
    if not terms:
        return None
    return terms[0] if len(terms) == 1 else terms[0] + terms[1]
