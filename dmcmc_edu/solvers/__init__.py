"""Integrators beyond the paper's six, with the same signature, registered by name in the core's registry.

* ``"pc"`` -- the predictor-corrector sampler of Song et al. (2021) (:mod:`dmcmc_edu.solvers.song_pc`);
* ``"em_score_sde"`` -- Euler-Maruyama discretised as score_sde does it (:mod:`dmcmc_edu.solvers.score_sde_em`).

Importing :mod:`dmcmc_edu` registers them, so ``get_integrator("pc")``, the sampler's
``integrator="pc"`` and the CLI's ``--integrator pc`` all find them.
"""

from dmcmc_edu.core.integrators import register_integrator
from dmcmc_edu.solvers.score_sde_em import euler_maruyama_score_sde
from dmcmc_edu.solvers.song_pc import langevin_corrector, predictor_corrector

register_integrator("pc", predictor_corrector)
register_integrator("em_score_sde", euler_maruyama_score_sde)

__all__ = ["langevin_corrector", "predictor_corrector", "euler_maruyama_score_sde"]
