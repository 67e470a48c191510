"""Small data and models shared by the trainer tests (kept tiny so the suite stays fast)."""

from __future__ import annotations

import torch
from torch import nn

from dltricks.data import SplitDataset, make_gaussian_mixture, make_split_dataset


def small_data(n: int = 240, n_features: int = 8, n_classes: int = 3) -> SplitDataset:
    x, y = make_gaussian_mixture(n + 60, n_features, n_classes, class_sep=1.5, seed=11)
    return make_split_dataset(
        "small", x[:n], y[:n], x[n:], y[n:], n_classes=n_classes, seed=0, val_fraction=0.25
    )


def small_mlp(seed: int = 0, dropout: float = 0.0, n_features: int = 8) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(n_features, 16), nn.Tanh()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers += [nn.Linear(16, 3)]
    return nn.Sequential(*layers)


def adam(params):
    return torch.optim.Adam(params, lr=0.01)


def states_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
