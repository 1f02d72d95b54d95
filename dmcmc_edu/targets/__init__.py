"""Targets with exact noised densities: Gaussian mixtures, their fast spectral evaluator and ready-made presets.

The names below are the public interface (``from dmcmc_edu.targets import ring``):

* :class:`GaussianMixture` (:mod:`dmcmc_edu.targets.mixture`) -- the exact target, a denoiser of the contract;
* :class:`SpectralMixture` (:mod:`dmcmc_edu.targets.spectral`) -- the same mixture, evaluated faster;
* :func:`ring`, :func:`grid`, :func:`lowrank`, :func:`preset`, :func:`load_target`
  (:mod:`dmcmc_edu.targets.presets`) -- ready-made targets and target specs;
* :func:`dlg_config` (:mod:`dmcmc_edu.targets.dlg_defaults`) -- DLG settings read off a mixture's spectrum;
* :class:`ExactLevelClassifier` -- a noise-level classifier that returns the exact posterior (an oracle);
* :func:`check_sigma_scale` (:mod:`dmcmc_edu.targets.scale`) -- does a noise range fit the data's scale?
"""

from dmcmc_edu.targets.dlg_defaults import dlg_config
from dmcmc_edu.targets.exact_classifier import ExactLevelClassifier
from dmcmc_edu.targets.mixture import GaussianMixture
from dmcmc_edu.targets.presets import PRESETS, grid, load_target, lowrank, preset, ring
from dmcmc_edu.targets.scale import SigmaScaleWarning, check_sigma_scale, data_scale
from dmcmc_edu.targets.spectral import SpectralMixture

__all__ = ["GaussianMixture", "SpectralMixture", "ring", "grid", "lowrank", "preset", "load_target", "PRESETS",
           "dlg_config", "ExactLevelClassifier", "check_sigma_scale", "data_scale", "SigmaScaleWarning"]
