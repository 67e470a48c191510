"""The multilayer perceptron the lab builds its experiments from."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from dltricks.nn.dropout import AlphaDropout
from dltricks.nn.init import ActivationLike, _spec_for, init_layer_
from dltricks.nn.maxout import GroupMax, Maxout
from dltricks.nn.registry import get_activation

__all__ = ["MLP"]


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"MLP: {name} must be a positive integer, got {value!r}")
    return value


class MLP(nn.Module):
    """``depth`` hidden layers of ``width`` units with one activation, then a linear output.

    ``depth`` counts hidden layers: ``depth=1`` is ``in -> width -> out`` (two Linear
    layers); ``depth=10`` has 10 hidden Linear layers plus the output layer. Each hidden
    block is ``Linear -> activation [-> dropout]``.

    Args:
        activation: a name (:func:`get_activation`), an ``nn.Module`` class, or an instance
            (deep-copied per layer so PReLU slopes are not shared). ``"maxout"`` (or
            :class:`GroupMax`/:class:`Maxout`) makes each hidden layer a maxout layer with
            ``maxout_k`` pieces: a ``Linear(in, maxout_k * width)`` followed by
            ``GroupMax(maxout_k)``, so every hidden layer still has ``width`` outputs.
        init: ``"auto"`` (the activation's :func:`recommended_init`), ``"he"``, ``"lecun"``,
            ``"xavier"`` or ``"torch"`` (torch's default). Applied to every Linear layer,
            the output layer included, as in the papers' depth experiments.
        dropout: drop probability after each hidden activation, in ``[0, 1)``; SELU nets
            get :class:`AlphaDropout`, others ``nn.Dropout``.
        bias: whether the Linear layers have biases.
        activation_kwargs: keyword arguments for a named activation, e.g.
            ``{"negative_slope": 0.1}``.
        generator: draws the initial weights (and alpha-dropout masks) reproducibly.

    Attributes ``hidden_layers`` (the hidden ``nn.Linear`` layers, input side first),
    ``output_layer``, ``linear_layers`` (hidden + output) and ``activations`` expose the
    structure to diagnostics. Inputs with more than 2 dims are flattened after the batch dim.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        width: int,
        depth: int,
        activation: ActivationLike = "relu",
        init: str = "auto",
        dropout: float = 0.0,
        *,
        bias: bool = True,
        maxout_k: int = 2,
        activation_kwargs: Mapping[str, Any] | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.in_features = _positive_int("in_features", in_features)
        self.out_features = _positive_int("out_features", out_features)
        self.width = _positive_int("width", width)
        self.depth = _positive_int("depth", depth)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
            raise ValueError(f"MLP: dropout must be a float in [0, 1), got {dropout!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MLP: dropout must be in [0, 1), got {dropout!r}")
        self.dropout = float(dropout)

        template = self._activation_template(activation, dict(activation_kwargs or {}), maxout_k)
        pieces = template.k if isinstance(template, GroupMax) else 1
        spec = _spec_for(init, template)
        self.init = init

        modules: list[nn.Module] = []
        hidden_idx: list[int] = []
        act_idx: list[int] = []
        fan_in = self.in_features
        for _ in range(self.depth):
            hidden_idx.append(len(modules))
            modules.append(nn.Linear(fan_in, pieces * self.width, bias=bias))
            act_idx.append(len(modules))
            modules.append(copy.deepcopy(template))
            if self.dropout > 0.0:
                if isinstance(template, nn.SELU):
                    modules.append(AlphaDropout(self.dropout, generator=generator))
                else:
                    modules.append(nn.Dropout(self.dropout))
            fan_in = self.width
        self._output_idx = len(modules)
        modules.append(nn.Linear(fan_in, self.out_features, bias=bias))
        self.net = nn.Sequential(*modules)
        self._hidden_idx = tuple(hidden_idx)
        self._act_idx = tuple(act_idx)
        for layer in self.linear_layers:
            init_layer_(layer, spec.scheme, spec.gain, generator=generator)

    @staticmethod
    def _activation_template(
        activation: ActivationLike, kwargs: dict[str, Any], maxout_k: int
    ) -> nn.Module:
        if isinstance(activation, str):
            if activation.lower() == "maxout":
                kwargs.setdefault("k", maxout_k)
            return get_activation(activation, **kwargs)
        if isinstance(activation, Maxout) or activation is Maxout:
            return GroupMax(activation.k if isinstance(activation, Maxout) else maxout_k)
        if activation is GroupMax:
            return GroupMax(kwargs.pop("k", maxout_k), **kwargs)
        if isinstance(activation, nn.Module):
            if kwargs:
                raise ValueError("MLP: activation_kwargs only apply to a name or a class")
            return activation
        if isinstance(activation, type) and issubclass(activation, nn.Module):
            return activation(**kwargs)
        raise ValueError(
            f"MLP: activation must be a name, an nn.Module class or instance, got {activation!r}"
        )

    @property
    def hidden_layers(self) -> list[nn.Linear]:
        """The hidden Linear layers, input side first (``depth`` of them)."""
        return [self.net[i] for i in self._hidden_idx]  # type: ignore[misc]

    @property
    def output_layer(self) -> nn.Linear:
        """The final Linear layer (no activation after it)."""
        return self.net[self._output_idx]  # type: ignore[return-value]

    @property
    def linear_layers(self) -> list[nn.Linear]:
        """All Linear layers: the hidden ones, then the output layer."""
        return [*self.hidden_layers, self.output_layer]

    @property
    def activations(self) -> list[nn.Module]:
        """The activation module after each hidden layer."""
        return [self.net[i] for i in self._act_idx]

    def forward(self, input: Tensor) -> Tensor:
        if input.ndim > 2:
            input = input.flatten(1)
        return self.net(input)
