"""Shared test settings: one torch thread (much faster than two contended threads on small CPU tensors)."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
