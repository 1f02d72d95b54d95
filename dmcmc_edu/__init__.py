"""dmcmc_edu: Denoising MCMC (Denoising Langevin Gibbs) for diffusion models -- a notebook-first toolkit.

Start with :mod:`dmcmc_edu.targets.mixture` (the exact teaching object), :mod:`dmcmc_edu.core.integrators` (the six
integrators of the paper, per-sample sigma_start) and :mod:`dmcmc_edu.core.sampler` (DLG chains, the NFE ledger).
"""

__version__ = "0.1.0"
