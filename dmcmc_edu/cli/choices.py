"""The names and constants the commands' parsers show, written out so that ``--help`` imports no torch.

Each is a copy of a table or constant of the library (named beside it); ``tests/test_cli_help.py`` checks that
every copy equals its source, so a new integrator or a changed default fails a test instead of drifting.
"""

from __future__ import annotations

__all__ = ["INTEGRATORS", "SIGMA_UPDATES", "X_UPDATES", "MNIST_SIGMA_MIN", "MNIST_SIGMA_MAX", "FEATURE_NET_NAME",
           "REFERENCE_NAME", "GRADING_RUN_SECONDS"]

INTEGRATORS = ("kar1", "kar2", "pf_euler", "rk45", "reverse_diffusion", "euler_maruyama", "pc", "em_score_sde",
               "dpmpp_2m", "dpmpp_2m_sde", "unipc", "restart")
"""Every integrator by name: the paper's six (dmcmc_edu.core.integrators), then the solvers (dmcmc_edu.solvers)."""

SIGMA_UPDATES = ("exact", "classifier-argmax", "classifier-sample")
"""dmcmc_edu.core.sigma_updates.SIGMA_UPDATES"""

X_UPDATES = ("ula", "mala")
"""dmcmc_edu.core.langevin.X_UPDATES"""

MNIST_SIGMA_MIN = 0.01
"""dmcmc_edu.experiments.mnist.SIGMA_MIN"""

MNIST_SIGMA_MAX = 20.0
"""dmcmc_edu.experiments.mnist.SIGMA_MAX"""

FEATURE_NET_NAME = "mnist_feature_net.pt"
"""dmcmc_edu.evaluation.mnist_fid.FEATURE_NET_NAME"""

REFERENCE_NAME = "mnist_fid_ref_test.pt"
"""dmcmc_edu.evaluation.mnist_fid.REFERENCE_NAME"""

GRADING_RUN_SECONDS = 14400.0
"""dmcmc_edu.grading.course.RUN_SECONDS"""
