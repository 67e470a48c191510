"""Request bodies of the playground's API, checked field by field.

Every field has a :class:`~dltricks.lab.settings.Rule` (the same rules the lab's typed settings
use) and a default; :func:`parse_fields` applies them to a JSON object and raises
:class:`RequestError` naming the first field it refuses, which the app answers with 422. An
unknown field is refused too, so a misspelt ``"learning_rate"`` does not silently run at the
default.

Bounds keep one request within what a shared workstation can serve: they are the playground's,
tighter than the lab's (a browser user may type any number).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Imported where used: dltricks.lab imports torch, which the app loads after start-up.
    from dltricks.lab.settings import Rule, SettingError

__all__ = ["Field", "RequestError", "check_value", "parse_fields"]


class RequestError(ValueError):
    """A request is refused; ``field`` names the offending field (``None``: the whole body)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Field:
    """A request field: its rule and its default (``required`` fields have none)."""

    rule: Rule
    default: Any = None
    required: bool = False


def _reworded(error: SettingError) -> str:
    # The lab's rules speak of settings; the API's clients send fields.
    text = str(error)
    return "field " + text[len("setting ") :] if text.startswith("setting ") else text


def check_value(rule: Rule, value: Any, key: str, what: str) -> Any:
    """``value`` of field ``key`` normalised by ``rule``, or :class:`RequestError` naming it."""
    from dltricks.lab.settings import SettingError

    try:
        return rule.check(value, key)
    except SettingError as error:
        raise RequestError(f"{what}: {_reworded(error)}", key) from None


def parse_fields(body: Any, fields: Mapping[str, Field], what: str) -> dict[str, Any]:
    """``body`` checked against ``fields``: every field present, normalised, defaults filled.

    Raises:
        RequestError: ``body`` is not an object, a field is unknown or missing, or a value is
            outside its rule (the message names the field and what it allows).
    """
    if not isinstance(body, Mapping):
        raise RequestError(f"{what}: the body must be a JSON object, got {type(body).__name__}")
    for key in body:
        if key not in fields:
            known = ", ".join(fields)
            raise RequestError(f"{what}: unknown field {key!r}; fields: {known}", str(key))
    out: dict[str, Any] = {}
    for key, spec in fields.items():
        if key not in body:
            if spec.required:
                raise RequestError(f"{what}: field {key!r} is required", key)
            out[key] = spec.default
            continue
        out[key] = check_value(spec.rule, body[key], key, what)
    return out
