"""Goh (2017): optimal gradient descent and heavy ball rates on a quadratic."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dltricks.surfaces import check_rates, gradient_descent_optimal, heavy_ball_optimal
from dltricks.surfaces.theory import measured_rate, theoretical_rate

KAPPAS = (4.0, 10.0, 100.0, 1000.0)


def test_optimal_hyperparameters_match_goh() -> None:
    kappa = 100.0
    assert gradient_descent_optimal(1.0, kappa) == pytest.approx(2 / 101)
    alpha, beta = heavy_ball_optimal(1.0, kappa)
    assert alpha == pytest.approx((2 / (1 + 10)) ** 2)
    assert beta == pytest.approx((9 / 11) ** 2)


def test_measured_rate_of_a_geometric_sequence_is_exact() -> None:
    d = 3.0 * 0.7 ** np.arange(50)
    assert measured_rate(d, 10, 40) == pytest.approx(0.7, rel=1e-12)
    with pytest.raises(ValueError, match="start"):
        measured_rate(d, 40, 10)


@pytest.fixture(scope="module")
def checks():  # type: ignore[no-untyped-def]
    return check_rates(KAPPAS)


def test_measured_rates_within_two_percent_of_theory(checks) -> None:  # type: ignore[no-untyped-def]
    assert len(checks) == 2 * len(KAPPAS)
    for c in checks:
        k = c.kappa
        if c.method == "gradient descent":
            theory = (k - 1) / (k + 1)
        else:
            theory = (math.sqrt(k) - 1) / (math.sqrt(k) + 1)
        assert c.theoretical_rate == pytest.approx(theory, rel=1e-14)
        assert theoretical_rate(c.method, k) == pytest.approx(theory, rel=1e-14)
        assert abs(c.measured_rate - theory) / theory < 0.02, c
    # Gradient descent at alpha* contracts both eigen-directions by exactly rho each step.
    for c in checks:
        if c.method == "gradient descent":
            assert c.relative_error < 1e-9, c


def test_heavy_ball_beats_gradient_descent_for_every_kappa(checks) -> None:  # type: ignore[no-untyped-def]
    by = {(c.kappa, c.method): c.measured_rate for c in checks}
    for k in KAPPAS:
        assert by[(k, "heavy ball")] < by[(k, "gradient descent")]


def test_records_are_json_ready(checks) -> None:  # type: ignore[no-untyped-def]
    import json

    json.dumps([c.record() for c in checks])
