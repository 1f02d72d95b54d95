"""Shared test settings: one torch thread (much faster than two contended threads on small CPU tensors)."""

import os

import pytest
import torch

# the hidden checks' secret (dmcmc_edu.grading.feedback.hidden_seed): fixed in the tests, so their cases repeat; a
# grading run draws a fresh one (dmcmc_edu.grading.nbgrader_plugins)
os.environ.setdefault("DMCMC_EDU_HIDDEN_SEED", "tests")


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
