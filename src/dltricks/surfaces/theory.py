"""Theory check: optimal gradient descent and heavy ball on a quadratic (Goh 2017).

On f(w) = (x^2 + kappa y^2) / 2 the Hessian has eigenvalues l1 = 1 and ln = kappa. Goh's
"Why Momentum Really Works" (Distill, 2017) gives, with the update z <- beta z + grad f(w),
w <- w - alpha z:

- gradient descent (beta = 0) at alpha = 2 / (l1 + ln) contracts every eigen-component by
  |1 - alpha l_i| <= (kappa - 1) / (kappa + 1) per step;
- heavy ball at alpha = (2 / (sqrt l1 + sqrt ln))^2, beta = ((sqrt ln - sqrt l1) /
  (sqrt ln + sqrt l1))^2 has a double root of the characteristic polynomial in every
  eigen-direction, so the error behaves like (a + b t) rho^t with
  rho = sqrt(beta) = (sqrt kappa - 1) / (sqrt kappa + 1).

``torch.optim.SGD(momentum=beta, lr=alpha)`` computes v <- beta v + g, p <- p - lr v (no
dampening, v_1 = g_1), which is Goh's recursion with z = v, so it runs the heavy ball.

Measured rate: the geometric mean of the per-step contraction of the distance to the optimum
over the second half of the run, rho_hat = (d_T / d_{T/2})^(2/T). For gradient descent this is
exact (both components contract by exactly rho). For the heavy ball the polynomial factor
biases it upward by at most (a + b T) / (a + b T/2) ^ (2/T) <= 2^(2/T); T is chosen per run so
that rho^T ~ 1e-200 (kept inside float64's normal range) but at most ``max_steps``, which keeps
the bias below 0.4% for kappa >= 4.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch

from dltricks.surfaces.functions import quadratic
from dltricks.surfaces.runner import run_trajectory

__all__ = [
    "RateCheck",
    "check_rates",
    "gradient_descent_optimal",
    "heavy_ball_optimal",
    "measured_rate",
    "theoretical_rate",
]

Method = Literal["gradient descent", "heavy ball"]


def gradient_descent_optimal(l1: float, ln: float) -> float:
    """alpha* = 2 / (l1 + ln): the step that minimises max_i |1 - alpha l_i|."""
    return 2.0 / (l1 + ln)


def heavy_ball_optimal(l1: float, ln: float) -> tuple[float, float]:
    """Goh's optimal heavy ball: (alpha*, beta*).

    alpha* = (2 / (sqrt l1 + sqrt ln))^2, beta* = ((sqrt ln - sqrt l1) / (sqrt ln + sqrt l1))^2.
    """
    s1, sn = math.sqrt(l1), math.sqrt(ln)
    return (2.0 / (s1 + sn)) ** 2, ((sn - s1) / (sn + s1)) ** 2


def theoretical_rate(method: Method, kappa: float) -> float:
    """(kappa - 1)/(kappa + 1) for gradient descent, (sqrt k - 1)/(sqrt k + 1) for heavy ball."""
    if method == "gradient descent":
        return (kappa - 1.0) / (kappa + 1.0)
    root = math.sqrt(kappa)
    return (root - 1.0) / (root + 1.0)


def measured_rate(distances: np.ndarray, start: int, stop: int) -> float:
    """Geometric-mean contraction (d_stop / d_start)^(1 / (stop - start))."""
    if not 0 <= start < stop < len(distances):
        raise ValueError(f"need 0 <= start < stop < {len(distances)}, got {start}, {stop}")
    return float((distances[stop] / distances[start]) ** (1.0 / (stop - start)))


@dataclass(frozen=True)
class RateCheck:
    """One measured-against-theory comparison."""

    kappa: float
    method: Method
    lr: float
    momentum: float
    theoretical_rate: float
    measured_rate: float
    relative_error: float
    steps: int
    window: tuple[int, int]

    def record(self) -> dict[str, object]:
        """JSON-serialisable form."""
        out = asdict(self)
        out["window"] = list(self.window)
        return out


def check_rates(
    kappas: Sequence[float] = (4.0, 10.0, 100.0, 1000.0),
    *,
    start: tuple[float, float] = (1.0, 1.0),
    max_steps: int = 3000,
    min_steps: int = 200,
) -> list[RateCheck]:
    """Run optimal gradient descent and heavy ball on each quadratic and measure their rates."""
    checks: list[RateCheck] = []
    for kappa in kappas:
        surface = quadratic(kappa)
        alpha_gd = gradient_descent_optimal(1.0, kappa)
        alpha_hb, beta_hb = heavy_ball_optimal(1.0, kappa)
        settings: list[tuple[Method, float, float]] = [
            ("gradient descent", alpha_gd, 0.0),
            ("heavy ball", alpha_hb, beta_hb),
        ]
        for method, lr, beta in settings:
            rho = theoretical_rate(method, kappa)
            # Enough steps to wash out the transient, few enough to stay clear of underflow.
            horizon = math.log(1e-200) / math.log(rho) if 0.0 < rho < 1.0 else max_steps
            steps = int(min(max_steps, max(min_steps, horizon)))
            steps -= steps % 2

            def make(
                params: list[torch.nn.Parameter], lr: float = lr, beta: float = beta
            ) -> torch.optim.Optimizer:
                return torch.optim.SGD(params, lr=lr, momentum=beta)

            trajectory = run_trajectory(surface, make, start, steps)
            # hypot, not sqrt(x^2 + y^2): the squares would underflow near 1e-200.
            distances = np.hypot(trajectory.points[:, 0], trajectory.points[:, 1])
            window = (steps // 2, steps)
            rate = measured_rate(distances, *window)
            checks.append(
                RateCheck(
                    kappa=float(kappa),
                    method=method,
                    lr=lr,
                    momentum=beta,
                    theoretical_rate=rho,
                    measured_rate=rate,
                    relative_error=abs(rate - rho) / rho,
                    steps=steps,
                    window=window,
                )
            )
    return checks
