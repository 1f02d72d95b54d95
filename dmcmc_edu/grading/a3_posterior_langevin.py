"""Checks of assignment A3, *The posterior over noise levels and Langevin*
(``notebooks/assignments/source/a3_posterior_and_langevin``).

The student writes five functions; each check runs one of them on generated cases (a 64-dimensional mixture where
a density underflows when it leaves the logs) and compares it with the library:

* ``log_p_sigma(x, sigma, weights, means, tau)`` -- log p_sigma(x) of an isotropic Gaussian mixture
  (reference :meth:`GaussianMixture.log_prob <dmcmc_edu.targets.GaussianMixture.log_prob>`);
* ``log_sigma_posterior(log_density, x, grid, log_prior)`` -- log p(sigma_i | x) on a grid of levels
  (reference :meth:`GaussianMixture.sigma_log_posterior <dmcmc_edu.targets.GaussianMixture.sigma_log_posterior>`);
* ``ula_step(D, x, sigma, eta, z)`` -- x' = x + (eta/2) score + sqrt(eta) z (reference
  :func:`dmcmc_edu.core.langevin.ula_step`, same draws);
* ``stability_bound(tau_min, sigma)`` -- reference :func:`dmcmc_edu.core.langevin.langevin_stability_bound`;
* ``mala_log_acceptance(log_prob, score, x, x_prop, sigma, eta)`` -- the log Metropolis-Hastings ratio of MALA
  (:func:`reference_mala_log_acceptance`, which reproduces :func:`dmcmc_edu.core.langevin.mala_step`'s decisions).
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from dmcmc_edu.core.langevin import langevin_stability_bound
from dmcmc_edu.core.langevin import ula_step as reference_ula_step
from dmcmc_edu.core.random import normal
from dmcmc_edu.grading.feedback import as_array, call_student, compare, fail, graded, hidden_seed, ok
from dmcmc_edu.plotting import finish_figure
from dmcmc_edu.targets import GaussianMixture, ring

__all__ = ["isotropic_mixture", "reference_mala_log_acceptance", "check_log_p_sigma", "check_log_sigma_posterior",
           "check_ula_step", "check_stability_bound", "check_mala_log_acceptance", "plot_sigma_posterior",
           "plot_langevin"]

LOG_SUM_EXP_MISSING = ("this is what happens when the log-sum-exp is missing: in {d} dimensions a density such as "
                       "exp({low:.4g}) underflows to 0, and its log becomes -inf (or 0/0 = NaN). Stay in logs: "
                       "combine log-terms with torch.logsumexp instead of exp, sum, log")


def isotropic_mixture(d: int = 64, taus=(0.01, 0.02, 0.05), weights=(0.5, 0.3, 0.2), seed: int = 0):
    """A mixture of isotropic Gaussians N(mu_k, tau_k I) in ``d`` dimensions, means drawn N(0, I) with ``seed``.

    Returns ``(mixture, weights [K], means [K, d], tau [K])`` (float64), the mixture as a
    :class:`~dmcmc_edu.targets.GaussianMixture` and its parameters as the assignment's functions take them.
    """
    g = torch.Generator().manual_seed(seed)
    w = torch.tensor(weights, dtype=torch.float64)
    w = w / w.sum()
    tau = torch.tensor(taus, dtype=torch.float64)
    means = torch.randn(len(taus), d, generator=g, dtype=torch.float64)
    cov = tau[:, None, None] * torch.eye(d, dtype=torch.float64)
    return GaussianMixture(w, means, cov), w, means, tau


def _noised(mixture: GaussianMixture, levels, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One sample of the mixture per level, noised to that level; returns ``(x, levels)``."""
    g = torch.Generator().manual_seed(seed)
    s = torch.tensor(levels, dtype=torch.float64)
    x0 = mixture.sample(s.shape[0], g)
    return x0 + s[:, None] * torch.randn(x0.shape, generator=g, dtype=torch.float64), s


def _levels(s) -> str:
    return "[" + ", ".join(f"{v:.3g}" for v in torch.as_tensor(s).reshape(-1).tolist()) + "]"


