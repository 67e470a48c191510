"""Typed experiment settings: every setting declares its type and range, and is checked.

An experiment's configuration is a frozen dataclass derived from :class:`ExperimentConfig`;
each field's type is annotated with a :class:`Rule` that says what values it accepts::

    @dataclass(frozen=True)
    class DepthConfig(ExperimentConfig):
        lr: Annotated[float, LEARNING_RATE]
        epochs: Annotated[int, Int(1, 10_000)]

Values from the command line (``--set lr=0.1``, ``--grid lr=0.1,1``) and from Python
(``run_experiment(..., overrides={"lr": 0.1})``) go through the same rules: a bad value raises
:class:`SettingError` with one line naming the setting and what it allows, before anything is
trained or written. A rule also normalises what it accepts (an integer learning rate becomes a
float, a tuple a list), so two spellings of the same value give the same configuration hash.

Ranges guard against values that cannot work (a negative step count, a NaN rate) or that would
exhaust the machine (a 10^11-dimensional problem); they are wide enough for every study the
experiments are meant for.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

__all__ = [
    "Bool",
    "Choice",
    "ExperimentConfig",
    "Float",
    "Int",
    "ListOf",
    "MapOf",
    "Optional",
    "Pair",
    "Record",
    "Rule",
    "SettingError",
    "Text",
]

_Config = TypeVar("_Config", bound="ExperimentConfig")


class SettingError(ValueError):
    """A setting's value is not allowed; the message names the setting and what it allows."""


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Rule:
    """What values one setting accepts; :meth:`check` returns the normalised value."""

    def describe(self) -> str:
        """What the rule allows, as a phrase ("an integer from 1 to 100")."""
        raise NotImplementedError

    def check(self, value: Any, where: str) -> Any:
        """``value`` normalised, or :class:`SettingError` naming ``where`` (the setting)."""
        raise NotImplementedError

    def _fail(self, value: Any, where: str) -> SettingError:
        return SettingError(f"setting {where!r}: expected {self.describe()}, got {_shown(value)}")


def _number_text(value: float) -> str:
    return f"{value:g}"


