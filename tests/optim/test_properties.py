"""Property-based tests (hypothesis) of every optimizer's transformation.

Drawn: the optimizer (a row of the table), its hyperparameters from the ranges its validation
accepts, one to three parameters of random shapes, 0-dim and empty ones included (torch steps
both; the fast path leaves them on the eager path), float32 or float64, random initial values
and a few steps of random finite gradients whose scale spans 0 (every gradient zero), 1e-20
(squares underflow in float32), 1 and 1e3, with some entries exactly zero.

Properties:

* finite in, finite out: parameters and state stay finite;
* state keeps its layout: after every step each entry has the shape, dtype and device it had
  after the first (the parameter's, Adafactor's per-row and per-column statistics, or 0-dim
  for ``step`` and NAdam's ``mu_product``);
* eager equals fast: ``fast=False`` and ``fast=True`` on the same inputs agree in float64 to
  1e-12 relative to each parameter's largest magnitude during the run.

Honest exclusions, each a true limit of the property rather than of the code:

* ``eps`` is drawn from [1e-10, 1e-2]. Validation accepts ``eps = 0``, but then a zero gradient
  on a zero state divides 0 by 0 (Adam, Adagrad, RMSprop, Adamax, Adadelta), in torch too.
* centered RMSprop computes the variance as ``v_t - a_t^2``, which rounding makes slightly
  negative (and its root NaN) when the gradients barely vary: in float32, a constant gradient
  and ``alpha`` near 0.01 give NaN within four steps, in torch too. Its finiteness is not
  asserted (its state layout is); the eager-equals-fast property keeps default chains only.
* the ranges are bounded where validation is not (``lr`` <= 1, ``momentum`` < 1, ``betas`` <=
  0.999, weight decay <= 1): outside them a run may overflow in a few steps as plain arithmetic.
  ``betas`` stop at 0.999 for the eager-equals-fast property also because ``1 - beta^t`` loses
  digits to cancellation: the fast path computes ``beta^t`` as ``exp(t log beta)``, a few ulp
  from Python's ``**``, which near ``beta = 1`` is more than 1e-12 of ``1 - beta^t``.

Runs are derandomized (the same examples every run, no example database): a failure here is a
regression, never a new random find. The fast path compiles each optimizer's default chain once
per process (float64; the parity tests compile the same kernels), so the eager-equals-fast
property draws only hyperparameters that keep that chain.
"""

from __future__ import annotations

from typing import Any

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.optim.cases import CASES, OptimizerCase

SETTINGS = {
    "deadline": None,
    "derandomize": True,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}

unit = st.floats(0.0, 1.0)
beta = st.floats(0.0, 0.999)
eps = st.floats(1e-10, 1e-2)
shape = st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple)