def _finite_where_reference_is(got, want, naive, name: str, where: str, d: int) -> None:
    """NaN/inf entries where the exact value is finite: the missing log-sum-exp is named when the answer is what
    the computation outside the logs (``naive``: exp, sum, log) gives -- non-finite in the same entries, equal
    elsewhere; otherwise the message says where, with a neutral hint."""
    g, w, n = as_array(got, name), as_array(want, "the reference"), np.asarray(naive, dtype=np.float64)
    if g.shape == w.shape and not np.all(np.isfinite(g)) and np.all(np.isfinite(w)):
        bad = ~np.isfinite(g)
        low = float(np.min(w[bad]))
        said = (f"{where}: {name} has {int(bad.sum())} NaN or infinite entries where the exact values are finite "
                f"(the smallest is {low:.4g})")
        if n.shape == g.shape and np.array_equal(bad, ~np.isfinite(n)) and np.allclose(g[~bad], n[~bad], rtol=1e-7,
                                                                                       atol=1e-6):
            fail(f"{said}; " + LOG_SUM_EXP_MISSING.format(d=d, low=low))
        first = [int(i) for i in np.argwhere(bad)[0]]
        fail(f"{said}, the first at entry {first[0] if len(first) == 1 else first}; in {d} dimensions a density "
             f"such as exp({low:.4g}) is below the smallest float -- which step of yours leaves the logs?")


# --------------------------------------------------------------------------- log p_sigma(x)


def _component_terms(x, sigma, weights, means, tau, drop_constant=False, var_power=2):
    """log w_k + log N(x; mu_k, (tau_k + sigma^var_power) I), ``[B, K]`` (optionally without the constant)."""
    var = tau[None, :] + sigma[:, None] ** var_power  # [B, K]
    sq = ((x[:, None, :] - means[None]) ** 2).sum(-1)
    const = 0.0 if drop_constant else -0.5 * x.shape[1] * torch.log(2 * math.pi * var)
    return torch.log(weights)[None] + const - 0.5 * sq / var


def _log_p_cases(hidden: bool):
    if not hidden:
        mix, w, mu, tau = isotropic_mixture(64)
        x, _ = _noised(mix, [0.05, 1.0, 0.3, 3.0, 0.1], seed=4)
        return [(x, torch.tensor([0.05, 0.05, 0.5, 2.0, 0.2], dtype=torch.float64), w, mu, tau, mix)]
    mix, w, mu, tau = isotropic_mixture(32, taus=(0.02, 0.005, 0.1, 0.03), weights=(1, 2, 3, 4), seed=7)
    x, _ = _noised(mix, [0.02, 4.0, 0.5, 0.05, 5.0, 0.2], seed=hidden_seed(8))  # row 1 underflows at 0.03
    mix2, w2, mu2, tau2 = isotropic_mixture(2, taus=(0.1, 0.3), weights=(0.7, 0.3), seed=9)
    x2, _ = _noised(mix2, [0.1, 1.0, 3.0], seed=hidden_seed(10))
    return [(x, torch.tensor([0.02, 0.03, 1.0, 0.05, 4.0, 0.1], dtype=torch.float64), w, mu, tau, mix),
            (x2, torch.tensor([0.2, 0.5, 2.0], dtype=torch.float64), w2, mu2, tau2, mix2)]


@graded(off_limits=("dmcmc_edu.targets.mixture:GaussianMixture.log_prob",
                    "dmcmc_edu.targets.mixture:GaussianMixture.component_log_prob"))
