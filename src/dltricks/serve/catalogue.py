"""What the page reads when it loads, answered without torch: the catalogue.

The surfaces on offer (:func:`~dltricks.serve.surfaces.surface_catalogue`), the optimizers and
their hyperparameters (:func:`~dltricks.serve.optimizers.optimizer_catalogue`), the choices of
a training job (:func:`~dltricks.serve.jobs.train_options`) and the report's sections
(:data:`dltricks.lab.registry.TRICKS`) are fixed by the library's code, but computing them
imports torch and most of the library, seconds (tens on a loaded machine) after the server is
up. So the app answers them from ``catalogue.json``, shipped beside this module and written by
:func:`write_catalogue` (``python -m dltricks.serve.catalogue``); a test checks that the file
equals :func:`build_catalogue`, so a change to the library that changes the catalogue fails
until the file is written again.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

__all__ = ["CATALOGUE_PATH", "build_catalogue", "load_catalogue", "write_catalogue"]

CATALOGUE_PATH = Path(__file__).parent / "catalogue.json"


def build_catalogue() -> dict[str, Any]:
    """The catalogue computed from the library (imports torch):
    ``{"surfaces", "optimizers", "train_options", "tricks"}``."""
    from dltricks.lab.registry import TRICKS
    from dltricks.serve.jobs import train_options
    from dltricks.serve.optimizers import optimizer_catalogue
    from dltricks.serve.surfaces import surface_catalogue

    catalogue = {
        "surfaces": surface_catalogue(),
        "optimizers": optimizer_catalogue(),
        "train_options": train_options(),
        "tricks": list(TRICKS),
    }
    # As JSON has it (tuples become lists): what the file holds and the API answers.
    loaded: dict[str, Any] = json.loads(json.dumps(catalogue, allow_nan=False))
    return loaded


@functools.cache
def load_catalogue() -> dict[str, Any]:
    """The shipped catalogue, read once (no torch)."""
    loaded: dict[str, Any] = json.loads(CATALOGUE_PATH.read_text(encoding="utf-8"))
    return loaded


def write_catalogue(path: Path = CATALOGUE_PATH) -> None:
    """Write :func:`build_catalogue` to ``path`` (default: the shipped file)."""
    text = json.dumps(build_catalogue(), indent=1, ensure_ascii=False, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    write_catalogue()
    print(f"wrote {CATALOGUE_PATH}")