def hyperparameters(name: str, *, structural: bool) -> st.SearchStrategy[dict[str, Any]]:
    """Valid keyword arguments of optimizer ``name``; ``structural=False`` keeps its default
    chain (no flags, no switching momentum on or off)."""
    flag = st.booleans() if structural else st.just(False)
    lr = st.floats(0.0, 1.0)
    common: dict[str, st.SearchStrategy[Any]] = {"lr": lr, "weight_decay": unit}
    if name in ("SGD", "Momentum"):
        # Momentum on or off changes SGD's chain; Momentum's default has it on.
        if name == "Momentum":
            momentum = st.floats(0.01, 0.99)
        else:
            momentum = st.floats(0.0, 0.99) if structural else st.just(0.0)
        draw = st.fixed_dictionaries(
            {**common, "momentum": momentum, "dampening": unit, "maximize": flag}
        )
        # nesterov needs momentum > 0 and no dampening: draw it where it is valid.
        return draw.flatmap(
            lambda kw: (
                st.fixed_dictionaries({"nesterov": flag}).map(
                    lambda n: {**kw, **n, "dampening": 0.0}
                )
                if kw["momentum"] > 0
                else st.just(kw)
            )
        )
    if name == "Adagrad":
        extra = {"lr_decay": unit, "initial_accumulator_value": unit, "eps": eps}
        return st.fixed_dictionaries({**common, **extra, "maximize": flag})
    if name == "RMSprop":
        momentum = st.floats(0.01, 0.99) if structural else st.just(0.0)
        extra = {"alpha": unit, "eps": eps, "momentum": momentum, "centered": flag}
        return st.fixed_dictionaries({**common, **extra, "maximize": flag})
    if name in ("Adam", "AdamW"):
        extra = {"betas": st.tuples(beta, beta), "eps": eps, "amsgrad": flag}
        return st.fixed_dictionaries({**common, **extra, "maximize": flag})
    if name == "Adamax":
        extra = {"betas": st.tuples(beta, beta), "eps": eps}
        return st.fixed_dictionaries({**common, **extra, "maximize": flag})
    if name == "NAdam":
        extra = {"betas": st.tuples(beta, beta), "eps": eps, "momentum_decay": st.floats(0, 0.1)}
        return st.fixed_dictionaries(
            {**common, **extra, "maximize": flag, "decoupled_weight_decay": flag}
        )
    if name == "Adadelta":
        extra = {"rho": unit, "eps": eps, "lr": st.floats(0.0, 2.0)}
        return st.fixed_dictionaries({**common, **extra, "maximize": flag})
    if name == "Lion":
        return st.fixed_dictionaries({**common, "betas": st.tuples(beta, beta), "maximize": flag})
    if name == "Adafactor":
        extra = {
            "beta2_decay": st.floats(-1.0, 0.0),
            "eps": st.tuples(st.none() | eps, eps),
            "d": st.floats(1.0, 10.0),
        }
        return st.fixed_dictionaries({**common, **extra, "maximize": flag})
    if name == "RAdam":
        extra = {"betas": st.tuples(beta, beta), "eps": eps}
        return st.fixed_dictionaries(
            {**common, **extra, "maximize": flag, "decoupled_weight_decay": flag}
        )
    if name == "Rprop":
        etas = st.tuples(st.floats(0.01, 0.99), st.floats(1.01, 3.0))
        sizes = st.tuples(st.floats(0.0, 1e-3), st.floats(1e-3, 1.0))
        extra = {"etas": etas, "step_sizes": sizes, "maximize": flag}
        return st.fixed_dictionaries({"lr": lr, **extra})
    if name == "ASGD":
        extra = {"lambd": unit, "alpha": unit, "t0": st.floats(0.0, 5.0), "maximize": flag}
        return st.fixed_dictionaries({**common, **extra})
    if name == "AdaBelief":
        extra = {"betas": st.tuples(beta, beta), "eps": eps, "maximize": flag}
        decouple = st.booleans() if structural else st.just(True)  # its default is True
        extra |= {"weight_decouple": decouple, "fixed_decay": flag, "ams_bound": flag}
        return st.fixed_dictionaries({**common, **extra})
    if name == "ScheduleFreeAdamW":
        extra = {"betas": st.tuples(st.floats(0.01, 0.999), beta), "eps": eps}
        extra |= {"warmup_steps": st.integers(0, 3), "r": unit, "weight_lr_power": st.floats(0, 2)}
        return st.fixed_dictionaries({**common, **extra})
    raise AssertionError(f"no hyperparameter strategy for {name}: add one with the row")


@st.composite
def problems(draw: st.DrawFn, *, structural: bool, dtypes: tuple[torch.dtype, ...]) -> Any:
    case: OptimizerCase = draw(st.sampled_from(CASES))
    kwargs = draw(hyperparameters(case.name, structural=structural))
    shapes = draw(st.lists(shape, min_size=1, max_size=3))
    dtype = draw(st.sampled_from(dtypes))
    steps = draw(st.integers(1, 4))
    scales = draw(st.lists(st.sampled_from([0.0, 1e-20, 1.0, 1e3]), min_size=steps, max_size=steps))
    param_scale = draw(st.sampled_from([0.0, 1e-3, 1.0, 1e3]))
    seed = draw(st.integers(0, 2**31 - 1))
    return case, kwargs, shapes, dtype, scales, param_scale, seed