def check_log_p_sigma(log_p_sigma, hidden: bool = False) -> str:
    """``log_p_sigma(x, sigma, weights, means, tau)`` against the mixture's exact ``log_prob``."""
    for x, sigma, w, mu, tau, mix in _log_p_cases(hidden):
        where = f"in {x.shape[1]} dimensions at sigma = {_levels(sigma)}"
        got = call_student(log_p_sigma, "log_p_sigma", x.clone(), sigma.clone(), w.clone(), mu.clone(), tau.clone())
        want = mix.log_prob(x, sigma)
        naive = torch.log(torch.exp(_component_terms(x, sigma, w, mu, tau)).sum(dim=1))
        _finite_where_reference_is(got, want, naive, "log_p_sigma", where, x.shape[1])
        lse = lambda t: torch.logsumexp(t, dim=1)  # noqa: E731
        mistakes = {
            "leaving out the normalising constant -d/2 log(2 pi (tau_k + sigma^2)) (it depends on sigma, so "
            "p(sigma | x) needs it)": lse(_component_terms(x, sigma, w, mu, tau, drop_constant=True)),
            "tau_k + sigma instead of tau_k + sigma^2": lse(_component_terms(x, sigma, w, mu, tau, var_power=1)),
            "leaving out the weights w_k": lse(_component_terms(x, sigma, torch.ones_like(w), mu, tau)),
            "the largest component alone (a max instead of the log-sum-exp)":
                _component_terms(x, sigma, w, mu, tau).max(dim=1).values,
        }
        compare("log_p_sigma(x, sigma, weights, means, tau)", got, want, where=where, rtol=1e-7, atol=1e-6,
                mistakes=mistakes, hint="log p_sigma(x) = logsumexp_k [log w_k + log N(x; mu_k, (tau_k + sigma^2) I)]"
                                        " with log N = -d/2 log(2 pi v) - |x - mu_k|^2 / (2 v)")
    return ok("log_p_sigma is the exact log-density of the noised mixture, also where densities underflow")


# --------------------------------------------------------------------------- log p(sigma_i | x)


def _posterior_cases(hidden: bool):
    if not hidden:
        mix, *_ = isotropic_mixture(64)
        x, _ = _noised(mix, [0.05, 1.0, 0.3, 3.0, 0.1], seed=5)
        levels = torch.exp(torch.linspace(math.log(20.0), math.log(0.02), 12, dtype=torch.float64))
        return [(mix, x, levels, torch.linspace(0.0, -3.0, 12, dtype=torch.float64))]
    mix, *_ = isotropic_mixture(32, taus=(0.02, 0.005, 0.1, 0.03), weights=(1, 2, 3, 4), seed=7)
    x, _ = _noised(mix, [0.02, 2.0, 0.5, 0.05, 5.0, 0.2, 10.0], seed=hidden_seed(6))
    levels = torch.exp(torch.linspace(math.log(0.01), math.log(30.0), 9, dtype=torch.float64))
    prior = torch.log(levels) - 2.0  # unnormalised: the sum of the weights is not 1
    mix2 = ring()
    x2, _ = _noised(mix2, [0.1, 1.0, 4.0], seed=hidden_seed(12))
    levels2 = torch.tensor([5.0, 2.0, 1.0, 0.5, 0.2], dtype=torch.float64)
    return [(mix, x, levels, prior), (mix2, x2, levels2, torch.tensor([0.0, 1.0, -1.0, 0.5, 2.0]).double())]


def _per_sample_levels(log_density):
    """``log_density`` that insists on the contract: sigma of shape [B], one level per row of x."""
    def checked(x, sigma):
        if not isinstance(sigma, torch.Tensor) or sigma.ndim != 1 or sigma.shape[0] != x.shape[0]:
            shape = tuple(sigma.shape) if isinstance(sigma, torch.Tensor) else type(sigma).__name__
            fail(f"log_density(x, sigma) was called with sigma of shape {shape} for x of shape {tuple(x.shape)}; "
                 "pass one level per row, sigma of shape [B] (e.g. torch.full((B,), sigma_i))")
        return log_density(x, sigma)

    return checked


