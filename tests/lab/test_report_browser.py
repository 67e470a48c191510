"""End to end: a quick report opened by file URL in headless Chromium.

Every section is present, every image has loaded (naturalWidth > 0), the console has no
errors, and the page does not overflow a phone-width screen. A tiny sweep (sequential, a few
tenths of a second) is run into the runs folder first, so the Sweeps section is checked too.
The screenshots are kept in the report folder and, when ``DLTRICKS_ARTIFACTS`` is set (CI sets
it), copied there.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dltricks.lab.registry import TRICKS
from dltricks.lab.report import build_report
from dltricks.sweep import RunResult, RunTask, execute_run, expand, run_sweep
from dltricks.sweep.executors import SequentialExecutor, _failed
from tests.sweep.helpers import tiny_sweep

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ONLY = ["bias-correction", "amsgrad"]
# 2 rates x 2 problems, one seed; the runs of the constant problem fail as a dead worker would
# (with retries=0, once), so the Sweeps section shows failed rows too.
SWEEP = tiny_sweep([0.001, 0.01], seeds=1, problems=[["noisy"], ["constant"]])
CRASHED = frozenset(s.run_id for s in expand(SWEEP) if s.overrides["problems"] == ["constant"])


def _run_or_crash(task: RunTask) -> RunResult:
    if task.run_id in CRASHED:
        return _failed(task, "worker process died: BrokenProcessPool: killed by signal 9")
    return execute_run(task)


def _browser_available() -> bool:
    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()


if not _browser_available() and not os.environ.get("CI"):
    pytest.skip("Chromium and chromedriver are not installed", allow_module_level=True)

webdriver = pytest.importorskip("selenium.webdriver")


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
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    browser = webdriver.Chrome(options=options, service=service)
    try:
        yield browser
    finally:
        browser.quit()


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
    # The six trick sections, then Sweeps when the runs folder holds a sweep store.
    assert sections == [*TRICKS, "sweeps"]
    images = driver.execute_script(
        "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, "
        "i.naturalWidth])"
    )
    assert images, "the report shows no figures"
    for src, complete, width in images:
        assert complete, src
        assert width > 0, f"image did not load: {src}"
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
