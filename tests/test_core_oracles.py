"""Oracle tests for the core: each compares one piece with an answer computed another way (issue 21, item 5).

Each test here was written against a single-line mutation of the core that the other core tests let through
(``bench/core_mutants.py`` and ``bench/results/core_mutants/README.md``): it fails with that mutation applied.

* the classifier argmax update picks the argmax of fixed logits (not the argmin);
* NFE counts rows per sample, also when the batch differs from ``n_samples`` (not calls);
* the sampler denoises the block's smallest-sigma state (not the block's last state);
* ``dlg_init`` snaps a float sigma to the nearest grid level in log sigma (not the farthest);
* classifier + prior equals the exact update + prior when the classifier is the exact level posterior;
* one reverse-diffusion / Euler-Maruyama step has the law the closed form gives for a single Gaussian.
"""

import math

import pytest
import torch

from dmcmc_edu.core.contract import CountingDenoiser
from dmcmc_edu.core.dlg import dlg_init, nearest_grid_index
from dmcmc_edu.core.integrators import euler_maruyama, kar1, reverse_diffusion
from dmcmc_edu.core.sampler import DMCMCConfig, DMCMCSampler
from dmcmc_edu.core.schedules import noise_level_grid
from dmcmc_edu.core.sigma_updates import ClassifierArgmaxUpdate, ClassifierSampleUpdate, make_sigma_update
from dmcmc_edu.targets import ExactLevelClassifier, GaussianMixture, ring

F64 = torch.float64
# a single Gaussian N(mu, tau I) in 2-D: its denoiser and noised densities have closed forms
TAU = 0.4
MU = torch.tensor([1.0, -0.5], dtype=F64)
ONE_GAUSSIAN = GaussianMixture(torch.tensor([1.0]), MU[None], TAU * torch.eye(2, dtype=F64)[None])


class FixedLogits:
    """A classifier whose logits are given (one row per sample), with the attributes the core checks."""

    def __init__(self, logits, grid):
        self.logits, self.grid, self.n_levels, self.rows = logits, grid, grid.numel(), 0

    def log_probs(self, x):
        self.rows += x.shape[0]
        return torch.log_softmax(self.logits[: x.shape[0]], dim=1)


# ----------------------------------------------------------------------------- the classifier sigma-updates


def test_classifier_argmax_picks_the_largest_logit():
    grid = noise_level_grid(0.01, 10.0, 6)
    logits = torch.tensor([[0.0, 3.0, 1.0, -2.0, 0.5, 0.1],
                           [5.0, 0.0, 0.0, 0.0, 0.0, -1.0],
                           [-1.0, -1.0, -1.0, -1.0, -1.0, 2.0],
                           [0.2, 0.1, 0.3, 0.9, 0.8, 0.0]], dtype=F64)
    upd = ClassifierArgmaxUpdate(FixedLogits(logits, grid))
    idx = upd(torch.zeros(4, 2, dtype=F64), grid)
    assert idx.tolist() == [1, 0, 5, 3]
    # a prior that favours the last level moves the argmax where log q + log prior is largest
    prior = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 100.0], dtype=F64)
    idx = ClassifierArgmaxUpdate(FixedLogits(logits, grid), log_prior=prior.log())(torch.zeros(4, 2), grid)
    assert idx.tolist() == (torch.log_softmax(logits, 1) + prior.log()).argmax(1).tolist() == [5, 0, 5, 5]


def test_classifier_with_a_prior_equals_the_exact_update_with_that_prior():
    """With the exact level classifier (uniform-prior posterior), reweighting by a prior gives the exact posterior
    under that prior: equal log-probabilities, equal argmax, and the same draw from the same generator."""
    mix = ring()
    grid = noise_level_grid(0.05, 6.0, 40)
    g = torch.Generator().manual_seed(11)
    idx0 = torch.randint(0, 40, (300,), generator=g)
    x = mix.sample(300, g) + grid[idx0][:, None] * torch.randn(300, 2, generator=g, dtype=F64)
    log_prior = torch.linspace(3.0, -3.0, 40, dtype=F64)  # strongly favours large sigma
    clf = ExactLevelClassifier(mix, grid)
    sample_upd = ClassifierSampleUpdate(clf, log_prior=log_prior)
    exact_log_p = mix.sigma_log_posterior(x, grid, log_prior=log_prior)
    torch.testing.assert_close(sample_upd.log_q(x, grid), exact_log_p, rtol=1e-9, atol=1e-9)
    argmax = make_sigma_update("classifier-argmax", classifier=clf, log_prior=log_prior)(x, grid)
    assert torch.equal(argmax, exact_log_p.argmax(1))
    exact = make_sigma_update("exact", model=mix, log_prior=log_prior)
    a = exact(x, grid, torch.Generator().manual_seed(5))
    b = sample_upd(x, grid, torch.Generator().manual_seed(5))
    assert (a == b).double().mean() > 0.99  # a draw may differ only where round-off moves a CDF boundary
    # and the prior changes the answer (the test is not vacuous)
    uniform = make_sigma_update("classifier-argmax", classifier=clf)(x, grid)
    assert (uniform != argmax).double().mean() > 0.3


