"""The report page: one self-contained HTML file (inline CSS, no script, no network)."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

from dltricks.lab.report.sweeps import SweepView
from dltricks.lab.report.tables import Table

TRICK_INTROS: dict[str, str] = {
    "adaptive learning rate": (
        "One learning rate for every parameter and every step is rarely right. AdaGrad divides "
        "each parameter's step by the root of its summed squared gradients; RMSProp uses a "
        "moving average instead; Momentum adds inertia; Adam = RMSProp + Momentum."
    ),
    "new activation functions": (
        "Sigmoid's derivative is at most 1/4, so gradients shrink layer by layer and deep "
        "sigmoid networks stop learning. ReLU and its relatives (Leaky ReLU, PReLU, SELU, "
        "Maxout) keep gradients alive, given the right initialisation."
    ),
    "early stopping": (
        "Training loss keeps falling while validation loss turns up: stop at the validation "
        "minimum and keep those weights."
    ),
    "regularization": (
        "Penalise large weights (L2: w <- (1 - eta lambda) w - eta dL/dw; L1), or decay them "
        "directly (decoupled weight decay), so the network generalises."
    ),
    "dropout": (
        "Drop units at random while training: training accuracy falls, test accuracy should rise."
    ),
    "error surfaces": (
        "Training is a ball rolling on an error surface with plateaus, local minima and saddle "
        "points; momentum is the ball's inertia that may carry it through."
    ),
}

STYLE = """
:root { --ink: #1d2330; --muted: #5b6475; --line: #d9dee7; --accent: #2f5fb3;
        --good: #eef6ee; --bad: #fbeeee; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--ink); background: #fafbfc; }
header, main { max-width: 1120px; margin: 0 auto; padding: 0 20px; }
header { padding-top: 28px; padding-bottom: 8px; }
h1 { font-size: 1.8rem; margin: 0 0 6px; }
h2 { font-size: 1.45rem; margin: 40px 0 6px; padding-top: 10px; border-top: 2px solid var(--line); }
h3 { font-size: 1.15rem; margin: 26px 0 6px; }
.meta, .source, .note { color: var(--muted); font-size: 0.92rem; }
nav ol { padding-left: 1.2em; }
nav li { margin: 2px 0; }
a { color: var(--accent); }
.lead { color: var(--muted); }
.experiment { background: #fff; border: 1px solid var(--line); border-radius: 8px;
              padding: 4px 18px 14px; margin: 16px 0; }
.finding { background: var(--good); border-left: 4px solid #3f8f46; padding: 8px 12px;
           border-radius: 4px; }
.failed { background: var(--bad); border-left: 4px solid #b33a3a; padding: 8px 12px; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr));
           gap: 14px; margin: 12px 0; }
figure { margin: 0; }
figure img { width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px;
             background: #fff; }
figcaption { color: var(--muted); font-size: 0.85rem; }
.table-wrap { overflow-x: auto; margin: 10px 0; }
table { border-collapse: collapse; font-size: 0.88rem; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: left;
         white-space: nowrap; }
th { background: #f1f3f7; }
code { background: #f1f3f7; padding: 1px 5px; border-radius: 3px; font-size: 0.88rem;
       word-break: break-all; }
details { margin: 8px 0; }
@media (max-width: 640px) {
  body { font-size: 15px; }
  header, main { padding: 0 12px; }
  .figures { grid-template-columns: 1fr; }
  .experiment { padding: 2px 10px 10px; }
}
"""


@dataclass
class ExperimentView:
    """What the page shows of one experiment in one section."""

    name: str
    claim: str
    source: str
    finding: str
    figures: list[str]
    table: Table
    setup: dict[str, str]
    reproduce: str
    error: str | None = None
    reused: bool = False


@dataclass
class SectionView:
    trick: str
    experiments: list[ExperimentView] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return self.trick.replace(" ", "-")


def _table_html(table: Table) -> str:
    if not table.headers:
        return f"<p class='note'>{escape(table.note)}</p>"
    head = "".join(f"<th>{escape(h)}</th>" for h in table.headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in table.rows
    )
    note = f"<p class='note'>{escape(table.note)}</p>" if table.note else ""
    return (
        f"<div class='table-wrap'><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table></div>{note}"
    )


def _experiment_html(view: ExperimentView) -> str:
    parts = [
        f"<article class='experiment' id='{escape(view.name)}'>",
        f"<h3>{escape(view.name)}</h3>",
        f"<p><b>Claim.</b> {escape(view.claim)} <span class='source'>Source: "
        f"{escape(view.source)}.</span></p>",
    ]
    if view.error is not None:
        parts.append(f"<p class='failed'><b>This experiment failed:</b> {escape(view.error)}</p>")
    else:
        parts.append(f"<p class='finding'><b>Finding.</b> {escape(view.finding)}</p>")
        # Each figure links to its full-size file: on a phone the grid shows them small.
        figures = "".join(
            f"<figure><a href='{escape(src)}'><img src='{escape(src)}' alt='{escape(view.name)}: "
            f"{escape(src.rsplit('/', 1)[-1])}'></a>"
            f"<figcaption>{escape(src.rsplit('/', 1)[-1])}</figcaption></figure>"
            for src in view.figures
        )
        if figures:
            parts.append(f"<div class='figures'>{figures}</div>")
        parts.append("<h4>The numbers</h4>" + _table_html(view.table))
        setup = "".join(
            f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in view.setup.items()
        )
        parts.append(
            "<details><summary>Setup</summary><div class='table-wrap'><table>"
            f"{setup}</table></div></details>"
        )
    parts.append(f"<p>How to reproduce: <code>{escape(view.reproduce)}</code></p>")
    parts.append("</article>")
    return "".join(parts)


SWEEPS_INTRO = (
    "Every sweep store in the runs folder (dltricks sweep writes sweep-NAME.sqlite): each "
    "grid of settings x seeds, its runs as the store records them, and the command that "
    "reproduces it (runs already done in the store are skipped)."
)


def _sweep_html(view: SweepView) -> str:
    where = f"{view.store}" + (f", sweep {view.sweep_id}" if view.sweep_id else "")
    parts = [
        f"<article class='experiment sweep' id='{escape(view.anchor)}'>",
        f"<h3>{escape(view.experiment)} <span class='source'>({escape(where)})</span></h3>",
    ]
    if view.error is not None:
        parts.append(f"<p class='failed'>{escape(view.error)}</p></article>")
        return "".join(parts)
    parts.append(f"<p class='counts'><b>{escape(view.counts)}</b></p>")
    parts.extend(f"<p class='note'>{escape(note)}</p>" for note in view.notes)
    if view.settings:
        rows = "".join(
            f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in view.settings.items()
        )
        parts.append(f"<div class='table-wrap'><table class='grid'>{rows}</table></div>")
    parts.append("<h4>Runs</h4>" + _table_html(view.table))
    if view.reproduce is not None:
        parts.append(f"<p>How to reproduce: <code>{escape(view.reproduce)}</code></p>")
    else:
        parts.append("<p class='note'>The store keeps no command for these runs.</p>")
    parts.append("</article>")
    return "".join(parts)


def render_page(
    sections: list[SectionView],
    *,
    title: str,
    meta: str,
    sweeps: list[SweepView] | None = None,
) -> str:
    """The whole HTML document: the trick sections, then a Sweeps section if there are any."""
    nav = "".join(
        f"<li><a href='#{escape(s.anchor)}'>{escape(s.trick.capitalize())}</a></li>"
        for s in sections
    )
    if sweeps:
        nav += "<li><a href='#sweeps'>Sweeps</a></li>"
    body = []
    for number, section in enumerate(sections, start=1):
        body.append(
            f"<section id='{escape(section.anchor)}' data-trick='{escape(section.trick)}'>"
            f"<h2>{number}. {escape(section.trick.capitalize())}</h2>"
            f"<p class='lead'>{escape(TRICK_INTROS.get(section.trick, ''))}</p>"
        )
        if not section.experiments:
            body.append(
                "<p class='note'>No experiment of this section was run in this report "
                "(see <code>dltricks report --only</code>).</p>"
            )
        body.extend(_experiment_html(view) for view in section.experiments)
        body.append("</section>")
    if sweeps:
        body.append(
            "<section id='sweeps' data-section='sweeps'>"
            f"<h2>{len(sections) + 1}. Sweeps</h2><p class='lead'>{escape(SWEEPS_INTRO)}</p>"
        )
        body.extend(_sweep_html(view) for view in sweeps)
        body.append("</section>")
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>{escape(title)}</h1><p class='meta'>{escape(meta)}</p>"
        f"<nav><ol>{nav}</ol></nav></header><main>{''.join(body)}</main></body></html>\n"
    )