@graded(off_limits=("dmcmc_edu.targets.mixture:GaussianMixture.sigma_log_posterior",))
def check_log_sigma_posterior(log_sigma_posterior, hidden: bool = False) -> str:
    """``log_sigma_posterior(log_density, x, grid, log_prior)`` against the mixture's ``sigma_log_posterior``."""
    for mix, x, levels, prior in _posterior_cases(hidden):
        where = f"in {x.shape[1]} dimensions on the grid {_levels(levels)} with log_prior {_levels(prior)}"
        got = call_student(log_sigma_posterior, "log_sigma_posterior", _per_sample_levels(mix.log_prob), x.clone(),
                           levels.clone(), prior.clone())
        want = mix.sigma_log_posterior(x, levels, log_prior=prior)
        joint_no_prior = torch.stack([mix.log_prob(x, float(s)) for s in levels], dim=1)
        joint = joint_no_prior + prior[None]
        p = torch.exp(joint)
        _finite_where_reference_is(got, want, torch.log(p / p.sum(dim=1, keepdim=True)), "log_sigma_posterior",
                                   where, x.shape[1])
        mistakes = {
            "leaving out the prior p(sigma)": mix.sigma_log_posterior(x, levels),
            "subtracting the log prior instead of adding it": mix.sigma_log_posterior(x, levels, log_prior=-prior),
            "not normalising over the levels (log p_sigma(x) + log prior, no log-sum-exp subtracted)": joint,
            "normalising over the samples (dim 0) instead of over the levels": joint - torch.logsumexp(joint, 0),
        }
        compare("log_sigma_posterior(log_density, x, grid, log_prior)", got, want, where=where, rtol=1e-7,
                atol=1e-6, mistakes=mistakes,
                hint="log p(sigma_i | x) = log p_(sigma_i)(x) + log_prior_i - logsumexp_j [log p_(sigma_j)(x) + "
                     "log_prior_j]; is row b a distribution over the levels?")
    return ok("log_sigma_posterior is the exact posterior over the noise levels, stable in 64 dimensions")


# --------------------------------------------------------------------------- the ULA step


def _ula_cases(hidden: bool):
    if not hidden:
        mix = ring()
        x, _ = _noised(mix, [0.1, 0.5, 2.0, 1.0, 0.3, 4.0], seed=21)
        return [(mix, x, torch.tensor([0.1, 0.5, 2.0, 1.0, 0.3, 4.0], dtype=torch.float64), 0.05, 31)]
    mix, *_ = isotropic_mixture(64)
    x, s = _noised(mix, [0.05, 1.0, 0.3, 3.0, 0.1], seed=hidden_seed(22))
    mix2 = ring(n_modes=4)
    x2, s2 = _noised(mix2, [0.2, 1.5, 0.7], seed=hidden_seed(23))
    return [(mix, x, s, 0.002, hidden_seed(32)), (mix2, x2, s2 * 1.3, 0.4, hidden_seed(33))]


@graded(off_limits=("dmcmc_edu.core.langevin:ula_step",))
def check_ula_step(ula_step, hidden: bool = False) -> str:
    """``ula_step(D, x, sigma, eta, z)`` against :func:`dmcmc_edu.core.langevin.ula_step` with the same draws z."""
    for mix, x, sigma, eta, seed in _ula_cases(hidden):
        eta_b = torch.full_like(sigma, eta)  # the library takes one step size per chain
        want, _ = reference_ula_step(mix, x, sigma, eta_b, torch.Generator().manual_seed(seed))
        z = normal(x.shape, torch.Generator().manual_seed(seed), x.dtype, x.device)  # the draws ula_step made
        got = call_student(ula_step, "ula_step", mix, x.clone(), sigma.clone(), eta, z.clone())
        score = mix.score(x, sigma)
        drift, noise = 0.5 * eta * score, math.sqrt(eta) * z
        mistakes = {"a drift eta * score instead of (eta/2) * score": x + 2 * drift + noise,
                    "noise sqrt(2 eta) z instead of sqrt(eta) z (this library's convention is x' = x + (eta/2) "
                    "score + sqrt(eta) z)": x + drift + math.sqrt(2) * noise,
                    "a drift eta * score and noise sqrt(2 eta) z (the other convention)":
                        x + 2 * drift + math.sqrt(2) * noise,
                    "a score with sigma instead of sigma^2 in the denominator": x + drift * sigma[:, None] + noise,
                    "a score of the wrong sign (x - D instead of D - x)": x - drift + noise,
                    "no noise term": x + drift}
        g = as_array(got, "ula_step")
        b = int(torch.argmax(sigma))
        moved = f"{np.linalg.norm(g[b] - x[b].numpy()):.3g}" if g.shape == tuple(x.shape) else "?"
        compare("ula_step(D, x, sigma, eta, z)", got, want, where=f"in {x.shape[1]} dimensions at sigma = "
                f"{_levels(sigma)}, eta = {eta}", rtol=1e-7, atol=1e-9, mistakes=mistakes,
                hint=f"at sigma = {sigma[b].item():.3g} your step moved x by {moved}, the reference by "
                     f"{(want[b] - x[b]).norm().item():.3g}: is the drift (eta/2) * score with score = "
                     "(D(x, sigma) - x) / sigma^2, and the noise sqrt(eta) z?")
    return ok("ula_step takes the library's Langevin step x' = x + (eta/2) score + sqrt(eta) z")


