"""Two-dimensional test functions ("error surfaces") with known minima.

Every surface is a torch function ``f(xy)`` of a tensor whose last dimension holds the two
coordinates ``(x, y)``: a single point of shape ``(2,)`` gives a scalar, a contour grid of shape
``(..., 2)`` gives ``(...)``. Each surface also carries its gradient written out by hand (the
tests compare it with autograd), its minima (point, value, ``"global"`` or ``"local"``), its
saddle points where they matter, a plotting window and a default start point.

The surfaces and the trap of the lecture each one shows:

============== =========================================== ==========================
name           f(x, y)                                     shows
============== =========================================== ==========================
quadratic      (x^2 + kappa y^2) / 2                       ill-conditioning (Goh 2017)
rosenbrock     (1 - x)^2 + 100 (y - x^2)^2                 a curved narrow valley
beale          sum_i (c_i - x + x y^i)^2, c = 1.5, 2.25,   steep walls, flat floor
               2.625
himmelblau     (x^2 + y - 11)^2 + (x + y^2 - 7)^2          four global minima
rastrigin      2 A + sum (x_i^2 - A cos(2 pi x_i)), A = 10 many local minima
plateau        1 - exp(-(x^2 + y^2) / 2)                   a very slow plateau
saddle         x^2 - y^2                                   a saddle point
monkey_saddle  x^3 - 3 x y^2                               a degenerate saddle
double_well    x^4 - 3 x^2 + x + y^2                       one local, one global min
goh_banana     (1 - x)^2 + 20 (3 y - x^2)^2                Goh's banana, opt (1, 1/3)
============== =========================================== ==========================

``get_surface(name, **params)`` builds one from the registry; ``surface_names()`` lists them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch

__all__ = [
    "Minimum",
    "MinimumKind",
    "Surface",
    "beale",
    "double_well",
    "get_surface",
    "goh_banana",
    "himmelblau",
    "monkey_saddle",
    "plateau",
    "quadratic",
    "rastrigin",
    "rosenbrock",
    "saddle",
    "surface_names",
]

MinimumKind = Literal["global", "local"]
Window = tuple[tuple[float, float], tuple[float, float]]
SurfaceFn = Callable[[torch.Tensor], torch.Tensor]
PointFn = Callable[[float, float], tuple[float, float, float]]


@dataclass(frozen=True)
class Minimum:
    """A stationary point that is a minimum: ``point``, its ``value`` and its ``kind``."""

    point: tuple[float, float]
    value: float
    kind: MinimumKind


@dataclass(frozen=True)
class Surface:
    """A 2-D test function with its analytic gradient and known landmarks.

    ``fn`` and ``grad`` take a tensor of shape ``(..., 2)``; ``fn`` returns shape ``(...)`` and
    ``grad`` returns ``(..., 2)``. ``window`` is ``((x_min, x_max), (y_min, y_max))``.
    ``log_levels`` says whether contour levels should be log-spaced (surfaces whose values span
    many decades). ``saddles`` lists saddle points (stationary, not minima) that an optimizer
    may have to escape, and ``saddle_radius`` the neighbourhood used to say it has left one.

    ``value_and_grad(x, y)`` gives ``(f, df/dx, df/dy)`` at one point as Python floats: the
    numbers ``fn`` and ``grad`` give on a float64 2-vector, bit for bit (the same operations in
    the same order; the tests check), without dispatching a dozen tensor operations. The
    trajectory runner takes it when it is there (None: it calls ``fn`` and ``grad``).
    """

    name: str
    formula: str
    fn: SurfaceFn
    grad: SurfaceFn
    minima: tuple[Minimum, ...]
    window: Window
    start: tuple[float, float]
    saddles: tuple[tuple[float, float], ...] = ()
    saddle_radius: float = 1.0
    log_levels: bool = False
    params: dict[str, float] = field(default_factory=dict)
    value_and_grad: PointFn | None = None

    def __call__(self, xy: torch.Tensor) -> torch.Tensor:
        return self.fn(xy)

    @property
    def global_minima(self) -> tuple[Minimum, ...]:
        """The known minima marked global."""
        return tuple(m for m in self.minima if m.kind == "global")

    @property
    def min_value(self) -> float | None:
        """f* (the global minimum value), or None for surfaces unbounded below."""
        glob = self.global_minima
        return glob[0].value if glob else None


def _split(xy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return xy[..., 0], xy[..., 1]


def _stack(gx: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
    return torch.stack((gx, gy), dim=-1)


# The float versions of the formulas (``Surface.value_and_grad``) repeat torch's arithmetic on
# float64: t**2 is t*t and t**3 is t*t*t there, t**4 is pow(t, 4); exp, cos and sin are
# torch's own (they differ from the math module's in the last bit), on a tensor made from the
# float argument.


def _exp(value: float) -> float:
    return float(torch.exp(torch.tensor(value, dtype=torch.float64)))


def _power(value: float, exponent: int) -> float:
    """value ** exponent for exponent 0..3, as torch computes it on float64."""
    if exponent == 0:
        return 1.0
    if exponent == 1:
        return value
    if exponent == 2:
        return value * value
    if exponent == 3:
        return value * value * value
    raise ValueError(f"exponent must be 0..3, got {exponent}")


def _fourth_power(value: float) -> float:
    """value ** 4 as torch computes it (pow), infinite where it overflows (math raises)."""
    try:
        return math.pow(value, 4)
    except OverflowError:
        return math.inf


def _cos_sin(u: float, v: float) -> tuple[list[float], list[float]]:
    angles = torch.tensor((u, v), dtype=torch.float64)
    return torch.cos(angles).tolist(), torch.sin(angles).tolist()


# --------------------------------------------------------------------------- quadratic bowl


def quadratic(kappa: float = 10.0) -> Surface:
    """Quadratic bowl f = (x^2 + kappa y^2) / 2 with Hessian diag(1, kappa).

    Eigenvalues l1 = 1, ln = kappa, so the condition number is kappa. Gradient (x, kappa y).
    Global minimum (0, 0) with value 0.
    """
    if kappa < 1.0:
        raise ValueError(f"kappa must be >= 1, got {kappa}")

    def fn(xy: torch.Tensor) -> torch.Tensor:
        x, y = _split(xy)
        return 0.5 * (x**2 + kappa * y**2)

    def grad(xy: torch.Tensor) -> torch.Tensor:
        x, y = _split(xy)
        return _stack(x, kappa * y)

    def value_and_grad(x: float, y: float) -> tuple[float, float, float]:
        return 0.5 * (x * x + kappa * (y * y)), x, kappa * y

    half_y = 2.5 / math.sqrt(kappa) + 0.5
    return Surface(
        name="quadratic",
        formula=f"(x² + {kappa:g}·y²)/2",
        fn=fn,
        grad=grad,
        minima=(Minimum((0.0, 0.0), 0.0, "global"),),
        window=((-2.5, 2.5), (-half_y, half_y)),
        start=(-2.0, 2.0 / math.sqrt(kappa)),
        log_levels=True,
        params={"kappa": float(kappa)},
        value_and_grad=value_and_grad,
    )


# --------------------------------------------------------------------------- Rosenbrock


def rosenbrock() -> Surface:
    """Rosenbrock f = (1 - x)^2 + 100 (y - x^2)^2.

    Gradient: df/dx = -2 (1 - x) - 400 x (y - x^2), df/dy = 200 (y - x^2).
    Global minimum (1, 1) with value 0, at the end of a curved, narrow valley. Start (-2, 2).
    """

    def fn(xy: torch.Tensor) -> torch.Tensor:
        x, y = _split(xy)
        return (1 - x) ** 2 + 100 * (y - x**2) ** 2

    def grad(xy: torch.Tensor) -> torch.Tensor:
        x, y = _split(xy)
        return _stack(-2 * (1 - x) - 400 * x * (y - x**2), 200 * (y - x**2))

    def value_and_grad(x: float, y: float) -> tuple[float, float, float]:
        a, b = 1 - x, y - x * x
        return a * a + 100 * (b * b), -2 * a - 400 * x * b, 200 * b

    return Surface(
        name="rosenbrock",
        formula="(1−x)² + 100(y−x²)²",
        fn=fn,
        grad=grad,
        minima=(Minimum((1.0, 1.0), 0.0, "global"),),
        window=((-2.5, 2.5), (-1.5, 4.5)),
        start=(-2.0, 2.0),
        log_levels=True,
        value_and_grad=value_and_grad,
    )


# --------------------------------------------------------------------------- Beale

_BEALE_C = (1.5, 2.25, 2.625)


def beale() -> Surface:
    """Beale f = sum_{i=1..3} (c_i - x + x y^i)^2 with c = (1.5, 2.25, 2.625).

    With t_i = c_i - x + x y^i: df/dx = sum 2 t_i (y^i - 1), df/dy = sum 2 t_i i x y^(i-1).
    Global minimum (3, 0.5) with value 0. Start (3, 4), where f is about 3.7e4.
    """

    def fn(xy: torch.Tensor) -> torch.Tensor:
        x, y = _split(xy)
        total = torch.zeros_like(x)
        for i, c in enumerate(_BEALE_C):
            total = total + (c - x + x * y ** (i + 1)) ** 2
        return total

    def grad(xy: torch.Tensor) -> torch.Tensor:
        x, y = _split(xy)
        gx = torch.zeros_like(x)
        gy = torch.zeros_like(x)
        for i, c in enumerate(_BEALE_C):
            p = i + 1
            t = c - x + x * y**p
            gx = gx + 2 * t * (y**p - 1)
            gy = gy + 2 * t * p * x * y ** (p - 1)
        return _stack(gx, gy)

    def value_and_grad(x: float, y: float) -> tuple[float, float, float]:
        f = gx = gy = 0.0
        for i, c in enumerate(_BEALE_C):
            p = i + 1
            t = c - x + x * _power(y, p)
            f = f + t * t
            gx = gx + 2 * t * (_power(y, p) - 1)
            gy = gy + 2 * t * p * x * _power(y, p - 1)
        return f, gx, gy

    return Surface(
        name="beale",
        formula="Σᵢ (cᵢ − x + x·yⁱ)², c = 1.5, 2.25, 2.625",
        fn=fn,
        grad=grad,
        value_and_grad=value_and_grad,
        minima=(Minimum((3.0, 0.5), 0.0, "global"),),
        window=((-4.5, 4.5), (-4.5, 4.5)),
        start=(3.0, 4.0),
        log_levels=True,
    )


# --------------------------------------------------------------------------- Himmelblau


def _newton_2d(
    grad: SurfaceFn, point: tuple[float, float], iterations: int = 50
) -> tuple[float, float]:
    """Polish a stationary point with Newton's method (autograd Hessian, float64)."""
    p = torch.tensor(point, dtype=torch.float64)
    for _ in range(iterations):
        g = grad(p)
        h = torch.autograd.functional.jacobian(grad, p)
        p = p - torch.linalg.solve(h, g)
    return (float(p[0]), float(p[1]))


