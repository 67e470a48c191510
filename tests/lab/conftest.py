"""Fixtures shared by the lab's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread for a test module, as ``dltricks run`` uses by default.

    Results depend on the thread count (reduction order); one thread also keeps the runs fast
    on a loaded two-core machine.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