# ----------------------------------------------------------------------------- NFE: rows, not calls


def test_counting_denoiser_counts_rows_per_sample_when_batches_differ_from_n_samples():
    counter = CountingDenoiser(lambda x, s: x, n_samples=6)
    for rows in (2, 4, 6, 6):  # one evaluation of each of the 6 samples, split in two calls, then two full calls
        counter(torch.zeros(rows, 3), torch.ones(rows))
    assert (counter.calls, counter.rows) == (4, 18)
    assert counter.nfe == pytest.approx(3.0)
    counter.reset(n_samples=3)
    counter(torch.zeros(6, 3), torch.ones(6))  # one call on twice n_samples rows: 2 evaluations per sample
    assert (counter.calls, counter.rows, counter.nfe) == (1, 6, 2.0)
    counter.reset()
    counter(torch.zeros(5, 3), torch.ones(5))
    assert counter.nfe == 1.0  # n_samples unknown: calls


def test_integrator_nfe_is_counted_per_sample_for_any_batch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 2, generator=g, dtype=F64)
    outer = CountingDenoiser(ONE_GAUSSIAN, n_samples=10)  # the integrator runs on half of the 10 samples
    _, info = kar1(outer, x, 3.0, 0.01, 4)
    assert info.nfe == 2 * 4 - 1  # the integrator's own counter: per sample of its batch
    assert outer.calls == 7 and outer.rows == 35 and outer.nfe == pytest.approx(3.5)


def test_ledger_counts_rows_when_chains_are_denoised_in_groups_of_different_sizes():
    """steps_per_decade > 0: each chain's number of KAR1 steps depends on its picked sigma, and the integrator runs
    once per group; the ledger's denoise NFE per output is the mean of 2 k_c - 1 over the chains."""
    cfg = DMCMCConfig(sigma_min=0.01, sigma_max=9.5, n_levels=100, eta=0.005, eta_rel=1.0, n_skip=2, steps=2,
                      steps_per_decade=2.0, n_chains=48, outputs_per_chain=1, init_steps=3, burn_in=[[2, None]],
                      final_tweedie="never", integrator="kar1", seed=2)
    s = DMCMCSampler(ring(), cfg, data_shape=(2,))
    r = s.run()
    k = s.denoising_steps(r.chosen_sigma)
    assert k.unique().numel() >= 2  # groups of different sizes, none of the full batch
    led = r.ledger.per_output()
    assert led["parts"]["denoise"] == pytest.approx((2 * k - 1).double().mean().item(), rel=1e-12)
    assert led["parts"]["gibbs"] == cfg.n_skip and led["parts"]["tweedie"] == 0


# ----------------------------------------------------------------------------- the picked state is denoised


class Recorder:
    """The mixture as a denoiser, recording every call's (x, sigma); the oracle methods are passed on."""

    def __init__(self, mix):
        self.mix, self.calls = mix, []

    def __call__(self, x, sigma):
        self.calls.append((x.clone(), sigma.clone()))
        return self.mix(x, sigma)

    def sigma_log_posterior(self, *a, **kw):
        return self.mix.sigma_log_posterior(*a, **kw)


@pytest.mark.parametrize("pick", ["block", "authors"])
def test_sampler_denoises_the_smallest_sigma_state_of_the_block(pick):
    """ULA makes one model call per Gibbs step at (x_{k-1}, sigma_{k-1}), and a 1-step KAR1 one call at the picked
    (x, sigma): so the calls of two rounds give every state of the first block, and the denoised one must be the
    block's smallest-sigma state (the earliest on ties), which is not its last state for most chains."""
    K, C = 4, 40
    rec = Recorder(ring())
    cfg = DMCMCConfig(sigma_min=0.01, sigma_max=9.5, n_levels=60, eta=0.005, eta_rel=1.0, n_skip=K, steps=1,
                      n_chains=C, outputs_per_chain=2, init_steps=0, burn_in=[], final_tweedie="never",
                      integrator="kar1", pick=pick, seed=4)
    r = DMCMCSampler(rec, cfg, data_shape=(2,)).run()
    assert len(rec.calls) == 2 * (K + 1)
    states = [rec.calls[k] for k in range(K)] + [rec.calls[K + 1]]  # (x_k, sigma_k), k = 0..K
    den_x, den_sigma = rec.calls[K]
    first = 0 if pick == "authors" else 1  # the authors' rule also offers the state before the block
    sig = torch.stack([s for _, s in states[first:]])  # [K or K + 1, C]
    best = torch.stack([torch.nonzero(sig[:, c] == sig[:, c].min())[0, 0] for c in range(C)]) + first
    expected_x = torch.stack([states[int(best[c])][0][c] for c in range(C)])
    assert torch.equal(den_x, expected_x)
    # the integrator's first level is the picked sigma up to the round-off of its rho-spacing
    torch.testing.assert_close(den_sigma, sig.min(0).values, rtol=1e-13, atol=0)
    torch.testing.assert_close(r.chosen_sigma[:C], sig.min(0).values, rtol=0, atol=0)
    torch.testing.assert_close(r.samples[:C], ring()(den_x, den_sigma), rtol=1e-12, atol=1e-12)
    assert (best != K).sum() >= C // 4  # many chains' picked state is not the block's last


