"""dmcmc_edu: Denoising MCMC (Denoising Langevin Gibbs) for diffusion models -- a notebook-first toolkit.

What a notebook needs is importable from here::

    from dmcmc_edu import DMCMCSampler, dlg_config, ring
    mix = ring()
    result = DMCMCSampler(mix, dlg_config(mix, n_outputs=2000), data_shape=(2,)).run()

The paper itself lives in :mod:`dmcmc_edu.core` (read its files in the order its docstring gives); the exact
targets in :mod:`dmcmc_edu.targets`; the README has the map of the other folders.

Each name here is loaded when it is first used (so ``import dmcmc_edu.core`` loads the core alone).
``INTEGRATORS`` and ``get_integrator`` here are those of :mod:`dmcmc_edu.registry`: the paper's six and the
solvers of :mod:`dmcmc_edu.solvers`.
"""

import importlib

__version__ = "0.1.0"

_CORE = "dmcmc_edu.core."
_EXPORTS = {
    "CountingDenoiser": _CORE + "contract",
    **dict.fromkeys(("DLGInfo", "DLGState", "DLGKernel", "DivergenceMonitor", "dlg_kernel", "dlg_init", "dlg_step"),
                    _CORE + "dlg"),
    **dict.fromkeys(("PAPER_INTEGRATORS", "euler_maruyama", "kar1", "kar2", "pf_euler", "reverse_diffusion", "rk45",
                     "sample_from_noise"), _CORE + "integrators"),
    **dict.fromkeys(("mala_step", "ula_step", "StepSize"), _CORE + "langevin"),
    "NFELedger": _CORE + "ledger",
    **dict.fromkeys(("DMCMCConfig", "DMCMCResult", "DMCMCSampler", "BurnInPhase"), _CORE + "sampler"),
    **dict.fromkeys(("SIGMA_UPDATES", "make_sigma_update"), _CORE + "sigma_updates"),
    "tweedie": _CORE + "tweedie",
    "PRESETS": "dmcmc_edu.paper",
    **dict.fromkeys(("GaussianMixture", "dlg_config", "grid", "load_target", "lowrank", "ring"), "dmcmc_edu.targets"),
    **dict.fromkeys(("get_integrator", "integrator_table"), "dmcmc_edu.registry"),
}

__all__ = [*_EXPORTS, "INTEGRATORS"]


def __getattr__(name: str):
    """Load an exported name, or a subpackage (``dmcmc_edu.targets``), on first use."""
    if name == "INTEGRATORS":
        value = importlib.import_module("dmcmc_edu.registry").integrator_table()
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    else:
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
