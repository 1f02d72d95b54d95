"""dmcmc_edu: Denoising MCMC (Denoising Langevin Gibbs) for diffusion models -- a notebook-first toolkit.

What a notebook needs is importable from here::

    from dmcmc_edu import DMCMCSampler, dlg_config, ring
    mix = ring()
    result = DMCMCSampler(mix, dlg_config(mix, n_outputs=2000), data_shape=(2,)).run()

The paper itself lives in :mod:`dmcmc_edu.core` (read its files in the order its docstring gives); the exact
targets in :mod:`dmcmc_edu.targets`; the README has the map of the other folders.
"""

__version__ = "0.1.0"

from dmcmc_edu import solvers  # noqa: E402,F401  (registers the integrators beyond the paper's six)
from dmcmc_edu.core.contract import CountingDenoiser  # noqa: E402
from dmcmc_edu.core.dlg import DLGInfo, DLGState, dlg_init, dlg_step  # noqa: E402
from dmcmc_edu.core.integrators import (  # noqa: E402
    INTEGRATORS,
    PAPER_INTEGRATORS,
    euler_maruyama,
    get_integrator,
    kar1,
    kar2,
    pf_euler,
    reverse_diffusion,
    rk45,
    sample_from_noise,
)
from dmcmc_edu.core.langevin import mala_step, ula_step  # noqa: E402
from dmcmc_edu.core.ledger import NFELedger  # noqa: E402
from dmcmc_edu.core.sampler import DMCMCConfig, DMCMCResult, DMCMCSampler  # noqa: E402
from dmcmc_edu.core.sigma_updates import SIGMA_UPDATES, make_sigma_update  # noqa: E402
from dmcmc_edu.core.tweedie import tweedie  # noqa: E402
from dmcmc_edu.paper import PRESETS  # noqa: E402
from dmcmc_edu.targets import GaussianMixture, dlg_config, grid, load_target, lowrank, ring  # noqa: E402

__all__ = [
    "CountingDenoiser", "DLGInfo", "DLGState", "dlg_init", "dlg_step", "INTEGRATORS", "PAPER_INTEGRATORS",
    "euler_maruyama", "get_integrator", "kar1", "kar2", "pf_euler", "reverse_diffusion", "rk45", "sample_from_noise",
    "mala_step", "ula_step", "NFELedger", "PRESETS", "DMCMCConfig", "DMCMCResult", "DMCMCSampler", "SIGMA_UPDATES",
    "make_sigma_update", "tweedie", "GaussianMixture", "dlg_config", "grid", "load_target", "lowrank", "ring",
]
