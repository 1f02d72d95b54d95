"""DLG settings for an analytic mixture, read off its spectrum: the toolkit's defaults on the toy rungs."""

from __future__ import annotations

from dmcmc_edu.core.sampler import DMCMCConfig
from dmcmc_edu.targets.mixture import GaussianMixture
from dmcmc_edu.targets.scale import check_sigma_scale

__all__ = ["dlg_config"]


def dlg_config(mixture: GaussianMixture, n_outputs: int, outputs_per_chain: int = 2, **overrides) -> DMCMCConfig:
    """Defaults for an analytic mixture that give correct mode weights.

    * ``sigma_min``/``sigma_max`` from the mixture's ``default_sigma_min/max`` (overrides far from the data's
      scale are refused, doubtful ones warned about: :func:`~dmcmc_edu.targets.scale.check_sigma_scale`);
    * ``eta = 0.08 tau_min`` (tau_min: the smallest component variance), so
      that at small sigma the Langevin step stays far below the stability
      bound 4 (tau + sigma^2) and the unadjusted chain's variance bias is ~2 %;
    * ``eta_rel = (2 / d)^(1/3)``: steps proportional to sigma^2 at large
      sigma, where the chains must travel between modes; the d^(-1/3) factor
      is the MALA step scaling that keeps the acceptance rate up in high d;
    * ``x_update = "mala"`` (the mixture has a log-density) and the exact sigma-update;
    * ``outputs_per_chain = 2`` and ``n_chains = ceil(n_outputs / 2)``: chains
      switch modes only now and then, so the mode weights of the outputs are
      about as accurate as ``n_chains`` independent samples would make them;
      few outputs per chain keep that close to ``n_outputs``.
    """
    tau_min = mixture.eigenvalue_range()[0]
    kw = dict(sigma_min=mixture.default_sigma_min(), sigma_max=mixture.default_sigma_max(), n_levels=200,
              eta=0.08 * tau_min, eta_rel=(2.0 / mixture.d) ** (1.0 / 3.0), x_update="mala",
              sigma_update="exact", integrator="kar1", steps=8, n_skip=1,
              n_chains=-(-n_outputs // outputs_per_chain), outputs_per_chain=outputs_per_chain)
    kw.update(overrides)
    check_sigma_scale(kw["sigma_min"], kw["sigma_max"], mixture)  # a range far from the data's scale: ValueError
    return DMCMCConfig(**kw)
