"""End to end: a quick report opened by file URL in headless Chromium.

Every section is present in the lecture's order, every image has loaded (naturalWidth > 0)
and has alt text, the console has no errors, and the page does not overflow a phone-width
screen. The verdict tables list every claim of every experiment with one of the three
verdicts, as its results.json has them; no table is longer than 15 rows; every CSV and JSON
link resolves to a file that parses; axe-core (the ``axe-core-python`` package's
``axe.min.js``, installed with the dev dependencies) finds no serious or critical accessibility
violation. A tiny sweep (sequential, a few tenths of a second) is run into the runs folder
first, so the Sweeps section is checked too. The screenshots (one of the full page) are kept
in the report folder and, when ``DLTRICKS_ARTIFACTS`` is set (CI sets it), copied there.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import shutil
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest

from dltricks.lab.report import build_report
from dltricks.sweep import RunResult, RunTask, execute_run, expand, run_sweep
from dltricks.sweep.executors import SequentialExecutor, _failed
from tests.browser import chromium
from tests.sweep.helpers import tiny_sweep

ONLY = ["bias-correction", "amsgrad"]
#: The lecture's order, written out here (not read from the code under test).
LECTURE_SECTIONS = [
    "new activation functions",
    "adaptive learning rate",
    "error surfaces",
    "early stopping",
    "regularization",
    "dropout",
]
#: In "Adaptive learning rate": the lecture's four, then the experiments (AMSGrad first).
ADAPTIVE_STEPS = ["AdaGrad", "RMSProp", "Momentum", "Adam"]
ADAPTIVE_EXPERIMENTS = ["amsgrad", "bias-correction"]
VERDICTS = {"reproduced", "partly reproduced", "not reproduced"}
MAX_TABLE_ROWS = 15
SERIOUS = {"serious", "critical"}
# 2 rates x 2 problems, one seed; the runs of the constant problem fail as a dead worker would
# (with retries=0, once), so the Sweeps section shows failed rows too.
SWEEP = tiny_sweep([0.001, 0.01], seeds=1, problems=[["noisy"], ["constant"]])
CRASHED = frozenset(s.run_id for s in expand(SWEEP) if s.overrides["problems"] == ["constant"])


def _run_or_crash(task: RunTask) -> RunResult:
    if task.run_id in CRASHED:
        return _failed(task, "worker process died: BrokenProcessPool: killed by signal 9")
    return execute_run(task)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    swept = run_sweep(
        SWEEP, out_root=root / "runs", executor=SequentialExecutor(_run_or_crash), retries=0
    )
    assert [r.status for r in swept.rows].count("failed") == 2
    outcome = build_report(
        out_dir=root / "report", runs_dir=root / "runs", quick=True, only=ONLY, workers=1
    )
    assert not outcome.failed, outcome.failed
    return outcome.index


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from chromium(tmp_path_factory.mktemp("chromium-profile"))


def _save(driver: Any, report: Path, name: str) -> None:
    shot = report.parent / name
    driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 0
    artifacts = os.environ.get("DLTRICKS_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy2(shot, Path(artifacts) / name)


def test_page_has_every_section_loaded_images_and_no_console_errors(
    driver: Any, report: Path
) -> None:
    driver.set_window_size(1366, 900)
    driver.get(report.as_uri())
    sections = driver.execute_script(
        "return Array.from(document.querySelectorAll('section'))"
        ".map(s => s.dataset.trick || s.dataset.section)"
    )
    # The verdicts, the six trick sections in the lecture's order, then Sweeps when the runs
    # folder holds a sweep store.
    assert sections == ["verdicts", *LECTURE_SECTIONS, "sweeps"]
    images = driver.execute_script(
        "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, "
        "i.naturalWidth, i.getAttribute('alt'), i.closest('a').getAttribute('href')])"
    )
    assert images, "the report shows no figures"
    for src, complete, width, alt, link in images:
        assert complete, src
        assert width > 0, f"image did not load: {src}"
        assert len(alt or "") > 20, f"no alt text that says what {src} shows: {alt!r}"
        assert link == src, "a click opens the figure full size"
    for name in ONLY:
        assert driver.execute_script(f"return !!document.getElementById('{name}')")
    findings = driver.execute_script(
        "return Array.from(document.querySelectorAll('.finding')).map(p => p.textContent)"
    )
    assert len(findings) == len(ONLY)
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    driver.execute_script("document.body.style.zoom = 1")
    full_height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1366, min(int(full_height), 8000))
    _save(driver, report, "screenshot-laptop.png")
    _save_full_page(driver, report, "screenshot-full-page.png")


def _save_full_page(driver: Any, report: Path, name: str) -> None:
    """The whole page in one PNG, however long (Chromium's capture beyond the viewport)."""
    driver.set_window_size(1366, 900)
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics["cssContentSize"]
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        },
    )
    path = report.parent / name
    path.write_bytes(base64.b64decode(shot["data"]))
    assert path.stat().st_size > 0
    artifacts = os.environ.get("DLTRICKS_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, Path(artifacts) / name)


def _results(report: Path, name: str) -> dict[str, Any]:
    path = report.parent.parent / "runs" / name / "results.json"
    return dict(json.loads(path.read_text()))


def test_verdict_tables_list_every_claim_with_one_of_three_verdicts(
    driver: Any, report: Path
) -> None:
    driver.get(report.as_uri())
    rows = driver.execute_script(
        "return Array.from(document.querySelectorAll('#verdicts table.verdicts tbody tr'))"
        ".map(r => ({experiment: r.dataset.experiment, claim: r.cells[0].textContent, "
        "verdict: r.cells[1].textContent, reason: r.cells[2].textContent, "
        "link: r.cells[3].querySelector('a').getAttribute('href')}))"
    )
    for name in ONLY:
        stored = _results(report, name)["verdicts"]
        assert stored, f"{name} judged no claim"
        shown = [r for r in rows if r["experiment"] == name]
        assert [r["claim"] for r in shown] == [v["claim"] for v in stored]
        assert [r["verdict"] for r in shown] == [v["verdict"] for v in stored]
        for row in shown:
            assert row["verdict"] in VERDICTS
            assert row["reason"].strip()
            target = row["link"].removeprefix("#")
            assert driver.execute_script(f"return !!document.getElementById('{target}')")
    # The verdicts come first on the page.
    first = driver.execute_script("return document.querySelector('main section').id")
    assert first == "verdicts"


def test_sections_and_experiments_follow_the_lecture(driver: Any, report: Path) -> None:
    driver.get(report.as_uri())
    adaptive = driver.execute_script(
        "const s = document.getElementById('adaptive-learning-rate');"
        "return {steps: Array.from(s.querySelectorAll('.story .step-title'))"
        "  .map(h => h.textContent),"
        " experiments: Array.from(s.querySelectorAll('article')).map(a => a.dataset.experiment),"
        " titles: Array.from(s.querySelectorAll('article h3')).map(h => h.textContent),"
        " codes: Array.from(s.querySelectorAll('article .codename')).map(p => p.textContent)}"
    )
    assert [t.split(" ")[0].rstrip(":") for t in adaptive["steps"]] == ADAPTIVE_STEPS
    assert adaptive["experiments"] == ADAPTIVE_EXPERIMENTS
    for title, code, name in zip(
        adaptive["titles"], adaptive["codes"], ADAPTIVE_EXPERIMENTS, strict=True
    ):
        assert title.endswith("?"), f"{name} is titled by the question it answers: {title!r}"
        assert f"dltricks run {name}" in code


def test_no_table_is_longer_than_15_rows(driver: Any, report: Path) -> None:
    driver.get(report.as_uri())
    lengths = driver.execute_script(
        "return Array.from(document.querySelectorAll('table'))"
        ".map(t => t.querySelectorAll('tbody tr').length)"
    )
    assert lengths
    assert max(lengths) <= MAX_TABLE_ROWS, lengths


def test_every_data_link_resolves_to_a_file_that_parses(driver: Any, report: Path) -> None:
    driver.get(report.as_uri())
    links = driver.execute_script(
        "return Array.from(document.querySelectorAll('a'))"
        ".map(a => a.href).filter(h => h.endsWith('.csv') || h.endsWith('.json'))"
    )
    assert len(links) == 2 * len(ONLY), links
    for link in links:
        path = Path(unquote(urlparse(link).path))
        assert path.is_file(), f"broken link: {link}"
        name = path.stem
        records = _results(report, name)["records"]
        if path.suffix == ".csv":
            with path.open(newline="") as handle:
                assert len(list(csv.DictReader(handle))) == len(records)
        else:
            assert json.loads(path.read_text())["records"] == records


def _axe_source() -> str | None:
    try:
        return (resources.files("axe_core_python") / "axe.min.js").read_text()
    except (ModuleNotFoundError, FileNotFoundError):
        return None


def test_axe_finds_no_serious_or_critical_violation(driver: Any, report: Path) -> None:
    source = _axe_source()
    if source is None:
        message = "axe-core is missing: install the dev dependencies (axe-core-python)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    for width, height in ((1366, 900), (390, 844)):
        driver.set_window_size(width, height)
        driver.get(report.as_uri())
        driver.execute_script(source)
        driver.set_script_timeout(120)
        results = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {resultTypes: ['violations']})"
            ".then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, "
            "help: v.help, nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))))"
            ".catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e), "
            "nodes: []}]))"
        )
        serious = [v for v in results if v["impact"] in SERIOUS]
        assert serious == [], f"at {width}px: {serious}"


