"""The playground's JSON API: every endpoint, against references computed here.

Surface runs are checked against closed forms (gradient descent on a quadratic) and against
``torch.optim`` stepping the surface's formula, written out in this file, in float64; a
training job's first epoch against one full-batch step computed with torch autograd.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (torch convention)
from starlette.testclient import TestClient

from dltricks.cli import UsageError, build_parser, main
from dltricks.data import load_dataset
from dltricks.nn import MLP
from dltricks.serve import create_app
from dltricks.serve.app import MAX_BODY_BYTES
from dltricks.serve.jobs import JobManager
from dltricks.surfaces import get_surface, surface_names


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app()) as c:
        yield c


def _wait(client: TestClient, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/api/train/{job_id}").json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def _rosenbrock(p: torch.Tensor) -> torch.Tensor:
    return (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2


def _torch_run(
    make: Callable[[list[torch.Tensor]], torch.optim.Optimizer], start: list[float], steps: int
) -> list[list[float]]:
    p = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    optimizer = make([p])
    points = [p.detach().tolist()]
    for _ in range(steps):
        optimizer.zero_grad()
        _rosenbrock(p).backward()
        optimizer.step()
        points.append(p.detach().tolist())
    return points


# ---------------------------------------------------------------- health, page, report


def test_health(client: TestClient) -> None:
    assert client.get("/api/health").json() == {"status": "ok", "version": "0.1.0"}


def test_page_and_its_chart_library_are_served_locally(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "/static/chart.umd.min.js" in page.text
    assert "http://" not in page.text
    assert "https://" not in page.text
    library = client.get("/static/chart.umd.min.js")
    assert library.status_code == 200
    assert library.text.startswith("/*!\n * Chart.js v4")
    assert client.get("/static/app.js").status_code == 200


def test_report_is_linked_when_it_exists(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<html><section id='dropout'></section></html>")
    with TestClient(create_app(report_dir=tmp_path)) as c:
        info = c.get("/api/report").json()
        assert info["available"] is True
        hrefs = [s["href"] for s in info["sections"]]
        assert "/report/index.html#adaptive-learning-rate" in hrefs
        assert "id='dropout'" in c.get("/report/index.html").text
    with TestClient(create_app(report_dir=tmp_path / "none")) as c:
        assert c.get("/api/report").json()["available"] is False
        assert c.get("/report/index.html").status_code == 404


def test_the_page_loads_without_waiting_for_torch() -> None:
    # Without the lifespan nothing is imported in the background: what the page reads when it
    # loads must be answered, and torch must not have been imported to answer it.
    code = (
        "import sys\n"
        "from starlette.testclient import TestClient\n"
        "from dltricks.serve import create_app\n"
        "client = TestClient(create_app())\n"
        "for path in ('/', '/static/app.js', '/api/health', '/api/surfaces',\n"
        "             '/api/optimizers', '/api/train/options', '/api/report'):\n"
        "    assert client.get(path).status_code == 200, path\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_shipped_catalogue_is_the_librarys() -> None:
    from dltricks.serve.catalogue import build_catalogue, load_catalogue

    assert load_catalogue() == build_catalogue(), (
        "src/dltricks/serve/catalogue.json is out of date: run python -m dltricks.serve.catalogue"
    )


# ---------------------------------------------------------------- surfaces


def test_surfaces_lists_every_surface_with_its_bounds(client: TestClient) -> None:
    listed = client.get("/api/surfaces").json()
    assert [s["name"] for s in listed] == list(surface_names())
    for entry in listed:
        surface = get_surface(entry["name"])
        assert entry["bounds"] == [list(surface.window[0]), list(surface.window[1])]
        assert entry["description"]


def test_grid_holds_the_surface_values(client: TestClient) -> None:
    grid = client.get("/api/surfaces/rosenbrock/grid?n=7").json()
    assert len(grid["x"]) == len(grid["y"]) == 7
    for j, y in enumerate(grid["y"]):
        for i, x in enumerate(grid["x"]):
            expected = (1 - x) ** 2 + 100 * (y - x**2) ** 2
            assert grid["z"][j][i] == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize(
    ("path", "status", "field"),
    [
        ("/api/surfaces/nowhere/grid", 404, "surface"),
        ("/api/surfaces/saddle/grid?n=1000", 422, "n"),
        ("/api/surfaces/saddle/grid?n=many", 422, "n"),
    ],
)
def test_grid_refuses_bad_input(client: TestClient, path: str, status: int, field: str) -> None:
    response = client.get(path)
    assert response.status_code == status
    assert response.json()["field"] == field


def test_gradient_descent_on_the_quadratic_follows_the_closed_form(client: TestClient) -> None:
    # f = (x^2 + 10 y^2) / 2: x_t = (1 - lr)^t x_0, y_t = (1 - 10 lr)^t y_0.
    lr, start, steps = 0.05, [2.0, -1.5], 40
    body = {"surface": "quadratic", "optimizer": "SGD", "lr": lr, "steps": steps, "start": start}
    result = client.post("/api/surfaces/run", json=body).json()
    assert result["diverged"] is False
    assert len(result["trajectory"]) == len(result["losses"]) == steps + 1
    for t, (x, y) in enumerate(result["trajectory"]):
        assert x == pytest.approx((1 - lr) ** t * start[0], rel=1e-12)
        assert y == pytest.approx((1 - 10 * lr) ** t * start[1], rel=1e-12, abs=1e-300)
        assert result["losses"][t] == pytest.approx(0.5 * (x**2 + 10 * y**2), rel=1e-12)


OPTIMIZER_TABLE: list[tuple[str, dict[str, Any], Callable[..., torch.optim.Optimizer]]] = [
    ("SGD", {"momentum": 0.5}, lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.5)),
    ("Momentum", {}, lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9)),
    (
        "Nesterov",
        {"momentum": 0.7},
        lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.7, nesterov=True),
    ),
    ("AdaGrad", {"eps": 1e-6}, lambda p: torch.optim.Adagrad(p, lr=1e-3, eps=1e-6)),
    (
        "RMSProp",
        {"alpha": 0.9, "momentum": 0.5},
        lambda p: torch.optim.RMSprop(p, lr=1e-3, alpha=0.9, momentum=0.5),
    ),
    (
        "Adam",
        {"betas": [0.8, 0.99], "eps": 1e-6},
        lambda p: torch.optim.Adam(p, 1e-3, (0.8, 0.99), 1e-6),
    ),
    ("NAdam", {}, lambda p: torch.optim.NAdam(p, lr=1e-3)),
    ("Adamax", {}, lambda p: torch.optim.Adamax(p, lr=1e-3)),
    ("AdaDelta", {"rho": 0.8}, lambda p: torch.optim.Adadelta(p, lr=1e-3, rho=0.8)),
    ("AdamW", {}, lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.0)),
]


@pytest.mark.parametrize(
    ("name", "hyper", "reference"), OPTIMIZER_TABLE, ids=[row[0] for row in OPTIMIZER_TABLE]
)
def test_surface_run_matches_torch_optim(
    client: TestClient,
    name: str,
    hyper: dict[str, Any],
    reference: Callable[[list[torch.Tensor]], torch.optim.Optimizer],
) -> None:
    start, steps = [-1.2, 1.0], 60
    body = {"surface": "rosenbrock", "optimizer": name, "lr": 1e-3, "steps": steps}
    response = client.post("/api/surfaces/run", json={**body, "start": start, **hyper})
    assert response.status_code == 200, response.text
    expected = _torch_run(reference, start, steps)
    got = response.json()["trajectory"]
    assert len(got) == steps + 1
    torch.testing.assert_close(torch.tensor(got), torch.tensor(expected), rtol=1e-10, atol=1e-12)


def test_a_diverging_run_is_a_result(client: TestClient) -> None:
    # lr = 1 on (x^2 + 10 y^2)/2 multiplies y by -9 per step: |y_t| = 9^t |y_0| passes the
    # runner's bound 1e6 at the first t with 9^t > 1e6.
    body = {"surface": "quadratic", "optimizer": "SGD", "lr": 1.0, "steps": 500, "start": [1, 1]}
    response = client.post("/api/surfaces/run", json=body)
    assert response.status_code == 200
    result = response.json()
    first_out = next(t for t in range(100) if 9.0**t > 1e6)
    assert result["diverged"] is True
    assert result["diverged_at"] == first_out
    assert len(result["trajectory"]) == first_out
    assert all(math.isfinite(v) for v in result["losses"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"optimizer": "SGD"}, "surface"),
        ({"surface": "nowhere", "optimizer": "SGD"}, "surface"),
        ({"surface": "saddle", "optimizer": "Newton"}, "optimizer"),
        ({"surface": "saddle", "optimizer": "SGD", "lr": -1}, "lr"),
        ({"surface": "saddle", "optimizer": "SGD", "lr": "fast"}, "lr"),
        ({"surface": "saddle", "optimizer": "SGD", "steps": 5001}, "steps"),
        ({"surface": "saddle", "optimizer": "SGD", "steps": 0}, "steps"),
        ({"surface": "saddle", "optimizer": "SGD", "start": [1]}, "start"),
        ({"surface": "saddle", "optimizer": "SGD", "start": [1, 1e9]}, "start"),
        ({"surface": "saddle", "optimizer": "SGD", "betas": [0.9, 0.99]}, "betas"),
        ({"surface": "saddle", "optimizer": "Adam", "betas": [0.9, 1.0]}, "betas"),
        ({"surface": "saddle", "optimizer": "Adam", "eps": 0}, "eps"),
        ({"surface": "saddle", "optimizer": "Nesterov", "momentum": 0}, "momentum"),
        ({"surface": "saddle", "optimizer": "SGD", "learning_rate": 0.1}, "learning_rate"),
    ],
)
def test_surface_run_refuses_bad_input_naming_the_field(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    response = client.post("/api/surfaces/run", json=body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["field"] == field
    assert f"field '{field}" in error["error"]


def test_bodies_that_are_not_json_or_too_large_are_refused(client: TestClient) -> None:
    response = client.post("/api/surfaces/run", content=b"{not json")
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]
    assert client.post("/api/train", json=[1, 2]).status_code == 422
    big = b'{"surface": "saddle", "pad": "' + b"x" * MAX_BODY_BYTES + b'"}'
    assert client.post("/api/surfaces/run", content=big).status_code == 413


def test_optimizers_lists_their_hyperparameters(client: TestClient) -> None:
    listed = client.get("/api/optimizers").json()
    assert listed["Adam"]["hyperparameters"] == {"betas": [0.9, 0.999], "eps": 1e-8}
    assert listed["SGD"]["hyperparameters"] == {"momentum": 0.0}


# ---------------------------------------------------------------- training jobs


def test_a_training_job_reports_each_epoch_as_torch_computes_it(client: TestClient) -> None:
    # Full-batch steps (batch_size >= the train split): epoch 1 is one SGD step from the
    # initial weights, and its gradient norms are those of the initial weights.
    settings = {"dataset": "digits", "depth": 2, "width": 16, "activation": "tanh"}
    settings |= {"optimizer": "SGD", "lr": 0.5, "epochs": 2, "batch_size": 4096, "seed": 3}
    created = client.post("/api/train", json=settings)
    assert created.status_code == 201
    job = _wait(client, created.json()["id"])
    assert job["status"] == "done", job
    assert [e["epoch"] for e in job["epochs"]] == [1, 2]
    assert len(job["layers"]) == 3

    data = load_dataset("digits", seed=0)
    model = MLP(64, 10, 16, 2, "tanh", generator=torch.Generator().manual_seed(3))
    loss = F.cross_entropy(model(data.x_train), data.y_train)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    grads = torch.autograd.grad(loss, [m.weight for m in linears] + [m.bias for m in linears])
    expected_norms = [float(torch.linalg.vector_norm(g)) for g in grads[: len(linears)]]
    assert job["epochs"][0]["grad_norms"] == pytest.approx(expected_norms, rel=1e-4)
    with torch.no_grad():
        params = [m.weight for m in linears] + [m.bias for m in linears]
        for p, g in zip(params, grads, strict=True):
            p -= 0.5 * g
        after = F.cross_entropy(model(data.x_train), data.y_train)
        val = F.cross_entropy(model(data.x_val), data.y_val)
        accuracy = (model(data.x_val).argmax(1) == data.y_val).double().mean()
    first = job["epochs"][0]
    assert first["train_loss"] == pytest.approx(float(after), rel=1e-4)
    assert first["val_loss"] == pytest.approx(float(val), rel=1e-4)
    assert first["val_accuracy"] == pytest.approx(float(accuracy), abs=1e-9)
    assert job["reproduce"]["cli"].startswith("dltricks run vanishing --seed 3 --seeds 1")


def test_the_cli_command_shown_reproduces_the_job(client: TestClient, tmp_path: Path) -> None:
    settings = {"dataset": "digits", "depth": 2, "width": 8, "activation": "relu", "seed": 5}
    settings |= {"optimizer": "Momentum", "lr": 0.05, "epochs": 2, "batch_size": 128}
    job = _wait(client, client.post("/api/train", json=settings).json()["id"])
    command = job["reproduce"]["cli"]
    assert main([*shlex.split(command)[1:], "--out", str(tmp_path), "--quiet"]) == 0
    results = json.loads((tmp_path / "vanishing" / "results.json").read_text())
    (trained,) = [r for r in results["records"] if r["stage"] == "trained"]
    assert trained["curve_train_loss"] == [e["train_loss"] for e in job["epochs"]]


def test_a_diverging_job_is_done_and_says_so(client: TestClient) -> None:
    settings = {"depth": 3, "width": 32, "activation": "relu", "optimizer": "SGD", "lr": 10.0}
    created = client.post("/api/train", json={**settings, "epochs": 5, "init": "torch"})
    job = _wait(client, created.json()["id"])
    assert job["status"] == "done"
    assert job["diverged"] is True
    assert job["diverged_epoch"] == job["epochs"][-1]["epoch"]
    assert job["epochs"][-1]["train_loss"] is None  # non-finite, sent as null


def test_early_stopping_and_regularisation_reach_the_trainer(client: TestClient) -> None:
    settings = {"depth": 1, "width": 8, "optimizer": "Adam", "lr": 0.5, "epochs": 30}
    settings |= {"early_stopping": True, "patience": 0, "l2": 0.01, "dropout": 0.2}
    job = _wait(client, client.post("/api/train", json=settings).json()["id"])
    assert job["status"] == "done"
    assert job["stop_reason"] == "early_stopping"
    assert len(job["epochs"]) < 30
    assert job["reproduce"]["cli"] is None  # no single experiment has these settings


def test_cancel_and_unknown_jobs(client: TestClient) -> None:
    created = client.post("/api/train", json={"width": 64, "depth": 4, "epochs": 200})
    job_id = created.json()["id"]
    cancelled = client.delete(f"/api/train/{job_id}").json()
    assert cancelled["status"] == "cancelled"
    assert len(cancelled["epochs"]) < 200
    assert client.get("/api/train/job-404").status_code == 404
    assert client.delete("/api/train/job-404").status_code == 404


def test_jobs_beyond_the_limit_get_429() -> None:
    with TestClient(create_app(jobs=JobManager(max_active=1, max_kept=4))) as c:
        first = c.post("/api/train", json={"epochs": 200}).json()["id"]
        refused = c.post("/api/train", json={"epochs": 2})
        assert refused.status_code == 429
        assert "DELETE" in refused.json()["error"]
        c.delete(f"/api/train/{first}")
        again = c.post("/api/train", json={"epochs": 1, "width": 4, "depth": 1})
        assert again.status_code == 201
        _wait(c, again.json()["id"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"depth": 0}, "depth"),
        ({"depth": 21}, "depth"),
        ({"width": 10**6}, "width"),
        ({"epochs": 1000}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"dataset": "mnist"}, "dataset"),
        ({"activation": "softplus"}, "activation"),
        ({"init": "orthogonal"}, "init"),
        ({"optimizer": "LBFGS"}, "optimizer"),
        ({"lr": 0}, "lr"),
        ({"dropout": 0.95}, "dropout"),
        ({"l1": -0.1}, "l1"),
        ('{"weight_decay": Infinity}', "weight_decay"),
        ('{"lr": NaN}', "lr"),
        ({"early_stopping": "yes"}, "early_stopping"),
        ({"early_stopping": True, "epochs": 1}, "epochs"),
        ({"optimizer": "SGD", "betas": [0.9, 0.9]}, "betas"),
        ({"hidden_layers": 3}, "hidden_layers"),
    ],
)
def test_training_refuses_bad_input_naming_the_field(
    client: TestClient, body: dict[str, Any] | str, field: str
) -> None:
    # Python's JSON reader accepts Infinity and NaN, so the rules must refuse them.
    sent = {"content": body} if isinstance(body, str) else {"json": body}
    response = client.post("/api/train", **sent)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert f"field '{field}" in response.json()["error"]


def test_train_options_describe_the_form(client: TestClient) -> None:
    options = client.get("/api/train/options").json()
    assert options["datasets"] == ["digits", "mnist1d"]
    assert {"sigmoid", "relu", "selu", "prelu", "maxout"} <= set(options["activations"])
    assert options["limits"]["depth"] == 20


# ---------------------------------------------------------------- the command


def test_serve_command_binds_to_this_machine_by_default() -> None:
    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port, args.open) == ("127.0.0.1", 8765, False)
    args = build_parser().parse_args(["serve", "--host", "0.0.0.0", "--port", "9000", "--open"])
    assert (args.host, args.port, args.open) == ("0.0.0.0", 9000, True)
    with pytest.raises(UsageError, match="65535"):
        build_parser().parse_args(["serve", "--port", "70000"])


def test_serve_names_an_address_in_use(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 1
    assert f"dltricks: error: 127.0.0.1:{port}: " in capsys.readouterr().err