@dataclass(frozen=True)
class Int(Rule):
    """An integer ``low <= n <= high`` (booleans and floats are refused)."""

    low: int
    high: int

    def describe(self) -> str:
        return f"an integer from {self.low} to {self.high}"

    def check(self, value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(value, where)
        if not self.low <= value <= self.high:
            raise self._fail(value, where)
        return value


@dataclass(frozen=True)
class Float(Rule):
    """A finite number in ``[low, high]``; ``low_open``/``high_open`` exclude the ends."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def describe(self) -> str:
        left = "(" if self.low_open else "["
        right = ")" if self.high_open else "]"
        return (
            f"a finite number in {left}{_number_text(self.low)}, {_number_text(self.high)}{right}"
        )

    def check(self, value: Any, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._fail(value, where)
        number = float(value)
        if not math.isfinite(number):
            raise self._fail(value, where)
        above = number > self.low if self.low_open else number >= self.low
        below = number < self.high if self.high_open else number <= self.high
        if not (above and below):
            raise self._fail(value, where)
        return number


@dataclass(frozen=True)
class Bool(Rule):
    """``true`` or ``false``."""

    def describe(self) -> str:
        return "true or false"

    def check(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise self._fail(value, where)
        return value


@dataclass(frozen=True)
class Text(Rule):
    """A non-empty text of at most ``max_length`` characters."""

    max_length: int = 100

    def describe(self) -> str:
        return f"a non-empty text of at most {self.max_length} characters"

    def check(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip() or len(value) > self.max_length:
            raise self._fail(value, where)
        return value


@dataclass(frozen=True)
class Choice(Rule):
    """One of the listed texts."""

    options: tuple[str, ...]

    def describe(self) -> str:
        return "one of " + ", ".join(self.options)

    def check(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or value not in self.options:
            raise self._fail(value, where)
        return value


@dataclass(frozen=True)
class Optional(Rule):
    """``null`` or a value that ``rule`` accepts."""

    rule: Rule

    def describe(self) -> str:
        return f"null or {self.rule.describe()}"

    def check(self, value: Any, where: str) -> Any:
        return None if value is None else self.rule.check(value, where)


@dataclass(frozen=True)
class ListOf(Rule):
    """A list of ``min_length`` to ``max_length`` items, each accepted by ``item``.

    With ``unique`` no item may appear twice (a repeated setting would run the same units
    twice and count them twice).
    """

    item: Rule
    min_length: int = 1
    max_length: int = 1000
    unique: bool = False

    def describe(self) -> str:
        distinct = "distinct " if self.unique else ""
        return (
            f"a list of {self.min_length} to {self.max_length} {distinct}items, "
            f"each {self.item.describe()}"
        )

    def check(self, value: Any, where: str) -> list[Any]:
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise self._fail(value, where)
        if not self.min_length <= len(value) <= self.max_length:
            raise self._fail(value, where)
        items = [self.item.check(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if self.unique:
            seen: list[Any] = []
            for v in items:
                if v in seen:
                    raise SettingError(f"setting {where!r}: {_shown(v)} is listed twice")
                seen.append(v)
        return items


@dataclass(frozen=True)
class Pair(Rule):
    """A list of exactly two items, the first accepted by ``first``, the second by ``second``."""

    first: Rule
    second: Rule

    def describe(self) -> str:
        return f"a pair [{self.first.describe()}; {self.second.describe()}]"

    def check(self, value: Any, where: str) -> list[Any]:
        if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
            raise self._fail(value, where)
        return [
            self.first.check(value[0], f"{where}[0]"),
            self.second.check(value[1], f"{where}[1]"),
        ]


@dataclass(frozen=True)
class MapOf(Rule):
    """A mapping from text keys (each accepted by ``key``) to values accepted by ``value``."""

    key: Rule
    value: Rule
    min_length: int = 1
    max_length: int = 100

    def describe(self) -> str:
        return (
            f"a mapping of {self.min_length} to {self.max_length} entries from "
            f"{self.key.describe()} to {self.value.describe()}"
        )

    def check(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, Mapping) or not (self.min_length <= len(value) <= self.max_length):
            raise self._fail(value, where)
        return {
            self.key.check(k, f"{where} (a key)"): self.value.check(v, f"{where}.{k}")
            for k, v in value.items()
        }


@dataclass(frozen=True)
class Record(Rule):
    """A mapping with named entries: every ``required`` one, any of the ``optional`` ones."""

    required: Mapping[str, Rule] = field(default_factory=dict)
    optional: Mapping[str, Rule] = field(default_factory=dict)

    def describe(self) -> str:
        parts = []
        if self.required:
            parts.append("entries " + ", ".join(self.required))
        if self.optional:
            parts.append("optionally " + ", ".join(self.optional))
        return "a mapping with " + (" and ".join(parts) if parts else "no entries")

    def check(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise self._fail(value, where)
        unknown = [k for k in value if k not in self.required and k not in self.optional]
        missing = [k for k in self.required if k not in value]
        if unknown or missing:
            named = [f"unknown {', '.join(map(str, unknown))}"] if unknown else []
            named += [f"missing {', '.join(missing)}"] if missing else []
            error = self._fail(value, where)
            raise SettingError(f"{error} ({'; '.join(named)})")
        rules = {**self.required, **self.optional}
        return {k: rules[k].check(v, f"{where}.{k}") for k, v in value.items()}


#: The number of seeds an experiment runs by default (``--seeds`` overrides it).
SEEDS = Int(1, 1000)


@dataclass(frozen=True)
class ExperimentConfig:
    """Base of the experiments' typed, frozen configurations.

    Every field's type must be ``Annotated[type, rule]``; construction checks every value
    against its rule and stores the normalised value, then calls :meth:`check_together` for
    rules that relate several settings. A subclass names its experiment in ``experiment``
    (used in error messages).
    """

    experiment: ClassVar[str] = "experiment"

    def __post_init__(self) -> None:
        try:
            for name, rule in self.rules().items():
                object.__setattr__(self, name, rule.check(getattr(self, name), name))
            self.check_together()
        except SettingError as error:
            raise SettingError(f"{self.experiment}: {error}") from None

    def check_together(self) -> None:
        """Check rules that relate several settings; raise :class:`SettingError` (its message
        starts ``setting 'NAME': ...``; the experiment's name is put in front)."""

    @classmethod
    def rules(cls) -> dict[str, Rule]:
        """Each setting's name and rule, in declaration order."""
        return dict(_rules_of(cls))

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON values (what ``results.json`` records)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def with_overrides(self: _Config, overrides: Mapping[str, Any]) -> _Config:
        """A copy with ``overrides`` applied, every value checked.

        Raises:
            SettingError: an unknown setting, or a value its rule refuses.
        """
        rules = self.rules()
        for key in overrides:
            if key not in rules:
                known = ", ".join(rules)
                raise SettingError(
                    f"{self.experiment} has no setting {key!r}; its settings: {known}"
                )
        return dataclasses.replace(self, **dict(overrides))


_RULES: dict[type, tuple[tuple[str, Rule], ...]] = {}


def _rules_of(cls: type[ExperimentConfig]) -> tuple[tuple[str, Rule], ...]:
    # Resolving the annotations (strings under `from __future__ import annotations`) once per
    # class; every construction and override reads them.
    if cls in _RULES:
        return _RULES[cls]
    hints = typing.get_type_hints(cls, include_extras=True)
    rules = []
    for f in dataclasses.fields(cls):
        found = [m for m in getattr(hints[f.name], "__metadata__", ()) if isinstance(m, Rule)]
        if len(found) != 1:
            raise TypeError(
                f"{cls.__name__}.{f.name} must be annotated Annotated[type, rule] "
                "with exactly one rule"
            )
        rules.append((f.name, found[0]))
    _RULES[cls] = tuple(rules)
    return _RULES[cls]


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# Rules shared by the experiments. Bounds keep one run within a workstation's memory and time
# while leaving room for every study the experiments are meant for.
def _dataset_names() -> tuple[str, ...]:
    from dltricks.data.registry import DATASET_NAMES

    return DATASET_NAMES


def _activation_names() -> tuple[str, ...]:
    from dltricks.nn.registry import activation_names

    return activation_names()


def _init_names() -> tuple[str, ...]:
    from dltricks.nn.init import INIT_SCHEMES

    return ("auto", *INIT_SCHEMES)


def _optimizer_names() -> tuple[str, ...]:
    from dltricks.lab.training import LAB_OPTIMIZERS

    return tuple(LAB_OPTIMIZERS)


DATASET = Choice(_dataset_names())
ACTIVATION = Choice(_activation_names())
INIT = Choice(_init_names())
OPTIMIZER = Choice(_optimizer_names())
LEARNING_RATE = Float(0.0, 1e4, low_open=True)
EPOCHS = Int(1, 10_000)
BATCH_SIZE = Int(1, 1_000_000)
#: Units per hidden layer and hidden layers: 4096 x 4096 x 100 float32 weights are 6.7 GB.
WIDTH = Int(1, 4096)
DEPTH = Int(1, 100)
#: A probability or a fraction in [0, 1).
FRACTION = Float(0.0, 1.0, high_open=True)
#: An exponential-average coefficient (beta1, beta2, momentum) in [0, 1).
BETA = Float(0.0, 1.0, high_open=True)
