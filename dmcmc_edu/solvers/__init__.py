"""Integrators beyond the paper's six, with the same signature (``sigmas=`` or ``sigma_start, sigma_min, steps``).

* ``"pc"`` -- the predictor-corrector sampler of Song et al. (2021) (:mod:`dmcmc_edu.solvers.song_pc`);
* ``"em_score_sde"`` -- Euler-Maruyama discretised as score_sde does it (:mod:`dmcmc_edu.solvers.score_sde_em`);
* ``"dpmpp_2m"``, ``"dpmpp_2m_sde"`` -- DPM-Solver++(2M) and its SDE form (Lu et al. 2022;
  :mod:`dmcmc_edu.solvers.dpmpp`);
* ``"unipc"`` -- UniPC, UniP-p + UniC-p (Zhao et al. 2023; :mod:`dmcmc_edu.solvers.unipc`);
* ``"restart"`` -- the Restart sampler (Xu et al. 2023; :mod:`dmcmc_edu.solvers.restart`).

The last four (:data:`MODERN_SOLVERS`) run by default on Karras et al.'s levels from each sample's own
``sigma_start`` and end at sigma = 0 with the data prediction at ``sigma_min`` (no extra Tweedie step).

Importing this package registers nothing: :data:`SOLVERS` is a plain table, and :mod:`dmcmc_edu.registry` joins
it to the core's without changing it (``get_integrator("pc")`` there; the core's sampler finds them by name in
``integrator_table()``, passed as ``DMCMCSampler(..., integrators=...)``).
"""

from dmcmc_edu.solvers.dpmpp import dpmpp_2m, dpmpp_2m_sde
from dmcmc_edu.solvers.restart import RESTART_DEFAULT, RESTART_S_NOISE, restart
from dmcmc_edu.solvers.score_sde_em import euler_maruyama_score_sde
from dmcmc_edu.solvers.song_pc import langevin_corrector, predictor_corrector
from dmcmc_edu.solvers.unipc import unipc

#: the solvers by name, in the order the registry lists them after the paper's six
SOLVERS = {"pc": predictor_corrector, "em_score_sde": euler_maruyama_score_sde, "dpmpp_2m": dpmpp_2m,
           "dpmpp_2m_sde": dpmpp_2m_sde, "unipc": unipc, "restart": restart}

#: the few-step solvers of issue 13, in the order of their papers
MODERN_SOLVERS = ("dpmpp_2m", "dpmpp_2m_sde", "unipc", "restart")

__all__ = ["langevin_corrector", "predictor_corrector", "euler_maruyama_score_sde", "dpmpp_2m", "dpmpp_2m_sde",
           "unipc", "restart", "RESTART_DEFAULT", "RESTART_S_NOISE", "MODERN_SOLVERS", "SOLVERS"]
