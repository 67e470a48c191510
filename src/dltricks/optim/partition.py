"""Different transformations for different parameters, as one optimizer.

optax's ``multi_transform``, torch-native: every parameter gets a label, and each label its
own transformation. The canonical use is Muon for the hidden matrices and AdamW for the rest
(embeddings, biases, norms, the output head)::

    from dltricks.optim import ChainOptimizer, adam_direction, chain, group_labels
    from dltricks.optim import muon_update, partition
    from dltricks.optim.blocks import add_decayed_weights, scale_by_learning_rate

    hidden = [p for name, p in model.named_parameters() if p.ndim == 2 and "head" not in name]
    rest = [p for p in model.parameters() if all(p is not h for h in hidden)]
    labels = group_labels(groups := [
        {"params": hidden, "label": "muon", "lr": 0.02, "weight_decay": 0.1},
        {"params": rest, "label": "adamw", "lr": 3e-4, "weight_decay": 0.01},
    ])
    adamw = chain(adam_direction(), add_decayed_weights(), scale_by_learning_rate())
    transform = partition(labels, {"muon": muon_update(), "adamw": adamw})
    optimizer = ChainOptimizer(groups, transform, momentum=0.95, betas=(0.9, 0.999), eps=1e-8)

A partition is per tensor (it reads which parameter it is given); on the fast path each label's
transformation gets buckets of its own, fused as that chain alone would be (Muon's momentum and
step kernels around Newton-Schulz, AdamW's one kernel).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeAlias

from torch import Tensor

from dltricks.optim.base import Hyper, State, Transform

Labels: TypeAlias = Callable[[Tensor], str] | Mapping[Tensor, str]
"""How a partition labels parameters: a function of the parameter (its shape, its dtype...),
or a mapping from parameter objects to labels (see :func:`group_labels`)."""


def _describe(param: Tensor) -> str:
    return f"a parameter of shape {tuple(param.shape)}"


def partition(labels: Labels, transforms: Mapping[str, Transform]) -> Transform:
    """Send each parameter through the transformation of its label.

    Math::

        u' = T_{label(theta)}(u)        with the state of T_{label(theta)} only

    ``labels``: a function ``param -> label`` (``lambda p: "muon" if p.ndim == 2 else
    "adamw"``) or a mapping ``{param: label}`` keyed by the parameter objects themselves
    (:func:`group_labels` makes one from param groups). ``transforms``: ``{label:
    Transform}``. A parameter whose label has no transformation, or that a mapping does not
    label, raises ``ValueError`` naming it. Two transformations may use the same state names
    (a parameter only ever holds the state of its own).
    """
    if not isinstance(transforms, Mapping) or not transforms:
        raise ValueError("partition needs a non-empty mapping {label: Transform}")
    for label, transform in transforms.items():
        if not isinstance(label, str):
            raise ValueError(f"partition labels are strings, got {label!r}")
        if not isinstance(transform, Transform):
            raise ValueError(
                f"partition: the transform for label {label!r} is a "
                f"{type(transform).__name__}, not a dltricks.optim.Transform"
            )
    known = ", ".join(sorted(transforms))
    label_of = _labeller(labels, transforms, known)

    def route(param: Tensor) -> tuple[str, Transform]:
        label = label_of(param)
        transform = transforms.get(label)
        if transform is None:
            raise ValueError(
                f"partition: {_describe(param)} has label {label!r}, which has no "
                f"transform (labels with one: {known})"
            )
        return label, transform

    def pick(param: Tensor) -> Transform:
        return route(param)[1]

    def init(param: Tensor, hyper: Hyper) -> State:
        return pick(param).init(param, hyper)

    def update(u: Tensor, state: Mapping[str, Tensor], param: Tensor, hyper: Hyper) -> Any:
        return pick(param).update(u, state, param, hyper)

    keys: list[str] = []
    for transform in transforms.values():
        keys += [key for key in transform.state_keys if key not in keys]
    parts = ", ".join(f"{label}: {t.name}" for label, t in transforms.items())
    return Transform(
        name=f"partition({parts})",
        init=init,
        update=update,
        state_keys=tuple(keys),
        elementwise=False,
        per_tensor=all(t.declared for t in transforms.values()),
        route=route,
    )


def _labeller(
    labels: Labels, transforms: Mapping[str, Transform], known: str
) -> Callable[[Tensor], str]:
    if isinstance(labels, Mapping):
        by_id: dict[int, str] = {}
        keep: list[Tensor] = []  # holds the parameters so that their ids stay theirs
        for param, label in labels.items():
            if not isinstance(param, Tensor):
                raise ValueError(
                    "partition: a labels mapping is keyed by parameters, got "
                    f"{type(param).__name__}"
                )
            if label not in transforms:
                raise ValueError(
                    f"partition: {_describe(param)} has label {label!r}, which has no "
                    f"transform (labels with one: {known})"
                )
            by_id[id(param)] = label
            keep.append(param)

        def from_mapping(param: Tensor) -> str:
            label = by_id.get(id(param))
            if label is None:
                raise ValueError(
                    f"partition: {_describe(param)} has no label; the labels mapping must "
                    "name every parameter the optimizer steps"
                )
            return label

        from_mapping.keep = keep  # type: ignore[attr-defined]
        return from_mapping
    if callable(labels):
        return labels
    raise ValueError(
        f"partition labels must be a function of the parameter or a mapping {{param: label}}, "
        f"got {type(labels).__name__}"
    )


def group_labels(param_groups: Iterable[Mapping[str, Any]], key: str = "label") -> dict[Any, str]:
    """``{param: group[key]}`` for every parameter of ``param_groups``: a partition by param
    group. Give each group's ``params`` as a list (or a tensor), since they are read here
    before the optimizer reads them::

        groups = [{"params": hidden, "label": "muon"}, {"params": rest, "label": "adamw"}]
        transform = partition(group_labels(groups), {"muon": ..., "adamw": ...})
        optimizer = ChainOptimizer(groups, transform, lr=...)

    The extra ``key`` entry rides along in the optimizer's param groups, as torch allows.
    """
    mapping: dict[Any, str] = {}
    for index, group in enumerate(param_groups):
        if not isinstance(group, Mapping) or "params" not in group:
            raise ValueError(f"param group {index} is not a dict with 'params'")
        if key not in group:
            raise ValueError(f"param group {index} has no {key!r} entry to partition by")
        label = group[key]
        if not isinstance(label, str):
            raise ValueError(f"param group {index}: {key!r} must be a string, got {label!r}")
        params = group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif not isinstance(params, list | tuple):
            raise ValueError(
                f"param group {index}: give 'params' as a list, not a "
                f"{type(params).__name__} (group_labels reads it before the optimizer does)"
            )
        for param in params:
            if param in mapping:
                raise ValueError(f"param group {index}: {_describe(param)} is in two groups")
            mapping[param] = label
    return mapping
