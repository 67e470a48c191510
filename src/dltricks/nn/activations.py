"""Activation modules.

Each class subclasses the matching ``torch.nn`` module, so code that recognises torch's
activations (including :mod:`dltricks.diagnose`) recognises these, and adds argument
validation, the formula in its docstring, and ``recommended_init``: the initialisation
scheme that keeps the forward signal's scale through depth for this nonlinearity
(``"he"``, ``"lecun"`` or ``"xavier"``; see :func:`dltricks.nn.recommended_init` for the gain).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from dltricks.nn.functional import selu, swish

__all__ = [
    "ELU",
    "GELU",
    "SELU",
    "LeakyReLU",
    "Mish",
    "PReLU",
    "ReLU",
    "SiLU",
    "Sigmoid",
    "Swish",
    "Tanh",
]


def _check_slope(name: str, what: str, value: float) -> float:
    # Slopes outside [0, 1) are not rectifiers any more (>= 1 inverts which side is
    # "active", < 0 makes the function non-monotonic) and break He's gain formula.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}: {what} must be a float in [0, 1), got {value!r}")
    value = float(value)
    if not math.isfinite(value) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name}: {what} must be a finite float in [0, 1), got {value!r}")
    return value


class Sigmoid(nn.Sigmoid):
    """``y = 1 / (1 + exp(-x))``; ``f'(x) = y (1 - y) <= 1/4``. Init: Xavier.

    Glorot & Bengio 2010 show deep sigmoid nets saturating their top hidden layer at 0 and
    gradients shrinking toward the input.
    """

    recommended_init: ClassVar[str] = "xavier"


class Tanh(nn.Tanh):
    """``y = tanh(x)``; ``f'(x) = 1 - y^2``. Init: Xavier (Glorot & Bengio 2010)."""

    recommended_init: ClassVar[str] = "xavier"


class ReLU(nn.ReLU):
    """``y = max(0, x)``; ``f'(x) = 1[x > 0]``. Init: He ``N(0, 2/fan_in)``.

    Nair & Hinton 2010; Glorot, Bordes & Bengio 2011; He et al. 2015.
    """

    recommended_init: ClassVar[str] = "he"


class LeakyReLU(nn.LeakyReLU):
    """``y = x if x > 0 else a x``; ``f'(x) = 1 if x > 0 else a``, ``0 <= a < 1``.

    Init: He with gain ``sqrt(2 / (1 + a^2))`` (Maas et al. 2013; He et al. 2015).
    """

    recommended_init: ClassVar[str] = "he"

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        super().__init__(_check_slope("LeakyReLU", "negative_slope", negative_slope), inplace)


class PReLU(nn.PReLU):
    """Parametric ReLU: ``y = x if x > 0 else a x`` with a learned slope ``a``.

    ``dy/dx = 1 if x > 0 else a``; ``dy/da = min(x, 0)``. ``num_parameters=1`` shares one
    slope across the layer; ``num_parameters=C`` learns one per channel (dim 1 of the input).
    Slopes start at ``init = 0.25`` and should get no weight decay (decay would pull them to
    0, i.e. to plain ReLU): build optimizer groups with
    :func:`dltricks.nn.param_groups_no_decay`. Init: He with gain ``sqrt(2 / (1 + a^2))``
    (He et al. 2015, "Delving Deep into Rectifiers").
    """

    recommended_init: ClassVar[str] = "he"

    def __init__(
        self,
        num_parameters: int = 1,
        init: float = 0.25,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if (
            isinstance(num_parameters, bool)
            or not isinstance(num_parameters, int)
            or num_parameters < 1
        ):
            raise ValueError(
                f"PReLU: num_parameters must be a positive integer (1 = shared slope, "
                f"C = per channel), got {num_parameters!r}"
            )
        super().__init__(num_parameters, _check_slope("PReLU", "init", init), device, dtype)


class ELU(nn.ELU):
    """``y = x if x > 0 else alpha (exp(x) - 1)``; ``f'(x) = 1 if x > 0 else y + alpha``.

    Init: He (Clevert, Unterthiner & Hochreiter 2016).
    """

    recommended_init: ClassVar[str] = "he"

    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha > 0):
            raise ValueError(f"ELU: alpha must be a finite float > 0, got {alpha!r}")
        super().__init__(float(alpha), inplace)


class SELU(nn.SELU):
    """``y = lambda (x if x > 0 else alpha (exp(x) - 1))`` with the paper's exact constants.

    ``alpha = 1.6732632423543772848170429916717``,
    ``lambda = 1.0507009873554804934193349852946``;
    ``f'(x) = lambda if x > 0 else lambda alpha exp(x)``.
    Init: LeCun normal ``N(0, 1/fan_in)``; standardized inputs; use
    :class:`dltricks.nn.AlphaDropout`, not plain dropout (Klambauer et al. 2017).
    """

    recommended_init: ClassVar[str] = "lecun"

    def __init__(self) -> None:
        super().__init__(inplace=False)

    def forward(self, input: Tensor) -> Tensor:
        return selu(input)


class GELU(nn.GELU):
    """``y = x Phi(x)``; ``f'(x) = Phi(x) + x phi(x)``. Init: He (Hendrycks & Gimpel 2016).

    ``approximate="tanh"`` uses the tanh approximation.
    """

    recommended_init: ClassVar[str] = "he"

    def __init__(self, approximate: str = "none") -> None:
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        super().__init__(approximate)


class SiLU(nn.SiLU):
    """``y = x sigmoid(x)``; ``f'(x) = s + x s (1 - s)``, ``s = sigmoid(x)``. Init: He.

    Also known as Swish-1 (Elfwing et al. 2018; Ramachandran et al. 2017).
    """

    recommended_init: ClassVar[str] = "he"


class Swish(nn.Module):
    """``y = x sigmoid(beta x)``; ``f'(x) = s + beta x s (1 - s)``, ``s = sigmoid(beta x)``.

    ``beta = 1`` is SiLU; large ``beta`` approaches ReLU. Init: He
    (Ramachandran, Zoph & Le 2017, "Searching for Activation Functions").
    """

    recommended_init: ClassVar[str] = "he"

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta > 0):
            raise ValueError(f"Swish: beta must be a finite float > 0, got {beta!r}")
        self.beta = float(beta)

    def forward(self, input: Tensor) -> Tensor:
        return swish(input, self.beta)

    def extra_repr(self) -> str:
        return f"beta={self.beta}"


class Mish(nn.Mish):
    """``y = x tanh(softplus(x))``; ``f'(x) = t + x (1 - t^2) sigmoid(x)``.

    ``t = tanh(softplus(x))``. Init: He (Misra 2019).
    """

    recommended_init: ClassVar[str] = "he"