# --------------------------------------------------------------------------- the stability bound


@graded(off_limits=("dmcmc_edu.core.langevin:langevin_stability_bound",))
def check_stability_bound(stability_bound, hidden: bool = False) -> str:
    """``stability_bound(tau_min, sigma)`` against :func:`dmcmc_edu.core.langevin.langevin_stability_bound`."""
    cases = [(0.01, [0.0, 0.1, 1.0, 3.0])] if not hidden else [(0.25, [0.5, 2.0, 0.05]), (1e-3, [10.0, 0.01])]
    for tau_min, levels in cases:
        sigma = torch.tensor(levels, dtype=torch.float64)
        got = call_student(stability_bound, "stability_bound", tau_min, sigma.clone())
        want = langevin_stability_bound(tau_min, sigma)
        var = tau_min + sigma**2
        mistakes = {"a bound of 2 (tau + sigma^2), a factor 2 too small (the bound of a drift eta * score)": 2 * var,
                    "a bound of 8 (tau + sigma^2), a factor 2 too large": 8 * var,
                    "a bound of tau + sigma^2, a factor 4 too small": var,
                    "the bound 4 tau with sigma left out (the chain runs on p_sigma, whose variance is tau + sigma^2)":
                        torch.full_like(sigma, 4 * tau_min),
                    "a bound of 4 (tau + sigma), with sigma not squared": 4 * (tau_min + sigma),
                    "a bound of 4 sqrt(tau + sigma^2), a standard deviation instead of a variance": 4 * var.sqrt()}
        compare("stability_bound(tau_min, sigma)", got, want,
                where=f"for tau_min = {tau_min} at sigma = {_levels(sigma)}", rtol=1e-9, atol=1e-12,
                mistakes=mistakes, hint="on N(0, v I) a ULA step multiplies x by (1 - eta / (2 v)) and adds noise: "
                                        "for which eta is |1 - eta / (2 v)| < 1?")
    return ok("stability_bound is the largest stable Langevin step, 4 (tau_min + sigma^2)")


# --------------------------------------------------------------------------- the MALA ratio


def reference_mala_log_acceptance(log_prob, score, x, x_prop, sigma, eta):
    """log [p(x') q(x | x') / (p(x) q(x' | x))], q(y | x) = N(y; x + (eta/2) score(x), eta I); ``[B]``.

    The same ratio as :func:`dmcmc_edu.core.langevin.mala_step` (tests check that it reproduces its decisions).
    """
    def log_q(to, frm):  # log N(to; frm + (eta/2) score(frm), eta I) up to a constant that cancels
        return -((to - frm - 0.5 * eta * score(frm, sigma)) ** 2).sum(1) / (2 * eta)

    return log_prob(x_prop, sigma) - log_prob(x, sigma) + log_q(x, x_prop) - log_q(x_prop, x)


