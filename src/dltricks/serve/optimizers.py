"""The optimizers the playground offers, with the hyperparameters each one has.

Every entry is one of the project's ``dltricks.optim`` classes (the same ones the lab and the
report use) with torch's defaults. The names follow the lab's ``optimizer`` setting
(:data:`dltricks.lab.training.LAB_OPTIMIZERS`) plus Adamax and NAdam. A request may set only
the hyperparameters its optimizer has: ``betas`` for SGD is refused, naming the field, rather
than ignored.

Runs are built with ``nonfinite="ignore"``: a diverging run is a result (the surface runner and
the trainer stop it and say so), not an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dltricks.lab.settings import Float, Pair, Rule
from dltricks.serve.fields import RequestError, check_value

if TYPE_CHECKING:
    import torch

__all__ = [
    "HYPERPARAMETERS",
    "OPTIMIZERS",
    "OptimizerEntry",
    "build_optimizer",
    "hyperparameters",
    "optimizer_catalogue",
]

_UNIT = Float(0.0, 1.0, high_open=True)
#: The rule of each hyperparameter a request may set (the lr has its own, per endpoint).
HYPERPARAMETERS: dict[str, Rule] = {
    "momentum": _UNIT,
    "betas": Pair(_UNIT, _UNIT),
    "eps": Float(0.0, 1.0, low_open=True),
    "alpha": _UNIT,
    "rho": _UNIT,
}


@dataclass(frozen=True)
class OptimizerEntry:
    """An optimizer on offer: its class's name in ``dltricks.optim``, the hyperparameters a
    request may set (name -> default) and the keywords fixed by the entry."""

    cls: str
    defaults: Mapping[str, Any]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    #: Hyperparameters whose rule is stricter than :data:`HYPERPARAMETERS`' (Nesterov needs
    #: momentum > 0).
    rules: Mapping[str, Rule] = field(default_factory=dict)

    def rule(self, name: str) -> Rule:
        return self.rules.get(name, HYPERPARAMETERS[name])


_BETAS = (0.9, 0.999)
OPTIMIZERS: dict[str, OptimizerEntry] = {
    "SGD": OptimizerEntry("SGD", {"momentum": 0.0}),
    "Momentum": OptimizerEntry("SGD", {"momentum": 0.9}),
    "Nesterov": OptimizerEntry(
        "SGD",
        {"momentum": 0.9},
        {"nesterov": True},
        {"momentum": Float(0.0, 1.0, low_open=True, high_open=True)},
    ),
    "AdaGrad": OptimizerEntry("Adagrad", {"eps": 1e-10}),
    "RMSProp": OptimizerEntry("RMSprop", {"alpha": 0.99, "eps": 1e-8, "momentum": 0.0}),
    "AdaDelta": OptimizerEntry("Adadelta", {"rho": 0.9, "eps": 1e-6}),
    "Adam": OptimizerEntry("Adam", {"betas": _BETAS, "eps": 1e-8}),
    "AdamW": OptimizerEntry("AdamW", {"betas": _BETAS, "eps": 1e-8}),
    "Adamax": OptimizerEntry("Adamax", {"betas": _BETAS, "eps": 1e-8}),
    "NAdam": OptimizerEntry("NAdam", {"betas": _BETAS, "eps": 1e-8}),
    "Lion": OptimizerEntry("Lion", {"betas": (0.9, 0.99)}),
}


def optimizer_catalogue() -> dict[str, dict[str, Any]]:
    """Each optimizer on offer with its hyperparameters and their defaults (``betas`` as a list,
    as JSON has it): ``{name: {"hyperparameters": {name: default}}}``."""
    return {
        name: {
            "hyperparameters": {
                key: list(value) if isinstance(value, tuple) else value
                for key, value in entry.defaults.items()
            }
        }
        for name, entry in OPTIMIZERS.items()
    }


def hyperparameters(name: str, given: Mapping[str, Any], what: str) -> dict[str, Any]:
    """The hyperparameters of optimizer ``name``: its defaults with ``given`` checked over them.

    ``given`` maps hyperparameter names to values or ``None`` (not given).

    Raises:
        RequestError: a hyperparameter the optimizer does not have, or a value out of range.
    """
    entry = OPTIMIZERS[name]
    out = dict(entry.defaults)
    for key, value in given.items():
        if value is None:
            continue
        if key not in entry.defaults:
            has = ", ".join(["lr", *entry.defaults])
            raise RequestError(
                f"{what}: field {key!r}: {name} has no {key}; its hyperparameters: {has}", key
            )
        out[key] = check_value(entry.rule(key), value, key, what)
    if "betas" in out:
        out["betas"] = tuple(out["betas"])
    return out


def build_optimizer(
    name: str,
    lr: float,
    settings: Mapping[str, Any],
    weight_decay: float = 0.0,
    *,
    fast: bool | None = None,
) -> Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]:
    """A ``params -> optimizer`` factory for optimizer ``name`` at ``lr`` with ``settings``.

    ``weight_decay`` is the optimizer's own (torch's meaning: decoupled for AdamW and Lion, an
    L2 gradient term for the others). ``fast`` is the optimizer's execution path (None: the
    library's choice by size; False: eager, the path a 2-vector takes anyway, without the fast
    path's per-step checks of its buckets).
    """
    from dltricks import optim

    entry = OPTIMIZERS[name]
    cls = getattr(optim, entry.cls)
    kwargs = {**settings, **entry.fixed, "weight_decay": weight_decay}

    def make(params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        optimizer: torch.optim.Optimizer = cls(
            params, lr=lr, nonfinite="ignore", fast=fast, **kwargs
        )
        return optimizer

    return make
