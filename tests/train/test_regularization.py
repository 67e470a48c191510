"""L1/L2 penalties against hand-derived gradients and the lecture's SGD update."""

from __future__ import annotations

import torch
from torch import nn

from dltricks.data import make_split_dataset
from dltricks.train import (
    TrainConfig,
    fit,
    l1_penalty,
    l2_penalty,
    penalized_parameters,
)


def test_penalty_gradients_match_formulas() -> None:
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(4, 3, dtype=torch.float64))
    w.data[0, 0] = 0.0  # L1's subgradient at 0 is 0 (torch's sign)
    l2_penalty([w], 0.3).backward()
    torch.testing.assert_close(w.grad, 0.3 * w.detach(), rtol=0, atol=1e-15)
    w.grad = None
    l1_penalty([w], 0.2).backward()
    expected = 0.2 * torch.sign(w.detach())
    assert expected[0, 0] == 0
    torch.testing.assert_close(w.grad, expected, rtol=0, atol=0)
    # Values: (lambda / 2) sum w^2 and lambda sum |w|.
    torch.testing.assert_close(l2_penalty([w], 0.3), 0.15 * (w.detach() ** 2).sum())
    torch.testing.assert_close(l1_penalty([w], 0.2), 0.2 * w.detach().abs().sum())


def test_biases_not_penalised_by_default() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.PReLU(), nn.Linear(4, 2))
    chosen = penalized_parameters(model)
    assert [p.shape for p in chosen] == [torch.Size([4, 3]), torch.Size([2, 4])]
    assert len(penalized_parameters(model, include_biases=True)) == 5


def one_sgd_step(l1: float, l2: float, lr: float) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Run fit for one full-batch SGD step on a softmax-regression model; return W before/after."""
    torch.manual_seed(3)
    n, d, k = 30, 5, 3
    x = torch.randn(n, d)
    y = torch.arange(n) % k
    data = make_split_dataset(
        "lin", x.numpy(), y.numpy(), x.numpy(), y.numpy(), n_classes=k,
        standardize=False, val_fraction=0.0,
    )  # fmt: skip
    model = nn.Linear(d, k)
    before = {k_: v.detach().clone() for k_, v in model.state_dict().items()}
    config = TrainConfig(epochs=1, batch_size=None, l1=l1, l2=l2, shuffle=False)
    fit(model, lambda p: torch.optim.SGD(p, lr=lr), data, config, progress=False)
    return before, model.state_dict(), {"x": data.x_train, "y": data.y_train}


def softmax_regression_grad(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor):
    """dL/dW and dL/db of mean cross-entropy, in closed form: (softmax - onehot)^T x / n."""
    logits = x.double() @ w.double().T + b.double()
    p = torch.softmax(logits, dim=1)
    delta = p - nn.functional.one_hot(y, p.shape[1]).double()
    return delta.T @ x.double() / x.shape[0], delta.mean(0)


def test_sgd_with_l2_is_weight_decay_by_hand() -> None:
    lr, lam = 0.5, 0.1
    before, after, batch = one_sgd_step(0.0, lam, lr)
    w, b = before["weight"], before["bias"]
    gw, gb = softmax_regression_grad(w, b, batch["x"], batch["y"])
    # The lecture's update: w <- (1 - eta lambda) w - eta dL/dw; the bias is not decayed.
    torch.testing.assert_close(
        after["weight"].double(), (1 - lr * lam) * w.double() - lr * gw, rtol=0, atol=1e-6
    )
    torch.testing.assert_close(after["bias"].double(), b.double() - lr * gb, rtol=0, atol=1e-6)


def test_sgd_with_l1_by_hand() -> None:
    lr, lam = 0.5, 0.05
    before, after, batch = one_sgd_step(lam, 0.0, lr)
    w, b = before["weight"], before["bias"]
    gw, _ = softmax_regression_grad(w, b, batch["x"], batch["y"])
    expected = w.double() - lr * lam * torch.sign(w.double()) - lr * gw
    torch.testing.assert_close(after["weight"].double(), expected, rtol=0, atol=1e-6)


def test_l2_penalty_equals_torch_sgd_weight_decay() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 6)
    y = torch.arange(64) % 3
    data = make_split_dataset(
        "s", x.numpy(), y.numpy(), x.numpy(), y.numpy(), n_classes=3, val_fraction=0.0
    )
    torch.manual_seed(1)
    a = nn.Linear(6, 3, bias=False)
    b = nn.Linear(6, 3, bias=False)
    b.load_state_dict(a.state_dict())
    config = TrainConfig(epochs=3, batch_size=16, l2=0.2)
    fit(a, lambda p: torch.optim.SGD(p, lr=0.1), data, config, progress=False)
    plain = TrainConfig(epochs=3, batch_size=16)
    fit(b, lambda p: torch.optim.SGD(p, lr=0.1, weight_decay=0.2), data, plain, progress=False)
    torch.testing.assert_close(a.weight, b.weight, rtol=1e-6, atol=1e-7)


def test_penalty_recorded_in_history() -> None:
    # The record's penalty is (lambda / 2) ||W||^2 at the weights after the epoch.
    torch.manual_seed(3)
    n, d, k = 30, 5, 3
    x = torch.randn(n, d)
    y = torch.arange(n) % k
    data = make_split_dataset(
        "lin", x.numpy(), y.numpy(), x.numpy(), y.numpy(), n_classes=k,
        standardize=False, val_fraction=0.0,
    )  # fmt: skip
    model = nn.Linear(d, k)
    config = TrainConfig(epochs=1, batch_size=None, l2=0.4, shuffle=False)
    result = fit(model, lambda p: torch.optim.SGD(p, lr=0.1), data, config, progress=False)
    expected = 0.2 * float((model.weight.detach().double() ** 2).sum())
    assert abs(result.history[0].penalty - expected) < 1e-6
