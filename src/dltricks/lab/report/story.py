"""The lecture's story: the order of sections and experiments, and what each section says first.

Hung-yi Lee's "Tips for Training Deep Neural Networks" first asks whether a network does well
on its training data (new activation functions against the vanishing gradient; adaptive
learning rates: AdaGrad, RMSProp, Momentum rolling over the error surface, Adam = RMSProp +
Momentum), then whether it does well on unseen data (early stopping, regularization,
dropout). The report follows that order (:data:`dltricks.lab.registry.TRICKS` for sections,
:data:`LECTURE_ORDER` for experiments).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["LECTURE_ORDER", "TRICK_INTROS", "lecture_order"]

#: Experiments in the order the lecture tells their story; others follow, by name.
LECTURE_ORDER: tuple[str, ...] = (
    # New activation functions: deeper is not better, because the gradient vanishes
    # (sigmoid saturates); ReLU and its relatives train, given the right initialisation.
    "depth",
    "vanishing",
    "saturation",
    "activations",
    "init",
    # Adaptive learning rate: AdaGrad, RMSProp, Momentum and Adam compared, then Adam's
    # relatives and details (AMSGrad, bias correction, the precision of its state).
    "optimizers",
    "amsgrad",
    "bias-correction",
    "state-precision",
    # The error surface that momentum rolls over.
    "surfaces",
    # Good results on training data, bad on test data: early stopping, regularization, dropout.
    "generalization",
)

TRICK_INTROS: dict[str, str] = {
    "new activation functions": (
        "Deeper is not always better: sigmoid's derivative is at most 1/4, so gradients shrink "
        "layer by layer and deep sigmoid networks stop learning. ReLU and its relatives (Leaky "
        "ReLU, PReLU, SELU, Maxout) keep gradients alive, given the right initialisation."
    ),
    "adaptive learning rate": (
        "One learning rate for every parameter and every step is rarely right. AdaGrad divides "
        "each parameter's step by the root of its summed squared gradients; RMSProp uses a "
        "moving average instead; Momentum adds inertia; Adam = RMSProp + Momentum."
    ),
    "error surfaces": (
        "Training is a ball rolling on an error surface with plateaus, local minima and saddle "
        "points; momentum is the ball's inertia that may carry it through."
    ),
    "early stopping": (
        "Training loss keeps falling while validation loss turns up: stop at the validation "
        "minimum and keep those weights."
    ),
    "regularization": (
        "Penalise large weights (L2: w <- (1 - eta lambda) w - eta dL/dw; L1), or decay them "
        "directly (decoupled weight decay), so the network generalises."
    ),
    "dropout": (
        "Drop units at random while training: training accuracy falls, test accuracy should rise."
    ),
}


def lecture_order(names: Iterable[str]) -> list[str]:
    """``names`` in the lecture's order; names it does not list come last, by name."""
    names = list(dict.fromkeys(names))
    known = [n for n in LECTURE_ORDER if n in names]
    return known + sorted(n for n in names if n not in LECTURE_ORDER)
