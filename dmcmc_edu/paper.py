"""The paper's DLG settings, and for each value whether it comes from the authors' code or from us.

Kim & Ye's public code shows (a) the initialisation and burn-in for CIFAR10 and CelebA-HQ-256 and (b) one
sampling loop, on CelebA-HQ-256: KAR2 with N = 20 (19 steps, 37 NFE), eta = 0.8, n_skip = 10, the argmax
sigma-update, the smallest-sigma pick that starts from the state before each block, and a final Tweedie step at
1e-3.  The CIFAR10 figures vary eta, n_skip, the integrator and its steps from curve to curve; none of those values
is in the code.  So:

* ``paper-celebahq`` -- every value is the authors';
* ``paper-cifar10``  -- the sigma range, sigma-update, pick, initialisation, burn-in and Tweedie step are the
  authors'; eta, n_skip, the integrator and its steps are *not* set: a :class:`DMCMCConfig` built from this
  preset keeps the toolkit's defaults for them (KAR1, 4 steps, eta 0.05, n_skip 1).  Set them for the curve you
  reproduce.

:data:`NOT_IN_THE_CODE` lists, per preset, the settings the authors' code does not give.
"""

from __future__ import annotations

__all__ = ["PRESETS", "NOT_IN_THE_CODE", "PAPER_FID", "PAPER_FID_SAMPLES", "PAPER_HEADLINE", "REFERENCES"]

_INIT = dict(init_steps=19, init_kick=0.5, sigma_update="classifier-argmax", pick="authors", final_tweedie="always")

PRESETS = {
    "paper-cifar10": dict(sigma_min=0.01, sigma_max=50.0, burn_in=[[10, 0.5], [10, None]], tweedie_sigma=1e-2,
                          **_INIT),
    "paper-celebahq": dict(sigma_min=0.01, sigma_max=348.0, burn_in=[[50, 1.6], [20, None]], tweedie_sigma=1e-3,
                           eta=0.8, n_skip=10, integrator="kar2", steps=19, **_INIT),
}
"""The paper's settings as :class:`~dmcmc_edu.core.sampler.DMCMCConfig` keywords (see the module docstring)."""

NOT_IN_THE_CODE = {"paper-cifar10": ("eta", "n_skip", "integrator", "steps"), "paper-celebahq": ()}
"""Settings a preset leaves at the toolkit's defaults because the authors' code does not give them."""


PAPER_FID = {
    "cifar10": {
        "kar1": {"without": [(4.45, 25), (4.15, 1000)], "with": [(3.86, 10), (2.63, 20), (2.44, 50)]},
        "kar2": {"without": [(4.6, 50), (3.04, 1000)], "with": [(3.15, 25), (2.65, 50), (2.19, 100)]},
        "pf_euler": {"without": [(9.51, 1000)], "with": [(5.25, 200)]},
        "rk45": {"without": [(4.38, 181)], "with": [(2.45, 60)]},
        "reverse_diffusion": {"without": [(2.13, 1000)], "with": [(2.14, 600)]},
        "euler_maruyama": {"without": [(2.22, 1000)], "with": [(2.22, 400)]},
    },
    "celebahq256": {
        "kar1": {"without": [(127.0, 400)], "with": [(14.11, 20)]},
        "kar2": {"without": [(19.02, 400)], "with": [(8.78, 48)]},
        "pf_euler": {"without": [(427.0, 400)], "with": [(28.37, 145)]},
        "rk45": {"without": [(126.0, 400)], "with": [(15.29, 127)]},
        "reverse_diffusion": {"without": [(240.0, 400)], "with": [(26.43, 130)]},
        "euler_maruyama": {"without": [(32.73, 400)], "with": [(23.19, 104)]},
    },
}
"""The paper's FIDs as ``(FID, NFE)`` pairs per integrator, without and with DLG, read off its figures
(arXiv v1; CelebA-HQ-256 "without" at about 400 NFE).  NFE as the paper counts it: the Gibbs steps, the
integrator and the Tweedie step per output; initialisation, burn-in and classifier calls are not counted."""

PAPER_FID_SAMPLES = {"cifar10": 50000, "celebahq256": 10000}
"""How many samples each of the paper's FIDs is computed on (pytorch-fid, against the training set's statistics)."""

PAPER_HEADLINE = {
    "cifar10": {"v1": [(3.86, 10), (2.63, 20)], "camera_ready": [(3.25, 10), (2.49, 16)]},
    "celebahq256": {"dlg": (6.99, 160), "previous_best_score_model": (7.16, 4000)},
    "cifar10_peers_at_10_nfe": {"dpm_solver": 4.70, "unipc": 3.87, "deis": 4.17, "ipndm_on_edm": 2.77},
}
"""The paper's headline claims as ``(FID, NFE)``; the peers at 10 NFE are those its CIFAR10 comparison cites."""

REFERENCES = {
    "dmcmc": ("Kim & Ye, Denoising MCMC for Accelerating Diffusion-Based Generative Models, ICML 2023",
              "https://arxiv.org/abs/2209.14593"),
    "edm": ("Karras et al., Elucidating the Design Space of Diffusion-Based Generative Models, NeurIPS 2022",
            "https://arxiv.org/abs/2206.00364"),
    "score_sde": ("Song et al., Score-Based Generative Modeling through Stochastic Differential Equations, ICLR 2021",
                  "https://arxiv.org/abs/2011.13456"),
    "ncsn": ("Song & Ermon, Generative Modeling by Estimating Gradients of the Data Distribution, NeurIPS 2019",
             "https://arxiv.org/abs/1907.05600"),
    "ncsn_improved": ("Song & Ermon, Improved Techniques for Training Score-Based Generative Models, NeurIPS 2020",
                      "https://arxiv.org/abs/2006.09011"),
    "tweedie": ("Efron, Tweedie's Formula and Selection Bias, JASA 2011", "https://doi.org/10.1198/jasa.2011.tm11181"),
    "mala": ("Roberts & Tweedie, Exponential convergence of Langevin distributions and their discrete "
             "approximations, Bernoulli 1996", "https://doi.org/10.2307/3318418"),
    "dpm_solver_pp": ("Lu et al., DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic Models, "
                      "2022", "https://arxiv.org/abs/2211.01095"),
    "unipc": ("Zhao et al., UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of Diffusion Models, "
              "NeurIPS 2023", "https://arxiv.org/abs/2302.04867"),
    "restart": ("Xu et al., Restart Sampling for Improving Generative Processes, NeurIPS 2023",
                "https://arxiv.org/abs/2306.14878"),
    "fid": ("Heusel et al., GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium, "
            "NeurIPS 2017", "https://arxiv.org/abs/1706.08500"),
}
"""Papers the notebooks cite, as ``(citation, link)``."""
