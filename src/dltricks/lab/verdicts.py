"""Verdicts: whether a claim held, decided by its experiment from the measured numbers.

Each experiment states, for each claim it tests, a rule over its results (written in the
verdict's ``rule``) and applies it to what it measured; the runner stores the verdicts in
``results.json`` and the report only shows them. A claim made of several checks (one per
model, per activation, per setting...) is ``reproduced`` when every check holds, ``partly
reproduced`` when some do and ``not reproduced`` when none does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

REPRODUCED = "reproduced"
PARTLY = "partly reproduced"
NOT_REPRODUCED = "not reproduced"
#: The three verdicts, best first.
VERDICTS: tuple[str, ...] = (REPRODUCED, PARTLY, NOT_REPRODUCED)


@dataclass(frozen=True)
class Verdict:
    """Whether one claim held at our scale.

    Attributes:
        claim: the claim, in one sentence.
        verdict: one of :data:`VERDICTS`.
        reason: one line with the numbers that decided it.
        rule: how the numbers decide, stated before looking at them.
        trick: the report section the claim belongs to (None: the experiment's first).
    """

    claim: str
    verdict: str
    reason: str
    rule: str
    trick: str | None = None

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}; got {self.verdict!r}")
        for name in ("claim", "reason", "rule"):
            if not getattr(self, name).strip():
                raise ValueError(f"a verdict needs a non-empty {name}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def from_checks(checks: Iterable[bool]) -> str:
    """``reproduced`` if every check holds, ``partly reproduced`` if some, else ``not``.

    No checks at all (nothing was measured) is ``not reproduced``.
    """
    values = [bool(c) for c in checks]
    if values and all(values):
        return REPRODUCED
    return PARTLY if any(values) else NOT_REPRODUCED


def judged(
    claim: str,
    checks: dict[str, bool],
    *,
    rule: str,
    measured: str,
    trick: str | None = None,
) -> Verdict:
    """The verdict of ``claim`` from named ``checks``; the reason lists those that failed."""
    verdict = from_checks(checks.values())
    failed = [name for name, ok in checks.items() if not ok]
    if not checks:
        reason = "nothing was measured for it"
    elif not failed or len(checks) == 1:
        reason = measured
    else:
        held = len(checks) - len(failed)
        reason = f"{measured} (holds for {held} of {len(checks)}; not for {', '.join(failed)})"
    return Verdict(claim, verdict, reason, rule, trick)


def finite(value: Any) -> bool:
    """Whether ``value`` is a finite number (results store non-finite numbers as null)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_verdicts(verdicts: Sequence[Any]) -> list[dict[str, Any]]:
    """The verdicts as stored in ``results.json``; TypeError for anything but Verdicts."""
    bad = [type(v).__name__ for v in verdicts if not isinstance(v, Verdict)]
    if bad:
        raise TypeError(f"an experiment's judge must return Verdicts, got {', '.join(bad)}")
    return [v.to_dict() for v in verdicts]
