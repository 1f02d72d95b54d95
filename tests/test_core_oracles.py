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

import numpy as np
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


def test_dlg_init_refuses_bad_states():
    grid = noise_level_grid(0.01, 50.0, 30)
    x = torch.zeros(3, 2, dtype=F64)
    with pytest.raises(ValueError, match="non-finite"):
        dlg_init(torch.tensor([[0.0, float("nan")], [0.0, 0.0]], dtype=F64), torch.tensor([0, 1]), grid)
    with pytest.raises(ValueError, match=r"one sigma \(or index\) per chain: shape \[3\], got \(2,\)"):
        dlg_init(x, torch.tensor([0, 1]), grid)
    with pytest.raises(ValueError, match=r"sigma indices must lie in \[0, 29\]"):
        dlg_init(x, torch.tensor([0, 1, 30]), grid)
    with pytest.raises(ValueError, match=r"sigma indices must lie in \[0, 29\]"):
        dlg_init(x, torch.tensor([-1, 1, 2]), grid)
    for bad in (0.0, -0.5, float("nan"), float("inf")):  # snapping these to a level would hide the mistake
        with pytest.raises(ValueError, match=r"noise levels must be finite and > 0; chain\(s\) \[1\]"):
            dlg_init(x, torch.tensor([1.0, bad, 2.0], dtype=F64), grid)
    assert dlg_init(x, torch.tensor([0, 29, 5]), grid).index.tolist() == [0, 29, 5]
    assert dlg_init(x, torch.tensor(4), grid).index.tolist() == [4, 4, 4]


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


# ----------------------------------------------------------------------------- what the integrators report


@pytest.mark.parametrize("name", ["kar1", "kar2", "pf_euler", "reverse_diffusion", "euler_maruyama"])
def test_integrator_callback_reports_each_step_in_order(name):
    """callback gets i = 0..N-1, the level reached (the schedule's next one) and D(x, level left) at the state
    the step started from."""
    from dmcmc_edu.core.integrators import get_integrator
    from dmcmc_edu.core.schedules import geometric_sigmas, karras_sigmas

    g = torch.Generator().manual_seed(3)
    x = MU + torch.randn(4, 2, generator=g, dtype=F64) * 2.0
    s0 = torch.tensor([3.0, 1.0, 2.0, 0.5], dtype=F64)
    steps = 5
    levels = (karras_sigmas(s0, 0.02, steps) if name in ("kar1", "kar2") else geometric_sigmas(s0, 0.02, steps))
    seen = []
    out, info = get_integrator(name)(ONE_GAUSSIAN, x, s0, 0.02, steps, generator=g,
                                     callback=lambda d: seen.append({k: v for k, v in d.items()}))
    assert [d["i"] for d in seen] == list(range(steps))
    prev = x
    for i, d in enumerate(seen):
        torch.testing.assert_close(d["sigma"], levels[:, i + 1], rtol=1e-12, atol=0)
        if name != "kar2":  # KAR2 denoises its churned state, not the one it started from
            torch.testing.assert_close(d["denoised"], ONE_GAUSSIAN(prev, levels[:, i]), rtol=1e-10, atol=1e-12)
        prev = d["x"]
    assert torch.equal(seen[-1]["x"], out)