def _run(
    case: OptimizerCase,
    kwargs: dict[str, Any],
    shapes: list[tuple[int, ...]],
    dtype: torch.dtype,
    scales: list[float],
    param_scale: float,
    seed: int,
    *,
    fast: bool,
    after_step: Any = None,
) -> tuple[list[torch.Tensor], torch.optim.Optimizer]:
    gen = torch.Generator().manual_seed(seed)
    params = [
        torch.nn.Parameter(
            torch.randn(s, generator=gen, dtype=torch.float64).to(dtype) * param_scale
        )
        for s in shapes
    ]
    opt = case.ours(params, fast=fast, **kwargs)
    for scale in scales:
        for p in params:
            g = torch.randn(p.shape, generator=gen, dtype=torch.float64) * scale
            g[torch.rand(p.shape, generator=gen) < 0.2] = 0.0
            p.grad = g.to(dtype)
        opt.step()
        if after_step is not None:
            after_step(params, opt)
    return params, opt


def _state_shape(key: str, p: torch.Tensor) -> tuple[int, ...]:
    """The shape a state tensor must have: the parameter's, but for Adafactor's factored moment
    of a matrix, whose row statistics drop the last dimension and column ones the one before."""
    shape = list(p.shape)
    if key == "row_var":
        shape[-1] = 1
    if key == "col_var":
        shape[-2] = 1
    return tuple(shape)


@settings(max_examples=150, **SETTINGS)
@given(problems(structural=True, dtypes=(torch.float32, torch.float64)))
def test_finite_gradients_give_finite_parameters_and_state_of_the_same_layout(
    problem: Any,
) -> None:
    case, kwargs, shapes, dtype, scales, param_scale, seed = problem
    layout: dict[int, dict[str, tuple[Any, ...]]] = {}
    finite = not kwargs.get("centered", False)  # see the module docstring

    def check(params: list[torch.Tensor], opt: torch.optim.Optimizer) -> None:
        for i, p in enumerate(params):
            assert p.dtype == dtype
            assert not finite or torch.isfinite(p).all(), f"parameter {i} is not finite"
            now = {}
            for key, value in opt.state[p].items():
                assert not finite or torch.isfinite(value).all(), f"state {key!r} of parameter {i}"
                now[key] = (tuple(value.shape), value.dtype, value.device)
                if key == "step" or (value.dim() == 0 and p.dim() != 0):
                    continue
                assert now[key] == (_state_shape(key, p), p.dtype, p.device), key
            assert layout.setdefault(i, now) == now, "the state changed its layout"

    _run(case, kwargs, shapes, dtype, scales, param_scale, seed, fast=False, after_step=check)


@settings(max_examples=60, **SETTINGS)
@given(problems(structural=False, dtypes=(torch.float64,)))
def test_the_fast_path_equals_the_eager_path_in_float64(problem: Any) -> None:
    case, kwargs, shapes, dtype, scales, param_scale, seed = problem
    # Rounding errors scale with the largest value a parameter took during the run: a step can
    # cancel a parameter of order one down to 1e-10, leaving an error of order 1e-16.
    peaks = [0.0] * len(shapes)

    def record_peaks(params: list[torch.Tensor], opt: torch.optim.Optimizer) -> None:
        for i, q in enumerate(params):
            if q.numel():
                peaks[i] = max(peaks[i], float(q.detach().abs().max()))

    eager, eager_opt = _run(
        case, kwargs, shapes, dtype, scales, param_scale, seed, fast=False, after_step=record_peaks
    )
    fast, fast_opt = _run(case, kwargs, shapes, dtype, scales, param_scale, seed, fast=True)
    initial = _run(case, kwargs, shapes, dtype, [], param_scale, seed, fast=False)[0]
    for p, q, peak, start in zip(fast, eager, peaks, initial, strict=True):
        scale = max(peak, float(start.detach().abs().max()) if start.numel() else 0.0)
        torch.testing.assert_close(p, q, rtol=0, atol=1e-12 * scale + 1e-300)
        assert set(fast_opt.state[p]) == set(eager_opt.state[q])
        for key, value in eager_opt.state[q].items():
            mine = fast_opt.state[p][key]
            assert (mine.shape, mine.dtype) == (value.shape, value.dtype), key
            bound = float(value.abs().max()) if value.numel() else 0.0
            torch.testing.assert_close(mine, value, rtol=0, atol=1e-12 * bound + 1e-300)
