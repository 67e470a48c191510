"""The report page: one self-contained HTML file (inline CSS, no script, no network).

The page is rendered from Jinja2 templates (``templates/``) with autoescaping on, so every
text that comes from results (claims, findings, setting values) is escaped by the engine, not
at each call site. The views below are what the templates see.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jinja2

from dltricks.lab.registry import TRICKS
from dltricks.lab.report.story import TRICK_INTROS
from dltricks.lab.report.sweeps import SweepView
from dltricks.lab.report.tables import Table
from dltricks.lab.verdicts import VERDICTS
from dltricks.palette import OPTIMIZER_COLOURS

__all__ = [
    "DataLink",
    "ExperimentView",
    "FigureView",
    "SectionView",
    "VerdictView",
    "anchor_of",
    "render_page",
]


def anchor_of(trick: str) -> str:
    """The id of a trick's section."""
    return trick.replace(" ", "-")


@dataclass(frozen=True)
class FigureView:
    """A figure: its file (relative to the page) and what it shows, in words."""

    src: str
    alt: str
    caption: str


@dataclass(frozen=True)
class DataLink:
    """A file of the experiment's data beside the page."""

    label: str
    href: str


@dataclass(frozen=True)
class VerdictView:
    """One claim's verdict, with where its experiment is on the page."""

    claim: str
    verdict: str
    reason: str
    rule: str
    trick: str
    experiment: str
    question: str
    anchor: str

    @property
    def slug(self) -> str:
        return self.verdict.replace(" ", "-") if self.verdict in VERDICTS else "none"


@dataclass
class ExperimentView:
    """What the page shows of one experiment in one section."""

    name: str
    question: str
    claim: str
    source: str
    finding: str
    figures: list[FigureView]
    table: Table
    setup: dict[str, str]
    reproduce: str
    verdicts: list[VerdictView] = field(default_factory=list)
    data: list[DataLink] = field(default_factory=list)
    error: str | None = None
    anchor: str = ""

    def __post_init__(self) -> None:
        self.anchor = self.anchor or self.name


@dataclass
class SectionView:
    trick: str
    experiments: list[ExperimentView] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return anchor_of(self.trick)

    @property
    def title(self) -> str:
        return self.trick.capitalize()

    @property
    def intro(self) -> str:
        return TRICK_INTROS.get(self.trick, "")

    @property
    def verdicts(self) -> list[VerdictView]:
        return [v for e in self.experiments for v in e.verdicts]


SWEEPS_INTRO = (
    "Every sweep store in the runs folder (dltricks sweep writes sweep-NAME.sqlite): each "
    "grid of settings x seeds, its runs as the store records them, and the command that "
    "reproduces it (runs already done in the store are skipped)."
)


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("dltricks.lab.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_page(
    sections: list[SectionView],
    *,
    title: str,
    meta: str,
    sweeps: list[SweepView] | None = None,
) -> str:
    """The whole HTML document: the verdicts, the trick sections in the lecture's order, then a
    Sweeps section if there are any."""
    context: dict[str, Any] = {
        "title": title,
        "meta": meta,
        "sections": sections,
        "sweeps": sweeps or [],
        "sweeps_intro": SWEEPS_INTRO,
        "verdict_names": VERDICTS,
        "colours": OPTIMIZER_COLOURS,
        "adaptive": anchor_of("adaptive learning rate"),
        "tricks": TRICKS,
        "anchors": {e.anchor for s in sections for e in s.experiments},
    }
    return _environment().get_template("page.html.j2").render(context)
