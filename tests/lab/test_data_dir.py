"""``--data-dir``: full-size runs read real MNIST from IDX files; quick runs keep their data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dltricks.data import write_idx
from dltricks.lab.runner import run_experiment

TINY = {
    "depths": [1],
    "activations": ["relu"],
    "epochs": 1,
    "width": 8,
    "seeds": 1,
}


def _write_tiny_mnist(folder: Path) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", 120), ("t10k", 40)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)


def test_full_size_run_with_data_dir_uses_real_mnist(tmp_path: Path) -> None:
    data_dir = tmp_path / "mnist"
    data_dir.mkdir()
    _write_tiny_mnist(data_dir)
    outcome = run_experiment(
        "depth", out_root=tmp_path / "runs", quick=False, data_dir=data_dir, overrides=TINY
    )
    assert outcome.results["datasets"] == ["mnist"]
    assert outcome.results["config"]["data_dir"] == str(data_dir)


def test_quick_run_keeps_its_embedded_data_and_says_so(tmp_path: Path) -> None:
    data_dir = tmp_path / "mnist"
    data_dir.mkdir()
    outcome = run_experiment(
        "depth", out_root=tmp_path / "runs", quick=True, data_dir=data_dir, overrides=TINY
    )
    assert outcome.results["datasets"] == ["digits"]
    assert any("full-size runs only" in n for n in outcome.notices)


def test_missing_idx_files_are_named(tmp_path: Path) -> None:
    data_dir = tmp_path / "empty"
    data_dir.mkdir()
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        run_experiment(
            "depth", out_root=tmp_path / "runs", quick=False, data_dir=data_dir, overrides=TINY
        )
