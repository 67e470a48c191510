"""End to end: the playground in headless Chromium, driven through the page's own controls.

The server runs in a thread on a free port. The test picks a surface, clicks a start point,
runs three optimizers and waits for the animation to finish, then trains two small networks
side by side and stops a third; the charts, the gradient heat map and the status lines must
show what the API returned, and the console must have no errors. A screenshot of each tab is
copied to ``DLTRICKS_ARTIFACTS`` when that is set (CI sets it).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import chromium

uvicorn = pytest.importorskip("uvicorn")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    from dltricks.serve import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not instance.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        instance.should_exit = True
        thread.join(30)


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from chromium(tmp_path_factory.mktemp("chromium-profile"))


def _until(check: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _save(driver: Any, folder: Path, name: str) -> None:
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1366, min(int(height) + 40, 4000))
    shot = folder / name
    driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 0
    artifacts = os.environ.get("DLTRICKS_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy2(shot, Path(artifacts) / name)
    driver.set_window_size(1366, 900)


def _set(element: Any, value: object) -> None:
    element.clear()
    element.send_keys(str(value))


@pytest.mark.slow
def test_surface_comparison_and_training_through_the_page(
    server: str, driver: Any, tmp_path: Path
) -> None:
    # The server first: it imports the library in the background while Chromium starts.
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver.set_window_size(1366, 900)
    driver.get(server + "/")
    _until(lambda: driver.execute_script("return document.body.dataset.ready"), what="page")
    assert driver.execute_script("return document.body.dataset.ready") == "true"

    # ---- error surfaces: pick one, click a start point, run three optimizers
    Select(driver.find_element(By.ID, "surface")).select_by_value("double_well")
    _until(
        lambda: "one local" in driver.find_element(By.ID, "surface-description").text,
        what="the surface's description",
    )
    before = driver.find_element(By.ID, "start-point").text
    canvas = driver.find_element(By.ID, "surface-canvas")
    ActionChains(driver).move_to_element_with_offset(canvas, -120, 60).click().perform()
    start = driver.find_element(By.ID, "start-point").text
    assert start != before
    _set(driver.find_element(By.ID, "steps"), 150)
    driver.find_element(By.ID, "surface-run").click()
    _until(
        lambda: driver.execute_script("return document.body.dataset.surfaceState") == "done",
        what="the surface animation",
    )
    lines = driver.execute_script(
        "const c = Chart.getChart(document.getElementById('surface-loss'));"
        "return c.data.datasets.map(d => [d.label, d.data.length]);"
    )
    assert [name for name, _ in lines] == ["SGD", "Momentum", "Adam"]
    assert all(0 < n <= 151 for _, n in lines)
    status = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#surface-status .run-line")]
    assert len(status) == 3
    assert status[1].startswith("Momentum (lr=0.01, momentum=0.9)")
    assert "curl" in driver.find_element(By.ID, "surface-reproduce").text
    # The trajectories are drawn: the canvas holds the first optimizer's colour (#e6194b).
    drawn = driver.execute_script(
        "const c = document.getElementById('surface-canvas');"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "for (let i = 0; i < d.length; i += 4)"
        "  if (d[i] === 230 && d[i + 1] === 25 && d[i + 2] === 75) return true;"
        "return false;"
    )
    assert drawn, "no trajectory drawn on the contour plot"
    _save(driver, tmp_path, "playground-surfaces.png")

    # ---- network lab: two small runs side by side
    driver.find_element(By.CSS_SELECTOR, "#tabs button[data-tab='lab']").click()
    panels = driver.find_elements(By.CSS_SELECTOR, "#runs .run")
    assert len(panels) == 2
    for panel in panels:
        _set(panel.find_element(By.NAME, "depth"), 2)
        _set(panel.find_element(By.NAME, "width"), 8)
        _set(panel.find_element(By.NAME, "epochs"), 2)
        panel.find_element(By.CSS_SELECTOR, "button.start").click()
    for panel in panels:
        _until(lambda p=panel: p.get_attribute("data-status") == "done", what="a training run")
    for index in range(2):
        shown = driver.execute_script(
            "const p = document.querySelectorAll('#runs .run')[arguments[0]];"
            "const loss = Chart.getChart(p.querySelector('.loss-chart'));"
            "const acc = Chart.getChart(p.querySelector('.accuracy-chart'));"
            "return [loss.data.datasets.map(d => d.data.length),"
            "        acc.data.datasets.map(d => d.data.length),"
            "        p.querySelector('.heatmap').dataset.epochs,"
            "        p.querySelector('.status').textContent];",
            index,
        )
        assert shown[0] == [2, 2]
        assert shown[1] == [2, 2]
        assert shown[2] == "2"
        assert shown[3].startswith("done: 2 of 2 epochs")

    _save(driver, tmp_path, "playground-lab.png")

    # ---- restart a run, then stop it
    second = panels[1]
    _set(second.find_element(By.NAME, "epochs"), 200)
    _set(second.find_element(By.NAME, "width"), 128)
    second.find_element(By.CSS_SELECTOR, "button.start").click()
    _until(lambda: second.get_attribute("data-status") == "running", what="the run to start")
    first_id = second.get_attribute("data-job")
    second.find_element(By.CSS_SELECTOR, "button.start").click()  # restart
    _until(lambda: second.get_attribute("data-job") != first_id, what="the restart")
    _until(lambda: second.get_attribute("data-status") == "running", what="the run to start")
    second.find_element(By.CSS_SELECTOR, "button.stop").click()
    _until(lambda: second.get_attribute("data-status") == "cancelled", what="the run to stop")

    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
