"""Every Python example in the README and the documentation runs.

The ```python blocks of one page run in order in one namespace, as a reader pastes them one
after another into one session, in a fresh folder (examples that write files write there). A
block that is not meant to run on its own is not marked ``python``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _blocks(page: Path) -> list[tuple[int, str]]:
    text = page.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in BLOCK.finditer(text)]


PAGES_WITH_CODE = [p for p in PAGES if _blocks(p)]


def test_the_readme_and_the_tutorials_have_examples() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in PAGES_WITH_CODE}
    assert "README.md" in names
    assert any(n.startswith("docs/tutorials/") for n in names)


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_python_example_of_the_page_runs(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DLTRICKS_CACHE", str(tmp_path / "cache"))
    namespace: dict[str, object] = {"__name__": "__example__"}
    for line, code in _blocks(page):
        name = f"{page.relative_to(ROOT).as_posix()}:{line}"
        try:
            exec(compile(code, name, "exec"), namespace)
        except Exception as error:
            raise AssertionError(f"the example at {name} fails: {error!r}") from error
