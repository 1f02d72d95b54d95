"""A solver's name (``dpmpp_2m``, ``unipc``, ``restart``) works in every command that takes ``--integrator``, with the
core's table left as the paper's six (issue 21: no registration by import or by side effect).

The commands resolve a name in :mod:`dmcmc_edu.registry` and hand the core the function
(``sample_from_noise(integrator=fn)``) or the table (``DMCMCSampler(..., integrators=integrator_table())``).  Each
test checks what the solver did -- the NFE counted per sample or per output, the output's shape -- not only that the
command ran: a solver ending at sigma = 0 takes ``steps`` evaluations and no Tweedie step, where KAR1 would take
``2 steps - 1`` and PF-Euler ``steps + 1``.  The in-process tests run with the core's table emptied of anything but
the paper's six (:func:`core_table_is_the_six`), so an earlier test that registered something cannot hide a
missing table; one test starts a fresh interpreter.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dmcmc_edu.cli import main
from dmcmc_edu.core.integrators import INTEGRATORS, PAPER_INTEGRATORS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def core_table_is_the_six():
    """The core's ``INTEGRATORS`` holds exactly the paper's six while the test runs (and still does after it)."""
    saved = dict(INTEGRATORS)
    INTEGRATORS.clear()
    INTEGRATORS.update({k: saved[k] for k in PAPER_INTEGRATORS})
    try:
        yield
        assert tuple(INTEGRATORS) == PAPER_INTEGRATORS, f"the command changed the core's table: {list(INTEGRATORS)}"
    finally:
        INTEGRATORS.clear()
        INTEGRATORS.update(saved)


def _run_json(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())


def test_sample_with_a_solver_in_a_fresh_process(tmp_path):
    """``python -m dmcmc_edu sample --integrator dpmpp_2m``: 3 steps are 3 NFE, and the samples are the solver's."""
    from dmcmc_edu.cli.common import chunk_seed
    from dmcmc_edu.core.integrators import sample_from_noise
    from dmcmc_edu.solvers import dpmpp_2m
    from dmcmc_edu.targets import ring

    out = tmp_path / "dpmpp"
    proc = subprocess.run([sys.executable, "-m", "dmcmc_edu", "sample", "--target", "ring", "--integrator",
                           "dpmpp_2m", "--steps", "3", "--n", "64", "--seed", "4", "--quiet", "--out", str(out)],
                          cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = _run_json(out)
    assert run["complete"] and run["result"]["nfe_per_sample"] == 3.0
    samples = np.load(out / "samples.npy")
    assert samples.shape == (64, 2)
    s = run["settings"]
    x, info = sample_from_noise(ring(), (64, 2), integrator=dpmpp_2m, steps=3, sigma_max=s["sigma_max"],
                                sigma_min=s["sigma_min"], tweedie_sigma=s["sigma_min"],
                                generator=torch.Generator().manual_seed(chunk_seed(4, 0)))
    assert info.nfe == 3.0
    np.testing.assert_array_equal(samples, x.numpy())


def test_sample_dlg_with_a_solver(tmp_path, core_table_is_the_six):
    """``sample --dlg --integrator unipc --steps 2``: the denoising run costs 2 NFE per output, no Tweedie step."""
    out = tmp_path / "dlg"
    assert main(["sample", "--target", "ring", "--dlg", "--integrator", "unipc", "--steps", "2", "--n", "8",
                 "--n-levels", "50", "--seed", "1", "--quiet", "--out", str(out)]) == 0
    assert np.load(out / "samples.npy").shape == (8, 2)
    ledger = json.loads((out / "ledger.json").read_text())
    assert ledger["config"]["integrator"] == "unipc"
    assert ledger["per_output"]["parts"]["denoise"] == 2.0 and ledger["per_output"]["parts"]["tweedie"] == 0.0


def test_sample_mnist_with_a_solver(tmp_path, core_table_is_the_six):
    """``sample-mnist --integrator dpmpp_2m --steps 2``: 2 NFE per digit (the size check's pilot runs it too)."""
    out = tmp_path / "mnist"
    assert main(["sample-mnist", "--integrator", "dpmpp_2m", "--n", "4", "--batch", "4", "--steps", "2",
                 "--threads", "1", "--quiet", "--out", str(out)]) == 0
    assert np.load(out / "images.npy").shape == (4, 1, 28, 28)
    assert _run_json(out)["result"]["nfe_per_sample"] == 2.0


def test_sample_mnist_dlg_with_a_solver(tmp_path, core_table_is_the_six):
    """``sample-mnist --dlg --integrator dpmpp_2m``: the sampler resolves the name in the registry's table."""
    out = tmp_path / "mnist_dlg"
    assert main(["sample-mnist", "--dlg", "--integrator", "dpmpp_2m", "--n", "4", "--outputs-per-chain", "2",
                 "--steps", "2", "--n-skip", "1", "--threads", "1", "--quiet", "--out", str(out)]) == 0
    assert np.load(out / "images.npy").shape == (4, 1, 28, 28)
    ledger = json.loads((out / "ledger.json").read_text())
    assert ledger["config"]["integrator"] == "dpmpp_2m"
    assert ledger["per_output"]["parts"]["denoise"] == 2.0 and ledger["per_output"]["parts"]["tweedie"] == 0.0


def test_sample_distributed_with_a_solver(tmp_path, core_table_is_the_six):
    """``sample-distributed --integrator dpmpp_2m`` in one process (world size 1): 2 steps, 2 NFE per output."""
    out = tmp_path / "dist"
    assert main(["sample-distributed", "--target", "ring", "--integrator", "dpmpp_2m", "--chains", "4",
                 "--outputs-per-chain", "2", "--steps", "2", "--init-steps", "2", "--burn-in", "2:", "--eta", "0.01",
                 "--seed", "3", "--device", "cpu", "--quiet", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config_per_rank"]["integrator"] == "dpmpp_2m" and manifest["n_outputs"] == 8
    ledger = json.loads((out / "rank_0" / "ledger.json").read_text())
    assert ledger["per_output"]["parts"]["denoise"] == 2.0 and ledger["per_output"]["parts"]["tweedie"] == 0.0
    assert np.load(out / "rank_0" / "samples.npy").shape == (8, 2)


def test_a_core_function_takes_a_solver_as_a_function_not_as_a_name(core_table_is_the_six):
    """The core resolves only its own six names; a solver reaches it as a function (what the commands pass)."""
    from dmcmc_edu.core.integrators import sample_from_noise
    from dmcmc_edu.registry import get_integrator
    from dmcmc_edu.targets import ring

    with pytest.raises(ValueError, match="unknown integrator 'unipc'"):
        sample_from_noise(ring(), (4, 2), integrator="unipc", steps=2)
    x, info = sample_from_noise(ring(), (4, 2), integrator=get_integrator("unipc"), steps=2,
                                generator=torch.Generator().manual_seed(0))
    assert x.shape == (4, 2) and info.nfe == 2.0