def himmelblau() -> Surface:
    """Himmelblau f = (x^2 + y - 11)^2 + (x + y^2 - 7)^2.

    With a = x^2 + y - 11 and b = x + y^2 - 7: df/dx = 4 x a + 2 b, df/dy = 2 a + 4 y b.
    Four global minima with value 0: (3, 2) exactly and, to 6 digits, (-2.805118, 3.131313),
    (-3.779310, -3.283186), (3.584428, -1.848126) (polished here by Newton's method).
    """

    def fn(xy: torch.Tensor) -> torch.Tensor:
        x, y = _split(xy)
        return (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2

    def grad(xy: torch.Tensor) -> torch.Tensor:
        x, y = _split(xy)
        a = x**2 + y - 11
        b = x + y**2 - 7
        return _stack(4 * x * a + 2 * b, 2 * a + 4 * y * b)

    guesses = ((3.0, 2.0), (-2.805118, 3.131313), (-3.779310, -3.283186), (3.584428, -1.848126))
    minima = tuple(Minimum(_newton_2d(grad, g), 0.0, "global") for g in guesses)

    def value_and_grad(x: float, y: float) -> tuple[float, float, float]:
        a = x * x + y - 11
        b = x + y * y - 7
        return a * a + b * b, 4 * x * a + 2 * b, 2 * a + 4 * y * b

    return Surface(
        name="himmelblau",
        formula="(x² + y − 11)² + (x + y² − 7)²",
        fn=fn,
        grad=grad,
        value_and_grad=value_and_grad,
        minima=minima,
        window=((-5.0, 5.0), (-5.0, 5.0)),
        start=(-0.5, -0.5),
        log_levels=True,
    )


# --------------------------------------------------------------------------- Rastrigin


def _rastrigin_1d_minimum(k: int, amplitude: float) -> float:
    """The 1-D minimum of g(x) = x^2 - A cos(2 pi x) near the integer k.

    Solves g'(x) = 2 x + 2 pi A sin(2 pi x) = 0 by Newton from x = k; the root sits slightly
    closer to 0 than k because the parabola pulls it inward.
    """
    x = float(k)
    for _ in range(50):
        g1 = 2 * x + 2 * math.pi * amplitude * math.sin(2 * math.pi * x)
        g2 = 2 + 4 * math.pi**2 * amplitude * math.cos(2 * math.pi * x)
        x -= g1 / g2
    return x


def rastrigin(amplitude: float = 10.0, extent: int = 4) -> Surface:
    """Rastrigin f = 2 A + sum_i (x_i^2 - A cos(2 pi x_i)), A = 10 by default.

    Gradient: df/dx_i = 2 x_i + 2 pi A sin(2 pi x_i). Global minimum (0, 0) with value 0. The
    function is separable, so its local minima are the products (x_j, x_k) of the 1-D minima
    x_j near each integer j (computed by Newton); those with |j|, |k| <= ``extent`` are listed.
    Start (-2, 3.5).
    """
    a = amplitude

    def fn(xy: torch.Tensor) -> torch.Tensor:
        x, y = _split(xy)
        return 2 * a + x**2 - a * torch.cos(2 * math.pi * x) + y**2 - a * torch.cos(2 * math.pi * y)

    def grad(xy: torch.Tensor) -> torch.Tensor:
        x, y = _split(xy)
        gx = 2 * x + 2 * math.pi * a * torch.sin(2 * math.pi * x)
        gy = 2 * y + 2 * math.pi * a * torch.sin(2 * math.pi * y)
        return _stack(gx, gy)

    roots = {k: _rastrigin_1d_minimum(k, a) for k in range(-extent, extent + 1)}

    def g1(x: float) -> float:
        return x**2 - a * math.cos(2 * math.pi * x)

    minima = [Minimum((0.0, 0.0), 0.0, "global")]
    for j in range(-extent, extent + 1):
        for k in range(-extent, extent + 1):
            if j == 0 and k == 0:
                continue
            xj, xk = roots[j], roots[k]
            minima.append(Minimum((xj, xk), 2 * a + g1(xj) + g1(xk), "local"))
    w = extent + 0.5

    def value_and_grad(x: float, y: float) -> tuple[float, float, float]:
        (cx, cy), (sx, sy) = _cos_sin(2 * math.pi * x, 2 * math.pi * y)
        f = 2 * a + x * x - a * cx + y * y - a * cy
        return f, 2 * x + 2 * math.pi * a * sx, 2 * y + 2 * math.pi * a * sy

    return Surface(
        name="rastrigin",
        formula=f"{2 * a:g} + Σᵢ (xᵢ² − {a:g}·cos 2πxᵢ)",
        fn=fn,
        grad=grad,
        value_and_grad=value_and_grad,
        minima=tuple(minima),
        window=((-w, w), (-w, w)),
        start=(-2.0, 3.5),
        params={"A": float(a)},
    )


# --------------------------------------------------------------------------- plateau


def plateau() -> Surface:
    """Plateau f = 1 - exp(-r^2 / 2), r^2 = x^2 + y^2.

    Gradient (x, y) exp(-r^2 / 2): it decays like r e^{-r^2/2}, so far from the centre the
    surface is almost flat. Global minimum (0, 0) with value 0. Start (3, 1.5), where the
    gradient norm is about 1.2e-2.
    """

    def fn(xy: torch.Tensor) -> torch.Tensor:
        x, y = _split(xy)
        return 1 - torch.exp(-(x**2 + y**2) / 2)

    def grad(xy: torch.Tensor) -> torch.Tensor:
        x, y = _split(xy)
        e = torch.exp(-(x**2 + y**2) / 2)
        return _stack(x * e, y * e)

    def value_and_grad(x: float, y: float) -> tuple[float, float, float]:
        e = _exp(-(x * x + y * y) / 2)
        return 1 - e, x * e, y * e

    return Surface(
        name="plateau",
        formula="1 − exp(−(x² + y²)/2)",
        fn=fn,
        grad=grad,
        value_and_grad=value_and_grad,
        minima=(Minimum((0.0, 0.0), 0.0, "global"),),
        window=((-4.0, 4.0), (-4.0, 4.0)),
        start=(3.0, 1.5),
    )


# --------------------------------------------------------------------------- saddles


def saddle() -> Surface:
    """Saddle f = x^2 - y^2, gradient (2 x, -2 y); unbounded below, no minimum.

    The saddle point is (0, 0). Its stable manifold ("ridge") is the line y = 0: gradient
    descent started on it converges to the saddle, and from y = eps != 0 it leaves only as
    fast as |y| grows by (1 + 2 lr) per step. Start (1, 1e-3).
    """

    def fn(xy: torch.Tensor) -> torch.Tensor:
        x, y = _split(xy)
        return x**2 - y**2

    def grad(xy: torch.Tensor) -> torch.Tensor:
        x, y = _split(xy)
        return _stack(2 * x, -2 * y)

    def value_and_grad(x: float, y: float) -> tuple[float, float, float]:
        return x * x - y * y, 2 * x, -2 * y

    return Surface(
        name="saddle",
        formula="x² − y²",
        fn=fn,
        grad=grad,
        value_and_grad=value_and_grad,
        minima=(),
        window=((-1.5, 1.5), (-1.5, 1.5)),
        start=(1.0, 1e-3),
        saddles=((0.0, 0.0),),
        saddle_radius=1.25,
    )


def monkey_saddle() -> Surface:
    """Monkey saddle f = x^3 - 3 x y^2, gradient (3 x^2 - 3 y^2, -6 x y); no minimum.

    (0, 0) is a degenerate saddle (zero Hessian) with three descending valleys. Along y = 0
    with x > 0, gradient descent approaches it only like 1 / (3 lr t). Start (1, 0.2).
    """

    def fn(xy: torch.Tensor) -> torch.Tensor:
        x, y = _split(xy)
        return x**3 - 3 * x * y**2

    def grad(xy: torch.Tensor) -> torch.Tensor:
        x, y = _split(xy)
        return _stack(3 * x**2 - 3 * y**2, -6 * x * y)

    def value_and_grad(x: float, y: float) -> tuple[float, float, float]:
        return x * x * x - 3 * x * (y * y), 3 * (x * x) - 3 * (y * y), -6 * x * y

    return Surface(
        name="monkey_saddle",
        formula="x³ − 3xy²",
        fn=fn,
        grad=grad,
        value_and_grad=value_and_grad,
        minima=(),
        window=((-1.5, 1.5), (-1.5, 1.5)),
        start=(1.0, 0.2),
        saddles=((0.0, 0.0),),
        saddle_radius=1.25,
    )


# --------------------------------------------------------------------------- double well


def _double_well_roots() -> tuple[float, float, float]:
    """Roots of 4 x^3 - 6 x + 1 (the x-stationary points of x^4 - 3 x^2 + x), ascending.

    Trigonometric form for the depressed cubic x^3 + p x + q with p = -3/2, q = 1/4:
    x_k = 2 sqrt(-p/3) cos(arccos((3q / 2p) sqrt(-3/p)) / 3 - 2 pi k / 3), k = 0, 1, 2.
    """
    p, q = -1.5, 0.25
    theta = math.acos(3 * q / (2 * p) * math.sqrt(-3 / p)) / 3
    roots = [2 * math.sqrt(-p / 3) * math.cos(theta - 2 * math.pi * k / 3) for k in range(3)]
    lo, mid, hi = sorted(roots)
    return lo, mid, hi


def double_well() -> Surface:
    """Double well f = x^4 - 3 x^2 + x + y^2, gradient (4 x^3 - 6 x + 1, 2 y).

    Stationary points solve 4 x^3 - 6 x + 1 = 0, y = 0:
    global minimum x = -1.300840 (f = -3.513905), saddle x = 0.169938 (the barrier,
    f = 0.084135; a maximum in x, a minimum in y), local minimum x = 1.130901 (f = -1.070230).
    Start (2, 1), on the local minimum's side.
    """
    lo, mid, hi = _double_well_roots()

    def f1(x: float) -> float:
        return x**4 - 3 * x**2 + x

    def fn(xy: torch.Tensor) -> torch.Tensor:
        x, y = _split(xy)
        return x**4 - 3 * x**2 + x + y**2

    def grad(xy: torch.Tensor) -> torch.Tensor:
        x, y = _split(xy)
        return _stack(4 * x**3 - 6 * x + 1, 2 * y)

    def value_and_grad(x: float, y: float) -> tuple[float, float, float]:
        f = _fourth_power(x) - 3 * (x * x) + x + y * y
        return f, 4 * (x * x * x) - 6 * x + 1, 2 * y

    return Surface(
        name="double_well",
        formula="x⁴ − 3x² + x + y²",
        fn=fn,
        grad=grad,
        value_and_grad=value_and_grad,
        minima=(Minimum((lo, 0.0), f1(lo), "global"), Minimum((hi, 0.0), f1(hi), "local")),
        window=((-2.2, 2.2), (-1.5, 1.5)),
        start=(2.0, 1.0),
        saddles=((mid, 0.0),),
        saddle_radius=0.5,
    )


# --------------------------------------------------------------------------- Goh's banana


def goh_banana() -> Surface:
    """Goh's banana f = (1 - x)^2 + 20 (3 y - x^2)^2 (Distill, "Why Momentum Really Works").

    Gradient: df/dx = -2 (1 - x) - 80 x (3 y - x^2), df/dy = 120 (3 y - x^2).
    Global minimum (1, 1/3) with value 0. Start (-1.5, 1).
    """

    def fn(xy: torch.Tensor) -> torch.Tensor:
        x, y = _split(xy)
        return (1 - x) ** 2 + 20 * (3 * y - x**2) ** 2

    def grad(xy: torch.Tensor) -> torch.Tensor:
        x, y = _split(xy)
        return _stack(-2 * (1 - x) - 80 * x * (3 * y - x**2), 120 * (3 * y - x**2))

    def value_and_grad(x: float, y: float) -> tuple[float, float, float]:
        a, b = 1 - x, 3 * y - x * x
        return a * a + 20 * (b * b), -2 * a - 80 * x * b, 120 * b

    return Surface(
        name="goh_banana",
        formula="(1−x)² + 20(3y−x²)²",
        fn=fn,
        grad=grad,
        value_and_grad=value_and_grad,
        minima=(Minimum((1.0, 1.0 / 3.0), 0.0, "global"),),
        window=((-2.0, 2.0), (-0.5, 1.5)),
        start=(-1.5, 1.0),
        log_levels=True,
    )


# --------------------------------------------------------------------------- registry

_REGISTRY: dict[str, Callable[..., Surface]] = {
    "quadratic": quadratic,
    "rosenbrock": rosenbrock,
    "beale": beale,
    "himmelblau": himmelblau,
    "rastrigin": rastrigin,
    "plateau": plateau,
    "saddle": saddle,
    "monkey_saddle": monkey_saddle,
    "double_well": double_well,
    "goh_banana": goh_banana,
}


def surface_names() -> tuple[str, ...]:
    """Names accepted by :func:`get_surface`, in a stable order."""
    return tuple(_REGISTRY)


def get_surface(name: str, **params: float) -> Surface:
    """Build the surface registered as ``name`` (e.g. ``get_surface("quadratic", kappa=100)``)."""
    try:
        builder = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown surface {name!r}; known: {', '.join(_REGISTRY)}") from None
    return builder(**params)