# ----------------------------------------------------------------------------- dlg_init from float sigmas


def test_dlg_init_snaps_float_sigmas_to_the_nearest_level_in_log_sigma():
    grid = noise_level_grid(0.01, 50.0, 30)
    x = torch.zeros(6, 2, dtype=F64)
    log_g = grid.log()
    # on a level, just off a level, and 0.4 / 0.6 of the way (in log sigma) between two levels
    sigma = torch.stack([grid[0], grid[29], grid[7] * 1.001, grid[12] / 1.001,
                         torch.exp(0.6 * log_g[3] + 0.4 * log_g[4]), torch.exp(0.4 * log_g[20] + 0.6 * log_g[21])])
    state = dlg_init(x, sigma, grid)
    assert state.index.tolist() == [0, 29, 7, 12, 3, 21]
    assert torch.equal(nearest_grid_index(grid, sigma), state.index)
    # a float sigma outside the grid snaps to the nearest end; integer indices are taken as they are
    assert dlg_init(x[:2], torch.tensor([1e3, 1e-4], dtype=F64), grid).index.tolist() == [0, 29]
    assert dlg_init(x[:2], torch.tensor([3, 17]), grid).index.tolist() == [3, 17]
    assert dlg_init(x[:2], 0.5, grid).index.tolist() == [int((log_g - math.log(0.5)).abs().argmin())] * 2


# ----------------------------------------------------------------------------- one reverse-SDE step, closed form


def _one_step_law(fn, s, s_next, n=200_000, seed=0):
    """Mean and variance (per coordinate) of one step of ``fn`` from a fixed x at level s to s_next."""
    x0 = torch.tensor([3.0, -4.0], dtype=F64)
    x = x0.expand(n, 2).clone()
    out, info = fn(ONE_GAUSSIAN, x, s, s_next, 1, generator=torch.Generator().manual_seed(seed))
    assert info.nfe == 1 and info.sigma_end == pytest.approx(s_next)
    return x0, out.mean(0), out.var(0)


@pytest.mark.parametrize("s,s_next", [(2.0, 0.5), (0.8, 0.3)])
def test_reverse_diffusion_step_has_the_exact_gaussian_transition_mean(s, s_next):
    """For p_0 = N(mu, tau I) the exact reverse transition x_{s'} | x_s has mean mu + (tau + s'^2)/(tau + s^2)
    (x_s - mu); one reverse-diffusion step has that mean exactly and variance s^2 - s'^2 (5 s.e., seed 0)."""
    n = 200_000
    x0, mean, var = _one_step_law(reverse_diffusion, s, s_next, n)
    exact_mean = MU + (TAU + s_next**2) / (TAU + s**2) * (x0 - MU)
    v = s**2 - s_next**2
    torch.testing.assert_close(mean, exact_mean, rtol=0, atol=5 * math.sqrt(v / n))
    torch.testing.assert_close(var, torch.full((2,), v, dtype=F64), rtol=5 * math.sqrt(2 / n), atol=0)


@pytest.mark.parametrize("s,s_next", [(2.0, 0.5), (0.8, 0.3)])
def test_euler_maruyama_step_has_its_closed_form_gaussian_law(s, s_next):
    """One EM step of h = log(s / s') from x: N(x + 2 h s^2 (mu - x) / (tau + s^2), 2 h s^2) on a single
    Gaussian (5 s.e., seed 1)."""
    n = 200_000
    x0, mean, var = _one_step_law(euler_maruyama, s, s_next, n, seed=1)
    h = math.log(s / s_next)
    v = 2 * h * s**2
    torch.testing.assert_close(mean, x0 + 2 * h * s**2 / (TAU + s**2) * (MU - x0), rtol=0, atol=5 * math.sqrt(v / n))
    torch.testing.assert_close(var, torch.full((2,), v, dtype=F64), rtol=5 * math.sqrt(2 / n), atol=0)