def _mala_cases(hidden: bool):
    if not hidden:
        mix = ring()
        x, s = _noised(mix, [0.1, 0.5, 2.0, 1.0, 0.3, 4.0], seed=41)
        return [(mix, x, s, 0.3, 51)]
    mix, *_ = isotropic_mixture(64)
    x, s = _noised(mix, [0.2, 1.0, 0.3, 3.0, 0.5], seed=hidden_seed(42))
    mix2 = ring(n_modes=3)
    x2, s2 = _noised(mix2, [0.3, 1.5, 0.7, 0.1], seed=hidden_seed(43))
    return [(mix, x, s, 0.01, hidden_seed(52)), (mix2, x2, s2, 1.0, hidden_seed(53))]


@graded(off_limits=("dmcmc_edu.grading.a3_posterior_langevin:reference_mala_log_acceptance",))
def check_mala_log_acceptance(mala_log_acceptance, hidden: bool = False) -> str:
    """``mala_log_acceptance(log_prob, score, x, x_prop, sigma, eta)`` on ULA proposals of a mixture."""
    for mix, x, sigma, eta, seed in _mala_cases(hidden):
        z = normal(x.shape, torch.Generator().manual_seed(seed), x.dtype, x.device)
        x_prop = x + 0.5 * eta * mix.score(x, sigma) + math.sqrt(eta) * z
        got = call_student(mala_log_acceptance, "mala_log_acceptance", mix.log_prob, mix.score, x.clone(),
                           x_prop.clone(), sigma.clone(), eta)
        want = reference_mala_log_acceptance(mix.log_prob, mix.score, x, x_prop, sigma, eta)
        d_logp = mix.log_prob(x_prop, sigma) - mix.log_prob(x, sigma)

        def log_q(to, frm, var=eta, drift=0.5 * eta, score=mix.score, sigma=sigma):
            return -((to - frm - drift * score(frm, sigma)) ** 2).sum(1) / (2 * var)

        fwd, bwd = log_q(x_prop, x), log_q(x, x_prop)
        mistakes = {"leaving out the proposal's reverse term log q(x | x')": d_logp - fwd,
                    "leaving out both proposal terms (a random-walk Metropolis ratio)": d_logp,
                    "the forward and reverse proposal terms swapped": d_logp + fwd - bwd,
                    "a proposal variance 2 eta instead of eta":
                        d_logp + log_q(x, x_prop, var=2 * eta) - log_q(x_prop, x, var=2 * eta),
                    "a proposal mean with drift eta * score instead of (eta/2) * score":
                        d_logp + log_q(x, x_prop, drift=eta) - log_q(x_prop, x, drift=eta),
                    "clipping at 0, min(0, log ratio) (return the log ratio itself; the min is taken when accepting)":
                        want.clamp(max=0.0)}
        compare("mala_log_acceptance(log_prob, score, x, x_prop, sigma, eta)", got, want,
                where=f"in {x.shape[1]} dimensions at sigma = {_levels(sigma)}, eta = {eta}", rtol=1e-7, atol=1e-7,
                mistakes=mistakes, hint="log alpha = log p(x') - log p(x) + log q(x | x') - log q(x' | x) with "
                                        "q(y | x) = N(y; x + (eta/2) score(x), eta I)")
    return ok("mala_log_acceptance is MALA's Metropolis-Hastings log ratio")


# --------------------------------------------------------------------------- plots at the end