def test_sample_from_noise_defaults_are_the_documented_ones():
    """Defaults: KAR1, 18 steps from sigma_max = 80 down to sigma_min = 0.002 (then 0): NFE 35, no Tweedie."""
    from dmcmc_edu.core.integrators import sample_from_noise
    from dmcmc_edu.core.schedules import karras_sigmas

    first = []
    x, info = sample_from_noise(ONE_GAUSSIAN, (3, 2), generator=torch.Generator().manual_seed(0),
                                callback=lambda d: first.append(d["sigma"]) if d["i"] == 0 else None)
    assert info.name == "kar1" and info.steps == 18 and info.nfe == 35 and info.extra["final_tweedie"] is False
    torch.testing.assert_close(first[0], karras_sigmas(torch.full((3,), 80.0, dtype=F64), 0.002, 18)[:, 1],
                               rtol=1e-12, atol=0)
    z = torch.randn(3, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    ref, _ = kar1(ONE_GAUSSIAN, 80.0 * z, 80.0, 0.002, 18)
    torch.testing.assert_close(x, ref, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- the contract's checks and adapters


def test_check_x_accepts_a_finite_float_batch_and_names_what_is_wrong():
    from dmcmc_edu.core.contract import check_x, nonfinite_rows

    x = torch.zeros(3, 2, dtype=F64)
    assert check_x(x) is x and check_x(torch.zeros(1, 1, dtype=torch.float32)).shape == (1, 1)
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got list"):
        check_x([[0.0]])
    with pytest.raises(ValueError, match=r"shape \[B, ...\] with at least 2 dimensions, got shape \(3,\)"):
        check_x(torch.zeros(3))
    with pytest.raises(TypeError, match="floating dtype, got torch.int64"):
        check_x(torch.zeros(3, 2, dtype=torch.long))
    bad = torch.zeros(14, 2, 2, dtype=F64)
    bad[[1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], 1, 0] = float("nan")
    bad[13, 0, 1] = -float("inf")
    assert nonfinite_rows(bad).tolist() == [1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]
    with pytest.raises(ValueError, match=r"in sample\(s\) \[1, 3, 4, 5, 6, 7, 8, 9, 10, 11\] \.\.\.$"):
        check_x(bad, "x0")
    ten = bad[[0, 1, 2, 0, 0, 0, 0, 0, 0, 13]]  # ten rows, rows 1 and 9 bad: no " ..."
    with pytest.raises(ValueError, match=r"^z has non-finite values \(NaN or inf\) in sample\(s\) \[1, 9\]$"):
        check_x(ten, "z")
    with pytest.raises(ValueError, match=r"\[1, 3, 4, 5, 6, 7, 8, 9, 10, 11\]$"):  # exactly ten bad rows
        check_x(bad[:12], "z")


def test_check_sigma_and_as_sigma_batch():
    from dmcmc_edu.core.contract import as_sigma_batch, check_sigma

    x = torch.zeros(3, 2, dtype=torch.float32)
    for value in (2, 2.0, torch.tensor(2.0, dtype=F64), torch.full((3,), 2.0, dtype=F64), [2.0, 2.0, 2.0]):
        s = as_sigma_batch(value, x)
        assert s.shape == (3,) and s.dtype == torch.float32 and torch.equal(s, torch.full((3,), 2.0))
    assert torch.equal(check_sigma(torch.tensor([0.0, 1.0]), 2, allow_zero=True), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"must be > 0 for every sample, got min 0"):
        check_sigma(torch.tensor([0.0, 1.0]), 2)
    with pytest.raises(ValueError, match=r"must be >= 0 for every sample, got min -1"):
        check_sigma(torch.tensor([-1.0, 1.0]), 2, allow_zero=True)
    with pytest.raises(ValueError, match=r"shape \[B\] = \[3\] \(one level per sample\), got \(2,\)"):
        check_sigma(torch.ones(2), 3)
    with pytest.raises(ValueError, match=r"sigma has non-finite values: \[inf\]"):
        check_sigma(torch.tensor([1.0, float("inf")]), 2)
    with pytest.raises(TypeError, match=r"must be a torch.Tensor of shape \[2\], got float"):
        check_sigma(1.0, 2)
    with pytest.raises(ValueError, match="sigma_start must be > 0"):
        as_sigma_batch(-1.0, x, "sigma_start")


def test_score_and_denoiser_adapters_are_inverse_through_tweedie():
    from dmcmc_edu.core.contract import denoiser_from_score, per_sample, score_from_denoiser

    g = torch.Generator().manual_seed(8)
    x = torch.randn(5, 2, generator=g, dtype=F64)
    sigma = torch.tensor([0.1, 0.5, 1.0, 2.0, 7.0], dtype=F64)
    score = score_from_denoiser(ONE_GAUSSIAN)
    exact = (MU - x) / (TAU + sigma[:, None] ** 2)  # the score of N(mu, (tau + s^2) I)
    torch.testing.assert_close(score(x, sigma), exact, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(denoiser_from_score(score)(x, sigma), ONE_GAUSSIAN(x, sigma), rtol=1e-12, atol=1e-12)
    assert per_sample(sigma, torch.zeros(5, 3, 4, 2)).shape == (5, 1, 1, 1)


def test_counting_denoiser_refuses_a_sigma_of_the_wrong_shape_and_forwards_attributes():
    counter = CountingDenoiser(ONE_GAUSSIAN, n_samples=2)
    with pytest.raises(ValueError, match=r"sigma of shape \(3,\) for x of shape \(2, 2\)"):
        counter(torch.zeros(2, 2, dtype=F64), torch.ones(3, dtype=F64))
    with pytest.raises(ValueError, match=r"sigma of shape \(\) for x"):
        counter(torch.zeros(2, 2, dtype=F64), torch.tensor(1.0, dtype=F64))
    assert counter.calls == 0 and counter.rows == 0
    assert counter.d == 2  # a plain attribute of the model
    counter.log_prob(torch.zeros(4, 2, dtype=F64), 0.5)
    assert counter.oracle_calls == {"sigma_log_posterior": 0, "log_prob": 1}
    assert counter.oracle_rows == {"sigma_log_posterior": 0, "log_prob": 4}
    with pytest.raises(AttributeError):
        getattr(CountingDenoiser(lambda x, s: x), "log_prob")  # noqa: B009 (the forwarding under test)


def test_tweedie_is_one_denoiser_call_and_refuses_a_non_finite_state():
    from dmcmc_edu.core.tweedie import tweedie

    x = torch.tensor([[3.0, 1.0], [0.0, -2.0]], dtype=F64)
    counter = CountingDenoiser(ONE_GAUSSIAN, n_samples=2)
    torch.testing.assert_close(tweedie(counter, x, 0.3), ONE_GAUSSIAN(x, torch.full((2,), 0.3, dtype=F64)))
    torch.testing.assert_close(tweedie(counter, x, torch.tensor([0.3, 2.0], dtype=F64)),
                               ONE_GAUSSIAN(x, torch.tensor([0.3, 2.0], dtype=F64)))
    assert counter.nfe == 2
    with pytest.raises(ValueError, match=r"non-finite values \(NaN or inf\) in sample\(s\) \[1\]"):
        tweedie(counter, torch.tensor([[0.0, 0.0], [float("inf"), 0.0]], dtype=F64), 0.3)
    assert counter.calls == 2


@pytest.mark.parametrize("mode,sigma_end,applied", [("auto", 0.0, False), ("auto", 0.01, True),
                                                    ("always", 0.0, True), ("never", 0.01, False)])
def test_finish_with_tweedie_modes(mode, sigma_end, applied):
    from dmcmc_edu.core.tweedie import finish_with_tweedie

    x = torch.tensor([[3.0, 1.0], [0.0, -2.0]], dtype=F64)
    counter = CountingDenoiser(ONE_GAUSSIAN, n_samples=2)
    out, did = finish_with_tweedie(counter, x, sigma_end, 0.3, mode)
    assert did is applied and counter.nfe == int(applied)
    expected = ONE_GAUSSIAN(x, torch.full((2,), 0.3, dtype=F64)) if applied else x
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="final_tweedie must be one of auto, always, never, got 'sometimes'"):
        finish_with_tweedie(counter, x, sigma_end, 0.3, "sometimes")


# ----------------------------------------------------------------------------- the ledger, MALA's probability


def test_ledger_per_output_divides_by_the_outputs_and_summary_prints_it():
    from dmcmc_edu.core.ledger import NFELedger

    led = NFELedger(n_chains=2, n_outputs=4, init=6, gibbs=8, denoise=12, tweedie=4, classifier=2)
    p = led.per_output()
    assert p["parts"] == {"gibbs": 2.0, "denoise": 3.0, "tweedie": 1.0, "init_amortised": 1.5, "classifier": 0.5,
                          "classifier_init_amortised": 0.0}
    assert (p["paper"], p["score_evals"], p["full"]) == (6.0, 7.5, 8.0)
    assert led.summary() == ("NFE per output: paper 6.00, full 8.00 (gibbs 2.00, denoise 3.00, tweedie 1.00, "
                             "init_amortised 1.50, classifier 0.50, classifier_init_amortised 0.00)")
    one = NFELedger(n_outputs=1, gibbs=3, denoise=5, tweedie=1).per_output()
    assert (one["parts"]["gibbs"], one["paper"]) == (3.0, 9.0)
    assert NFELedger(n_outputs=0, gibbs=3).per_output()["paper"] == 3.0  # no outputs yet: the totals


def _gauss_log_prob(x, sigma):
    v = TAU + sigma[:, None] ** 2
    return (-0.5 * ((x - MU) ** 2 / v + torch.log(2 * math.pi * v))).sum(1)


def test_mala_acceptance_probability_is_the_metropolis_hastings_ratio():
    """Where the proposal was accepted, move.x is the proposal, so min(1, MH ratio) can be computed by hand from the
    closed-form Gaussian; over all chains the mean probability equals the acceptance rate (5 s.e., seed 6)."""
    from dmcmc_edu.core.langevin import mala_move

    n, s, eta = 20_000, 0.5, 1.5
    g = torch.Generator().manual_seed(6)
    sigma = torch.full((n,), s, dtype=F64)
    e = torch.full((n,), eta, dtype=F64)
    x = MU + torch.randn(n, 2, generator=g, dtype=F64) * math.sqrt(TAU + s**2)
    move = mala_move(ONE_GAUSSIAN, x, sigma, e, g)
    acc = move.accepted
    assert 0.2 < acc.double().mean() < 0.95
    assert torch.equal(move.x[~acc], x[~acc])
    xa, xp, sa = x[acc], move.x[acc], sigma[acc]

    def score(y):
        return (MU - y) / (TAU + s**2)

    def log_q(to, frm):
        return -((to - frm - 0.5 * eta * score(frm)) ** 2).sum(1) / (2 * eta)

    log_alpha = _gauss_log_prob(xp, sa) - _gauss_log_prob(xa, sa) + log_q(xa, xp) - log_q(xp, xa)
    torch.testing.assert_close(move.acceptance[acc], log_alpha.clamp(max=0).exp(), rtol=1e-9, atol=1e-12)
    p = move.acceptance
    assert ((p >= 0) & (p <= 1)).all()
    assert abs(acc.double().mean() - p.mean()) < 5 * math.sqrt(0.25 / n)


def test_mala_with_a_nan_density_rejects_with_probability_zero():
    from dmcmc_edu.core.langevin import mala_move

    class NanDensity:
        def __call__(self, x, sigma):
            return ONE_GAUSSIAN(x, sigma)

        def log_prob(self, x, sigma):
            return torch.full((x.shape[0],), float("nan"), dtype=F64)

    x = torch.zeros(5, 2, dtype=F64)
    move = mala_move(NanDensity(), x, torch.ones(5, dtype=F64), torch.full((5,), 0.1, dtype=F64),
                     torch.Generator().manual_seed(0))
    assert not move.accepted.any() and torch.equal(move.x, x)
    assert torch.equal(move.acceptance, torch.zeros(5, dtype=F64))


def test_check_sigmas_wants_one_end_level_for_the_batch():
    """Rows may start anywhere but end at one level (all 0, or one sigma_min up to round-off)."""
    from dmcmc_edu.core.schedules import check_sigmas

    ok = torch.tensor([[3.0, 1.0, 0.01], [2.0, 0.5, 0.01 * (1 + 1e-12)]], dtype=F64)
    assert torch.equal(check_sigmas(ok, 2), ok)
    assert check_sigmas(torch.tensor([3.0, 1.0, 0.0], dtype=F64), 4).shape == (4, 3)
    for bad in ([[3.0, 1.0, 0.01], [2.0, 0.5, 0.02]], [[3.0, 1.0, 0.02], [2.0, 0.5, 0.01]],
                [[3.0, 1.0, 0.0], [2.0, 0.5, 0.01]]):
        with pytest.raises(ValueError, match="final column that is all 0 or one sigma_min > 0"):
            check_sigmas(torch.tensor(bad, dtype=F64), 2)
    with pytest.raises(ValueError, match="must end above 0"):
        check_sigmas(torch.tensor([3.0, 1.0, 0.0], dtype=F64), 2, end_zero=False)
    with pytest.raises(ValueError, match="strictly decreasing along each row; row 1 is not"):
        check_sigmas(torch.tensor([[3.0, 1.0, 0.0], [2.0, 2.0, 0.0]], dtype=F64), 2)


def test_denoising_steps_per_decade_by_hand():
    """max(steps, ceil(steps_per_decade * log10(sigma / sigma_min))), a whole number of decades not rounded up."""
    cfg = DMCMCConfig(sigma_min=0.01, sigma_max=50.0, n_levels=20, steps=2, steps_per_decade=2.0, n_chains=2)
    s = DMCMCSampler(ONE_GAUSSIAN, cfg, data_shape=(2,))
    sigma = torch.tensor([10.0, 0.1, 1.0, 0.011, 3.2, 40.0], dtype=F64)
    assert s.denoising_steps(sigma).tolist() == [6, 2, 4, 2, 6, 8]  # log10(4000) = 3.6: 7.2 -> 8
    fine = DMCMCSampler(ONE_GAUSSIAN, DMCMCConfig(sigma_min=0.01, n_levels=20, steps=1, steps_per_decade=20.0,
                                                  n_chains=2), data_shape=(2,))
    # log10(1.1) = 0.041: 0.83 -> 1; below sigma_min: no decades, the base steps
    assert fine.denoising_steps(torch.tensor([0.011, 0.005, 0.1], dtype=F64)).tolist() == [1, 1, 20]
    plain = DMCMCSampler(ONE_GAUSSIAN, DMCMCConfig(sigma_min=0.01, n_levels=20, steps=3, n_chains=2), data_shape=(2,))
    assert plain.denoising_steps(sigma).tolist() == [3] * 6


def test_defaults_are_the_documented_ones():
    """DMCMCConfig's defaults (the values its comments and the module docstring state) and an empty ledger."""
    from dmcmc_edu.core.ledger import NFELedger

    c = DMCMCConfig()
    assert (c.sigma_min, c.sigma_max, c.n_levels, c.eta, c.eta_rel) == (0.01, 50.0, 1000, 0.05, 0.0)
    assert (c.n_skip, c.integrator, c.steps, c.integrator_options, c.steps_per_decade) == (1, "kar1", 4, {}, 0.0)
    assert (c.sigma_update, c.x_update, c.pick, c.n_chains, c.outputs_per_chain) == ("exact", "ula", "block", 256, 4)
    assert (c.init_steps, c.init_kick, c.final_tweedie, c.tweedie_sigma, c.seed) == (19, 0.5, "auto", None, 0)
    assert c.per_chain_seeds is False and c.burn_in_etas() == [0.05] * 10
    torch.testing.assert_close(c.grid(), noise_level_grid(0.01, 50.0, 1000), rtol=0, atol=0)
    totals = NFELedger().to_dict()["totals_in_rows"]
    assert totals == dict.fromkeys(totals, 0) and len(totals) == 12


def test_noise_level_grid_of_two_levels_and_the_smallest_grid_refused():
    g = noise_level_grid(0.01, 50.0, 2)
    torch.testing.assert_close(g, torch.tensor([50.0, 0.01 * 5000.0**1e-3], dtype=F64), rtol=1e-14, atol=0)
    with pytest.raises(ValueError, match="a grid needs n >= 2 levels, got 1"):
        noise_level_grid(0.01, 50.0, 1)
    with pytest.raises(ValueError, match="need 0 < sigma_min < sigma_max, got 50.0, 50.0"):
        noise_level_grid(50.0, 50.0, 10)


@pytest.mark.parametrize("kw,match", [
    (dict(tweedie_sigma=0.0), "tweedie_sigma"), (dict(tweedie_sigma=-1.0), "tweedie_sigma"),
    (dict(tweedie_sigma=float("nan")), "tweedie_sigma"), (dict(sigma_max=0.01), "sigma_min < sigma_max"),
    (dict(init_kick=-0.1), "init_kick"), (dict(eta_rel=-1.0), "eta_rel"), (dict(n_levels=1), "n_levels"),
    (dict(init_steps=-1), "init_steps"), (dict(seed=-1), "seed"), (dict(steps=True), "steps"),
    (dict(pick="last"), "unknown pick"), (dict(x_update="hmc"), "unknown x-update"),
])
def test_config_refuses_each_bad_setting(kw, match):
    with pytest.raises(ValueError, match=match):
        DMCMCConfig(**kw).validate()


def test_config_accepts_the_edges():
    DMCMCConfig(tweedie_sigma=1e-6, init_kick=0.0, eta_rel=0.0, n_levels=2, init_steps=0, seed=0).validate()


def test_register_integrator_refuses_a_second_function_under_a_taken_name():
    from dmcmc_edu.core.integrators import INTEGRATORS, get_integrator, register_integrator

    def mine(model, x, *a, **kw):
        return x, None

    with pytest.raises(ValueError, match="an integrator named 'kar1' is registered already"):
        register_integrator("kar1", mine)
    assert get_integrator("kar1") is kar1
    register_integrator("kar1", kar1)  # the same function again is fine
    try:
        register_integrator("test_core_oracles_mine", mine)
        register_integrator("test_core_oracles_mine", mine)
        assert get_integrator("test_core_oracles_mine") is mine
    finally:
        INTEGRATORS.pop("test_core_oracles_mine", None)


def test_check_grid_names_the_first_level_that_does_not_decrease():
    from dmcmc_edu.core.schedules import check_grid

    with pytest.raises(ValueError, match=r"strictly decreasing \(index 0 = largest sigma\); level 2 \(3\) >= "
                                         r"level 1 \(2\)$"):
        check_grid(torch.tensor([5.0, 2.0, 3.0, 4.0], dtype=F64))
    with pytest.raises(ValueError, match=r"level 1 \(1\) >= level 0 \(1\)$"):
        check_grid(torch.tensor([1.0, 1.0], dtype=F64))
    with pytest.raises(ValueError, match="finite levels > 0"):
        check_grid(torch.tensor([1.0, 0.0], dtype=F64))
    with pytest.raises(ValueError, match=r"1-D tensor of at least 2 levels, got shape \(1,\)"):
        check_grid(torch.tensor([1.0], dtype=F64))
    two = torch.tensor([2.0, 1.0], dtype=F64)
    assert check_grid(two) is two


def test_sample_from_noise_with_sigmas_starts_at_the_first_level_of_each_row():
    from dmcmc_edu.core.integrators import sample_from_noise
    from dmcmc_edu.core.schedules import karras_sigmas

    sig = karras_sigmas(torch.tensor([20.0, 5.0, 1.0], dtype=F64), 0.01, 6)
    x, info = sample_from_noise(ONE_GAUSSIAN, (3, 2), sigmas=sig, generator=torch.Generator().manual_seed(2))
    z = torch.randn(3, 2, generator=torch.Generator().manual_seed(2), dtype=F64)
    ref, _ = kar1(ONE_GAUSSIAN, z * sig[:, :1], sigmas=sig)
    torch.testing.assert_close(x, ref, rtol=1e-12, atol=1e-12)
    assert info.nfe == 2 * 6 - 1


def test_sample_from_noise_tweedie_after_a_schedule_to_zero_is_at_its_last_level_above_zero():
    from dmcmc_edu.core.integrators import sample_from_noise
    from dmcmc_edu.core.schedules import karras_sigmas
    from dmcmc_edu.core.tweedie import tweedie

    sig = karras_sigmas(torch.tensor([20.0], dtype=F64), 0.05, 5)[0]  # one row shared by the batch, ends at 0
    x, info = sample_from_noise(ONE_GAUSSIAN, (3, 2), sigmas=sig, final_tweedie=True,
                                generator=torch.Generator().manual_seed(4))
    z = torch.randn(3, 2, generator=torch.Generator().manual_seed(4), dtype=F64)
    ref, _ = kar1(ONE_GAUSSIAN, z * sig[0], sigmas=sig)
    torch.testing.assert_close(x, tweedie(ONE_GAUSSIAN, ref, float(sig[-2])), rtol=1e-12, atol=1e-12)
    assert info.nfe == 2 * 5 - 1 + 1 and info.extra["final_tweedie"] is True


class DtypeStrict:
    """A model that, like a float32 network on a device, refuses a sigma not in x's dtype."""

    def __call__(self, x, sigma):
        if sigma.dtype != x.dtype or sigma.device != x.device:
            raise TypeError(f"sigma {sigma.dtype} on {sigma.device} for x {x.dtype} on {x.device}")
        return ONE_GAUSSIAN(x.double(), sigma.double()).to(x.dtype)


@pytest.mark.parametrize("name", ["kar1", "kar2", "pf_euler", "rk45", "reverse_diffusion", "euler_maruyama"])
def test_integrators_hand_the_model_sigma_in_the_dtype_of_x(name):
    from dmcmc_edu.core.integrators import get_integrator

    x = torch.randn(3, 2, generator=torch.Generator().manual_seed(1)).float() * 3.0
    out, _ = get_integrator(name)(DtypeStrict(), x, 3.0, 0.05, 4, generator=torch.Generator().manual_seed(1))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_kar2_churn_interval_is_closed_at_both_ends():
    """Karras et al. Alg. 2 adds noise when t_i is in [S_tmin, S_tmax] (closed): a start exactly at S_tmax (or a
    level exactly at S_tmin) churns as with the bound moved a hair outward, and unlike with it moved inward."""
    from dmcmc_edu.core.integrators import kar2

    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(7), dtype=F64)

    def run(**kw):
        return kar2(ONE_GAUSSIAN, x, 1.0, 0.05, 3, generator=torch.Generator().manual_seed(9), **kw)[0]

    at, outward, inward = run(s_tmax=1.0), run(s_tmax=1.0 + 1e-9), run(s_tmax=1.0 - 1e-9)
    assert torch.equal(at, outward) and not torch.allclose(at, inward)
    from dmcmc_edu.core.schedules import karras_sigmas

    lvl = float(karras_sigmas(torch.tensor([2.0], dtype=F64), 0.05, 2)[0, 1])  # the second level: S_tmin there
    at, outward, inward = (kar2(ONE_GAUSSIAN, x, 2.0, 0.05, 2, generator=torch.Generator().manual_seed(9),
                                s_tmin=v, s_tmax=10.0)[0] for v in (lvl, lvl * (1 - 1e-9), lvl * (1 + 1e-9)))
    assert torch.equal(at, outward) and not torch.allclose(at, inward)


def test_rk45_reports_its_end_to_the_callback_once():
    from dmcmc_edu.core.integrators import rk45

    x = torch.randn(3, 2, generator=torch.Generator().manual_seed(2), dtype=F64)
    seen = []
    out, info = rk45(ONE_GAUSSIAN, x, torch.tensor([3.0, 1.0, 2.0], dtype=F64), 0.05, callback=seen.append)
    assert len(seen) == 1 and seen[0]["i"] == 0 and seen[0]["denoised"] is None and seen[0]["x"] is out
    torch.testing.assert_close(seen[0]["sigma"], torch.full((3,), 0.05, dtype=F64), rtol=0, atol=0)
    assert info.sigma_end == 0.05 and info.nfe == info.extra["nfev"]


def test_sample_from_noise_tweedie_after_kar1_to_zero_is_at_sigma_min():
    from dmcmc_edu.core.integrators import sample_from_noise
    from dmcmc_edu.core.tweedie import tweedie

    x, info = sample_from_noise(ONE_GAUSSIAN, (3, 2), steps=4, sigma_max=10.0, sigma_min=0.05, final_tweedie=True,
                                generator=torch.Generator().manual_seed(4))
    z = torch.randn(3, 2, generator=torch.Generator().manual_seed(4), dtype=F64)
    ref, _ = kar1(ONE_GAUSSIAN, 10.0 * z, 10.0, 0.05, 4)
    torch.testing.assert_close(x, tweedie(ONE_GAUSSIAN, ref, 0.05), rtol=1e-12, atol=1e-12)
    assert info.nfe == 2 * 4 - 1 + 1


def test_categorical_of_float32_logits_equals_that_of_float64():
    from dmcmc_edu.core.random import categorical

    log_p = torch.log_softmax(torch.randn(500, 7, generator=torch.Generator().manual_seed(3), dtype=F64), 1)
    a = categorical(log_p, torch.Generator().manual_seed(1))
    b = categorical(log_p.float(), torch.Generator().manual_seed(1))
    assert (a == b).double().mean() > 0.99  # equal but where float32 round-off moves a CDF boundary


def test_mala_accepts_with_the_metropolis_hastings_probability_of_its_proposal():
    """mala_move against the MH ratio written independently (scipy's Gaussian log-densities for the proposal,
    the mixture's exact log-density for the target), from the same draws: z first, then u."""
    from scipy.stats import multivariate_normal

    from dmcmc_edu.core.langevin import mala_move

    mix = ring()
    x = mix.sample(64, torch.Generator().manual_seed(1)) + 0.3
    sigma, eta = torch.full((64,), 0.4, dtype=torch.float64), 0.4
    move = mala_move(mix, x, sigma, torch.full((64,), eta, dtype=torch.float64), torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    z = torch.randn(x.shape, generator=g, dtype=torch.float64)
    u = torch.rand(64, generator=g, dtype=torch.float64)
    score = lambda y: (mix(y, sigma) - y) / 0.16  # noqa: E731
    prop = x + 0.5 * eta * score(x) + math.sqrt(eta) * z
    mean_fwd, mean_bwd = x + 0.5 * eta * score(x), prop + 0.5 * eta * score(prop)
    log_alpha = []
    for b in range(64):
        q_fwd = multivariate_normal.logpdf(prop[b].numpy(), mean_fwd[b].numpy(), eta * np.eye(2))
        q_bwd = multivariate_normal.logpdf(x[b].numpy(), mean_bwd[b].numpy(), eta * np.eye(2))
        log_alpha.append(float(mix.log_prob(prop[b:b + 1], sigma[b:b + 1]) - mix.log_prob(x[b:b + 1], sigma[b:b + 1]))
                         + q_bwd - q_fwd)
    log_alpha = torch.tensor(log_alpha, dtype=torch.float64)
    torch.testing.assert_close(move.acceptance, log_alpha.clamp(max=0).exp(), rtol=1e-9, atol=1e-12)
    assert torch.equal(move.accepted, torch.log(u) < log_alpha)
    assert 0 < int(move.accepted.sum()) < 64  # both outcomes occur, so the test sees the rule
    torch.testing.assert_close(move.x, torch.where(move.accepted[:, None], prop, x), rtol=1e-12, atol=1e-12)


def test_config_lower_bounds_are_accepted_exactly_and_refused_below():
    """Each integer setting's documented lower bound is allowed and one below it is refused, naming the setting."""
    base = dict(sigma_min=0.01, sigma_max=10.0, n_levels=50, eta=0.01, n_skip=1, n_chains=1, outputs_per_chain=1,
                steps=1, init_steps=0, burn_in=[], seed=0)
    DMCMCConfig(**base).validate()
    for name, lo in (("n_skip", 1), ("n_chains", 1), ("outputs_per_chain", 1), ("steps", 1), ("init_steps", 0),
                     ("n_levels", 2), ("seed", 0)):
        DMCMCConfig(**(base | {name: lo})).validate()
        with pytest.raises(ValueError, match=name):
            DMCMCConfig(**(base | {name: lo - 1})).validate()


def test_grid_sigmas_puts_its_inner_levels_at_the_evenly_spaced_grid_indices():
    """From grid level 99 of 1000 in 9 steps the ramp's indices are 99, 199, ..., 999: the inner levels are exactly
    those grid levels (not their neighbours)."""
    from dmcmc_edu.core.schedules import grid_sigmas

    grid = noise_level_grid(0.01, 50.0, 1000)
    sig = grid_sigmas(grid[[99]], 0.01, 9)
    assert torch.equal(sig[0, 1:-1], grid[torch.arange(199, 999, 100)])


def test_the_default_grid_is_the_papers_1000_levels():
    grid = noise_level_grid()
    assert grid.numel() == 1000 and float(grid[0]) == pytest.approx(50.0) and float(grid[-1]) == pytest.approx(
        0.01 * (50.0 / 0.01) ** 1e-3, rel=1e-12)


def test_a_classifier_whose_grid_is_float32_serves_a_float64_chain():
    mix = ring()
    grid = noise_level_grid(0.01, 9.5, 50)
    upd = ClassifierArgmaxUpdate(ExactLevelClassifier(mix, grid.float()))
    levels = upd(mix.sample(8, torch.Generator().manual_seed(0)), grid)
    assert levels.shape == (8,) and int(levels.min()) >= 0 and int(levels.max()) < 50


def test_chain_seeds_use_63_bits():
    """A chain's seed is a 63-bit number: over 64 chains some lie above 2**62 (half of them should)."""
    from dmcmc_edu.core.sampler import chain_seed

    seeds = [chain_seed(0, c) for c in range(64)]
    assert all(0 <= s < 2**63 for s in seeds) and 16 < sum(s >= 2**62 for s in seeds) < 48


def test_an_integrator_refuses_zero_steps():
    with pytest.raises(ValueError, match="steps must be an integer >= 1, got 0"):
        kar1(ring(), torch.zeros(2, 2, dtype=F64), 1.0, 0.01, 0)


def test_a_float_start_is_one_row_and_round_off_below_sigma_min_is_raised_to_it():
    from dmcmc_edu.core.schedules import check_start, karras_sigmas

    assert karras_sigmas(5.0, 0.01, 3).shape == (1, 4)  # a Python float / 0-d start is one sample's
    start = check_start(torch.tensor([0.01 * (1 - 1e-12), 2.0], dtype=F64), 0.01, 3)
    assert start.tolist() == [0.01, 2.0]  # within round-off of sigma_min: raised to it exactly


def test_a_float32_chain_reads_its_sigma_in_float32():
    grid = noise_level_grid(0.01, 9.5, 50)
    state = dlg_init(torch.zeros(3, 2, dtype=torch.float32), torch.tensor([0, 10, 49]), grid)
    assert state.sigma.dtype == torch.float32
    torch.testing.assert_close(state.sigma, grid[[0, 10, 49]].float())


def test_categorical_draws_one_index_per_row():
    """[B, K] log-probabilities give [B] indices, each from its own row (a row that puts all mass on k gives k)."""
    from dmcmc_edu.core.random import categorical

    log_p = torch.full((5, 10), -math.inf, dtype=F64)
    log_p[torch.arange(5), torch.tensor([0, 3, 9, 3, 7])] = 0.0
    idx = categorical(log_p, torch.Generator().manual_seed(0))
    assert idx.shape == (5,) and idx.tolist() == [0, 3, 9, 3, 7]


def test_a_classifier_for_a_grid_off_by_a_factor_is_refused():
    mix = ring()
    grid = noise_level_grid(0.01, 9.5, 50)
    for factor in (1.01, 1.5):
        upd = ClassifierArgmaxUpdate(ExactLevelClassifier(mix, grid * factor))
        with pytest.raises(ValueError, match="different noise-level grid"):
            upd(mix.sample(4, torch.Generator().manual_seed(0)), grid)


def test_mala_reports_its_acceptance_probability_in_float64_for_float32_chains():
    from dmcmc_edu.core.langevin import mala_move

    mix = ring()

    class Float32Ring:  # the ring evaluated in float64, answering in the chain's float32
        def __call__(self, x, sigma):
            return mix(x.double(), sigma.double()).float()

        def log_prob(self, x, sigma):
            return mix.log_prob(x.double(), sigma.double()).float()

    x = mix.sample(16, torch.Generator().manual_seed(2)).float()
    move = mala_move(Float32Ring(), x, torch.full((16,), 0.5), torch.full((16,), 0.2),
                     torch.Generator().manual_seed(3))
    assert move.x.dtype == torch.float32 and move.acceptance.dtype == torch.float64
