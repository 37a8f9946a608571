"""Fixtures shared by several test modules (builders of tiny models and files are in tiny_hf.py)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module's tests (`pytestmark = pytest.mark.usefixtures("one_thread")`).

    Tiny models run as fast on one thread, and ~10x faster when other processes share the CPU
    (OpenMP spinning). The previous thread count is restored after the module.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
