"""Where the math says two compositions are equal, they are; where it says not, they differ."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch

import dltricks.optim as ours
from dltricks.optim import blocks as b
from dltricks.optim import chain, identity, ratio
from tests.optim.harness import clone, default_dtype, make_model, max_relative_difference, train


def _final(factory: Callable[[Any], torch.optim.Optimizer], steps: int = 60) -> torch.nn.Module:
    with default_dtype(torch.float64):
        model = make_model()
        train(factory, model, lr=0.0, steps=steps)
    return model


def test_adam_is_momentum_over_rmsprop() -> None:
    """Adam == ratio(bias-corrected EMA of g, root of bias-corrected EMA of g^2)."""
    composed = ratio(
        chain(b.ema(0.9), b.bias_correction(0.9)),
        chain(b.ema_of_squares(0.999), b.bias_correction(0.999), b.root(1e-8)),
    )
    lecture_adam = chain(composed, b.scale_by_learning_rate())
    a = _final(lambda ps: ours.ChainOptimizer(ps, lecture_adam, lr=1e-2))
    ref = _final(lambda ps: torch.optim.Adam(ps, lr=1e-2))
    assert max_relative_difference(a, ref) < 1e-12


def test_chaining_momentum_into_rms_is_not_adam() -> None:
    """A plain chain feeds the second moment the first moment, not the gradient."""
    wrong = chain(
        b.ema(0.9),
        b.bias_correction(0.9),
        ratio(identity(), chain(b.ema_of_squares(0.999), b.bias_correction(0.999), b.root(1e-8))),
        b.scale_by_learning_rate(),
    )
    a = _final(lambda ps: ours.ChainOptimizer(ps, wrong, lr=1e-2))
    ref = _final(lambda ps: torch.optim.Adam(ps, lr=1e-2))
    assert max_relative_difference(a, ref) > 1e-4


def test_adam_without_momentum_is_bias_corrected_rmsprop() -> None:
    rms = chain(
        ratio(identity(), chain(b.ema_of_squares(0.99), b.bias_correction(0.99), b.root(1e-8))),
        b.scale_by_learning_rate(),
    )
    a = _final(lambda ps: ours.ChainOptimizer(ps, rms, lr=1e-2))
    ref = _final(lambda ps: torch.optim.Adam(ps, lr=1e-2, betas=(0.0, 0.99)))
    assert max_relative_difference(a, ref) < 1e-12


def test_l2_penalty_and_decoupled_decay_coincide_for_plain_sgd() -> None:
    coupled = chain(b.add_l2_penalty(0.1), b.scale_by_learning_rate())
    decoupled = chain(b.add_decayed_weights(0.1), b.scale_by_learning_rate())
    a = _final(lambda ps: ours.ChainOptimizer(ps, coupled, lr=0.05))
    c = _final(lambda ps: ours.ChainOptimizer(ps, decoupled, lr=0.05))
    assert max_relative_difference(a, c) < 1e-14


def test_l2_penalty_and_decoupled_decay_differ_under_adam() -> None:
    a = _final(lambda ps: ours.Adam(ps, lr=1e-2, weight_decay=0.1))
    w = _final(lambda ps: ours.AdamW(ps, lr=1e-2, weight_decay=0.1))
    assert max_relative_difference(a, w) > 1e-4


def test_lion_with_zero_betas_is_sign_sgd() -> None:
    a = _final(lambda ps: ours.Lion(ps, lr=1e-3, betas=(0.0, 0.0)))
    s = _final(
        lambda ps: ours.ChainOptimizer(ps, chain(b.sign(), b.scale_by_learning_rate()), lr=1e-3)
    )
    assert max_relative_difference(a, s) == 0.0


def test_momentum_is_the_lectures_velocity_form() -> None:
    """v_t = lambda v_{t-1} - eta g_t; theta_t = theta_{t-1} + v_t, written out by hand."""
    lam, eta = 0.9, 0.05
    with default_dtype(torch.float64):
        by_hand = make_model()
        x = torch.linspace(-1, 1, 48).reshape(8, 6)
        velocity = [torch.zeros_like(p) for p in by_hand.parameters()]
        ours_model = clone(by_hand)
        opt = ours.Momentum(ours_model.parameters(), lr=eta, momentum=lam)
        for _ in range(30):
            for model in (by_hand, ours_model):
                model.zero_grad()
                (model(x) ** 2).mean().backward()
            with torch.no_grad():
                for p, v in zip(by_hand.parameters(), velocity, strict=True):
                    assert p.grad is not None
                    v.mul_(lam).sub_(eta * p.grad)
                    p.add_(v)
            opt.step()
    assert max_relative_difference(ours_model, by_hand) < 1e-12


@pytest.mark.parametrize("beta2", [0.99, 0.999, 0.9999])
def test_adam_first_step_with_and_without_bias_correction(beta2: float) -> None:
    """Corrected: |step| = lr (for eps -> 0). Uncorrected: lr (1 - beta1) / sqrt(1 - beta2)."""
    lr, beta1 = 1e-3, 0.9
    grad = torch.tensor([0.3, -2.0, 5e-3], dtype=torch.float64)
    uncorrected = chain(
        ratio(b.ema(beta1), chain(b.ema_of_squares(beta2), b.root(0.0))),
        b.scale_by_learning_rate(),
    )
    for transform, expected in (
        (None, lr),
        (uncorrected, lr * (1 - beta1) / math.sqrt(1 - beta2)),
    ):
        param = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
        opt = (
            ours.Adam([param], lr=lr, betas=(beta1, beta2), eps=0.0)
            if transform is None
            else ours.ChainOptimizer([param], transform, lr=lr)
        )
        param.grad = grad.clone()
        opt.step()
        expected_step = -expected * torch.sign(grad)
        torch.testing.assert_close(param.detach(), expected_step, rtol=1e-12, atol=0)


def test_rmsprop_first_step_is_lr_over_root_one_minus_alpha() -> None:
    lr, alpha = 1e-2, 0.99
    param = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = ours.RMSprop([param], lr=lr, alpha=alpha, eps=0.0)
    param.grad = torch.tensor([4.0, -0.01], dtype=torch.float64)
    opt.step()
    expected = -lr / math.sqrt(1 - alpha) * torch.tensor([1.0, -1.0], dtype=torch.float64)
    torch.testing.assert_close(param.detach(), expected, rtol=1e-12, atol=0)


def test_readme_rmsprop_with_nesterov_runs_and_matches_its_formula() -> None:
    """RMSProp + Nesterov composed in a few lines equals the update written by hand."""
    transform = chain(
        ratio(identity(), chain(b.ema_of_squares(0.9), b.root(1e-8))),
        b.trace(0.5, 0.0, nesterov=True),
        b.scale_by_learning_rate(),
    )
    param = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = ours.ChainOptimizer([param], transform, lr=0.1)
    grads = [torch.tensor([1.0, -2.0]), torch.tensor([0.5, 1.0])]
    v = torch.zeros(2, dtype=torch.float64)
    buf = torch.zeros(2, dtype=torch.float64)
    expected = torch.zeros(2, dtype=torch.float64)
    for t, g in enumerate(grads, start=1):
        g = g.double()
        v = 0.9 * v + 0.1 * g * g
        r = g / (v.sqrt() + 1e-8)
        buf = r if t == 1 else 0.5 * buf + r
        expected = expected - 0.1 * (r + 0.5 * buf)
        param.grad = g.clone()
        opt.step()
    torch.testing.assert_close(param.detach(), expected, rtol=1e-12, atol=0)
