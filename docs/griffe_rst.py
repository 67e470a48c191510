"""A griffe extension: the reStructuredText idioms of our docstrings, as Markdown.

The docstrings are written to read well in ``help()``: ``Math::`` before an indented block,
``:class:`~dltricks.optim.AdamW``` for a reference. On the site the indented block is already a
code block; this drops the ``::`` marker and turns roles into code spans (the last dotted part
where the target starts with ``~``, as Sphinx shows it).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj|const):`(~?)([^`]+)`")
LITERAL_MARKER = re.compile(r"(\S)::[ \t]*$", re.MULTILINE)
BARE_MARKER = re.compile(r"^([ \t]*)::[ \t]*$", re.MULTILINE)


def _role(match: re.Match[str]) -> str:
    target = match.group(2)
    return f"`{target.rsplit('.', 1)[-1]}`" if match.group(1) else f"`{target}`"


def markdown_of(text: str) -> str:
    """``text`` with roles as code spans and literal-block markers removed."""
    text = ROLE.sub(_role, text)
    text = LITERAL_MARKER.sub(r"\1:", text)
    return BARE_MARKER.sub(r"\1", text)


class RestructuredTextAsMarkdown(griffe.Extension):
    """Rewrites every docstring once it is loaded."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_of(obj.docstring.value)