def test_sweeps_section_shows_the_store(driver: Any, report: Path) -> None:
    driver.set_window_size(1366, 900)
    driver.get(report.as_uri())
    sweeps = driver.execute_script(
        "return Array.from(document.querySelectorAll('#sweeps article')).map(a => ({"
        "title: a.querySelector('h3').textContent,"
        "counts: a.querySelector('.counts').textContent,"
        "headers: Array.from(a.querySelectorAll('table:not(.grid) th')).map(c => c.textContent),"
        "ids: Array.from(a.querySelectorAll('table:not(.grid) tbody tr'))"
        "  .map(r => r.cells[0].textContent),"
        "code: Array.from(a.querySelectorAll('code')).map(c => c.textContent)}))"
    )
    assert len(sweeps) == 1
    view = sweeps[0]
    assert view["title"].startswith("bias-correction")
    assert "sweep-bias-correction.sqlite" in view["title"]
    assert view["counts"] == "4 runs: 2 done, 2 failed"
    assert view["headers"][:5] == ["run id", "problems", "lr", "seed", "status"]
    assert "error" in view["headers"]
    assert view["ids"] == [s.run_id for s in expand(SWEEP)], "every run, in grid order"
    assert view["code"][-1].startswith("dltricks sweep bias-correction --quick --grid ")
    assert view["code"][-1].endswith(f"--out {report.parent.parent / 'runs'}")


def test_page_fits_a_phone_screen(driver: Any, report: Path) -> None:
    driver.set_window_size(390, 844)
    driver.get(report.as_uri())
    overflow = driver.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 1, f"the page is {overflow}px wider than a phone screen"
    _save(driver, report, "screenshot-phone.png")