def plot_sigma_posterior(log_sigma_posterior, log_p_sigma, levels=(0.05, 0.3, 2.0), seed: int = 0):
    """p(sigma | x) on a 40-level grid for points of the 64-d mixture noised at ``levels``, with the student's code.

    The density is the student's ``log_p_sigma`` on :func:`isotropic_mixture`'s parameters, the prior uniform.
    Prints the grid and, per point, the level of the posterior's peak.
    """
    mix, w, mu, tau = isotropic_mixture(64)
    x, s = _noised(mix, list(levels), seed=seed)
    grid = torch.exp(torch.linspace(math.log(0.01), math.log(20.0), 40, dtype=torch.float64))
    log_post = log_sigma_posterior(lambda y, sig: log_p_sigma(y, sig, w, mu, tau), x, grid,
                                   torch.zeros(40, dtype=torch.float64))
    print(f"uniform prior on {len(grid)} levels from {grid[0]:.3g} to {grid[-1]:.3g}")
    for b in range(x.shape[0]):
        print(f"  x noised at sigma = {s[b].item():g}: the posterior peaks at sigma_i = "
              f"{grid[int(torch.as_tensor(log_post[b]).argmax())]:.3g}")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for b in range(x.shape[0]):
        line, = ax.semilogx(grid.numpy(), torch.as_tensor(log_post[b]).exp().numpy(), marker=".",
                            label=f"x noised at sigma = {s[b].item():g}")
        ax.axvline(s[b].item(), color=line.get_color(), ls=":", lw=1)
    return finish_figure(ax, "noise level sigma_i", "p(sigma_i | x)",
                         "The posterior over noise levels in 64 dimensions")


def plot_langevin(ula_step, stability_bound, mala_log_acceptance, sigma: float = 0.1, n_steps: int = 40,
                  seed: int = 0):
    """Two panels made with the student's functions.

    Left: ULA chains on the narrowest component N(mu_0, tau_min I) of the 64-d mixture at level ``sigma``, with
    eta = 0.1, 0.5, 0.9 and 1.1 times ``stability_bound(tau_min, sigma)``: the median distance to mu_0 (for exact
    samples it is about sqrt(64 (tau_min + sigma^2)), the dotted line).  Right: MALA's mean acceptance probability
    min(1, exp(log alpha)) on the whole mixture against eta.  Prints, per step size, the last median distance over
    that of exact samples.
    """
    mix, w, mu, tau = isotropic_mixture(64)
    tau_min = float(tau.min())
    narrow = GaussianMixture([1.0], mu[:1], tau_min * torch.eye(64, dtype=torch.float64)[None])
    g = torch.Generator().manual_seed(seed)
    n = 32
    s = torch.full((n,), sigma, dtype=torch.float64)
    bound = float(torch.as_tensor(stability_bound(tau_min, s)).reshape(-1)[0])
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    exact = math.sqrt(64 * (tau_min + sigma**2))
    for factor in (0.1, 0.5, 0.9, 1.1):
        x, dist = _noised(narrow, [sigma] * n, seed=seed)[0], []
        for _ in range(n_steps):
            x = ula_step(narrow, x, s, factor * bound, torch.randn(x.shape, generator=g, dtype=torch.float64))
            dist.append((x - mu[0]).norm(dim=1).median().item())
        left.semilogy(range(1, n_steps + 1), dist, label=f"eta = {factor} x bound ({factor * bound:.3g})")
        print(f"ULA, eta = {factor} x the bound: median |x - mu| after {n_steps} steps = "
              f"{dist[-1] / exact:.3g} x that of exact samples")
    left.axhline(exact, color="k", ls=":", lw=1, label="exact samples")
    left.set_xlabel("ULA step")
    left.set_ylabel("median |x - mu|")
    left.set_title(f"ULA on N(mu, {tau_min:g} I) at sigma = {sigma}")
    left.legend(fontsize=8)
    x0, _ = _noised(mix, [sigma] * n, seed=seed + 1)
    etas = np.geomspace(bound / 300, bound, 12)
    rates = []
    for eta in etas:
        z = torch.randn(x0.shape, generator=g, dtype=torch.float64)
        prop = x0 + 0.5 * eta * mix.score(x0, s) + math.sqrt(eta) * z
        log_a = torch.as_tensor(mala_log_acceptance(mix.log_prob, mix.score, x0, prop, s, float(eta)))
        rates.append(log_a.clamp(max=0).exp().mean().item())
    right.semilogx(etas, rates, marker="o")
    right.set_xlabel("step size eta")
    right.set_ylabel("mean MALA acceptance")
    right.set_ylim(0, 1.05)
    right.set_title(f"MALA on the 64-d mixture at sigma = {sigma}")
    fig.tight_layout()
    return fig
