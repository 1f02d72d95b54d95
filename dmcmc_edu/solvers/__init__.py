"""Integrators beyond the paper's six, with the same signature, registered by name in the core's registry.

* ``"pc"`` -- the predictor-corrector sampler of Song et al. (2021) (:mod:`dmcmc_edu.solvers.song_pc`);
* ``"em_score_sde"`` -- Euler-Maruyama discretised as score_sde does it (:mod:`dmcmc_edu.solvers.score_sde_em`);
* ``"dpmpp_2m"``, ``"dpmpp_2m_sde"`` -- DPM-Solver++(2M) and its SDE form (Lu et al. 2022;
  :mod:`dmcmc_edu.solvers.dpmpp`);
* ``"unipc"`` -- UniPC, UniP-p + UniC-p (Zhao et al. 2023; :mod:`dmcmc_edu.solvers.unipc`);
* ``"restart"`` -- the Restart sampler (Xu et al. 2023; :mod:`dmcmc_edu.solvers.restart`).

The last four (:data:`MODERN_SOLVERS`) run on Karras et al.'s levels from each sample's own ``sigma_start`` and end
at sigma = 0 with the data prediction at ``sigma_min`` (no extra Tweedie step).

Importing :mod:`dmcmc_edu` registers them, so ``get_integrator("pc")``, the sampler's
``integrator="pc"`` and the CLI's ``--integrator pc`` all find them.
"""

from dmcmc_edu.core.integrators import register_integrator
from dmcmc_edu.solvers.dpmpp import dpmpp_2m, dpmpp_2m_sde
from dmcmc_edu.solvers.restart import RESTART_DEFAULT, restart
from dmcmc_edu.solvers.score_sde_em import euler_maruyama_score_sde
from dmcmc_edu.solvers.song_pc import langevin_corrector, predictor_corrector
from dmcmc_edu.solvers.unipc import unipc

register_integrator("pc", predictor_corrector)
register_integrator("em_score_sde", euler_maruyama_score_sde)
register_integrator("dpmpp_2m", dpmpp_2m)
register_integrator("dpmpp_2m_sde", dpmpp_2m_sde)
register_integrator("unipc", unipc)
register_integrator("restart", restart)

#: the few-step solvers of issue 13, in the order of their papers
MODERN_SOLVERS = ("dpmpp_2m", "dpmpp_2m_sde", "unipc", "restart")

__all__ = ["langevin_corrector", "predictor_corrector", "euler_maruyama_score_sde", "dpmpp_2m", "dpmpp_2m_sde",
           "unipc", "restart", "RESTART_DEFAULT", "MODERN_SOLVERS"]
