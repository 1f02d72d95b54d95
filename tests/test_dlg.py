"""DLG kernel, DMCMC sampler, ledger and resumable runs, checked against the exact mixture."""

import json
import math

import numpy as np
import pytest
import torch

from dmcmc_edu.core.contract import CountingDenoiser
from dmcmc_edu.core.dlg import dlg_init, dlg_step
from dmcmc_edu.core.pick import pick_smallest_sigma
from dmcmc_edu.core.sampler import DMCMCConfig, DMCMCSampler
from dmcmc_edu.core.schedules import noise_level_grid
from dmcmc_edu.core.sigma_updates import ClassifierArgmaxUpdate, make_sigma_update
from dmcmc_edu.runs import run_to_directory
from dmcmc_edu.targets import ExactLevelClassifier, GaussianMixture, dlg_config, ring

# a small 1D two-component mixture and a coarse grid: the joint p(x, sigma_i) is easy to compute exactly
MIX1D = GaussianMixture(torch.tensor([0.3, 0.7]), torch.tensor([[-1.0], [1.5]]), torch.tensor([[[0.09]], [[0.25]]]))
GRID = noise_level_grid(0.05, 2.0, 8)


def joint_moments(mix, grid):
    """Exact E[x], E[x^2] and E[x^2 | sigma_i] under p(x, sigma_i) with a uniform prior on the grid."""
    w, mu, var = mix.weights, mix.means[:, 0], mix.covariances[:, 0, 0]
    m1 = (w * mu).sum()
    m2_level = torch.stack([(w * (mu**2 + var + s**2)).sum() for s in grid])
    return m1.item(), m2_level.mean().item(), m2_level


def run_chains(x_update, eta, n_chains=4000, n_steps=300, seed=0, exact_start=False):
    g = torch.Generator().manual_seed(seed)
    if exact_start:  # (x, sigma) drawn from the joint
        idx = torch.randint(0, len(GRID), (n_chains,), generator=g)
        x = MIX1D.sample(n_chains, g) + GRID[idx][:, None] * torch.randn(n_chains, 1, generator=g, dtype=torch.float64)
        state = dlg_init(x, idx, GRID)
    else:  # far from the target: every chain at x = 0 and the largest sigma
        state = dlg_init(torch.zeros(n_chains, 1, dtype=torch.float64), torch.zeros(n_chains, dtype=torch.long), GRID)
    upd = make_sigma_update("exact", model=MIX1D)
    acc = []
    for _ in range(n_steps):
        state, info = dlg_step(MIX1D, state, upd, eta=eta, generator=g, x_update=x_update)
        if info.accepted is not None:
            acc.append(info.accepted.double().mean().item())
    return state, acc


def test_exact_mala_chain_samples_the_joint():
    """Exact sigma-update + MALA: (x, sigma) match p(x, sigma) (4000 chains, 300 steps, seed 0, 5 s.e.)."""
    state, acc = run_chains("mala", eta=0.05)
    m1, m2, m2_level = joint_moments(MIX1D, GRID)
    x = state.x[:, 0]
    n = x.numel()
    sd = x.std().item()
    assert abs(x.mean().item() - m1) < 5 * sd / math.sqrt(n)
    assert abs((x**2).mean().item() - m2) < 5 * (x**2).std().item() / math.sqrt(n)
    # the sigma marginal is the (uniform) prior: chi-square goodness of fit at the 0.1% level
    counts = torch.bincount(state.index, minlength=len(GRID)).double()
    chi2_stat = (((counts - n / len(GRID)) ** 2) / (n / len(GRID))).sum().item()
    assert chi2_stat < 24.3  # chi2_{7} 99.9% quantile
    # and the conditional second moment per level (the joint, not only the marginals)
    for i in range(len(GRID)):
        xi = x[state.index == i]
        assert abs((xi**2).mean().item() - m2_level[i].item()) < 5 * (xi**2).std().item() / math.sqrt(len(xi)) + 0.02
    assert 0.3 < np.mean(acc) < 1.0


def test_ula_bias_shrinks_with_eta():
    """Unadjusted Langevin over-disperses; the bias in E[x^2] shrinks as eta shrinks (seed 1)."""
    _, m2, _ = joint_moments(MIX1D, GRID)
    bias = []
    for eta in (0.08, 0.02):
        state, _ = run_chains("ula", eta=eta, n_chains=8000, n_steps=100, seed=1, exact_start=True)
        bias.append((state.x[:, 0] ** 2).mean().item() - m2)
    assert bias[0] > 0.02  # clearly biased at the larger step
    assert abs(bias[1]) < bias[0] / 2


def test_pick_smallest_sigma_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(50, 3, generator=g) for _ in range(6)]
    idx = [torch.randint(0, 5, (50,), generator=g) for _ in range(6)]
    bx, bi = pick_smallest_sigma(xs, idx)
    for c in range(50):
        best = 0
        for k in range(1, 6):
            if idx[k][c] > idx[best][c]:  # strictly smaller sigma replaces
                best = k
        assert bi[c] == idx[best][c]
        assert torch.equal(bx[c], xs[best][c])


def small_config(**kw):
    base = dict(sigma_min=0.01, sigma_max=9.5, n_levels=100, eta=0.005, eta_rel=1.0, n_skip=3, integrator="kar1",
                steps=3, n_chains=64, outputs_per_chain=5, init_steps=5, burn_in=[[2, 0.01], [3, None]],
                final_tweedie="always")
    base.update(kw)
    return DMCMCConfig(**base)


def test_sampler_picks_min_sigma_of_each_block_and_ledger_sums():
    mix = ring()
    cfg = small_config()
    s = DMCMCSampler(mix, cfg, data_shape=(2,))
    r = s.run()
    C, K = cfg.n_chains, cfg.n_skip
    trace = r.sigma_trace  # [rounds * n_skip, C]
    for rd in range(cfg.outputs_per_chain):
        expected = trace[rd * K:(rd + 1) * K].min(dim=0).values
        torch.testing.assert_close(r.chosen_sigma[rd * C:(rd + 1) * C], expected.to(r.chosen_sigma))
    led = r.ledger.per_output()
    # the paper's accounting: n_skip + integrator (KAR1: 2 * steps - 1) + Tweedie
    assert led["paper"] == K + (2 * cfg.steps - 1) + 1
    # init: KAR2 (2 * init_steps - 1) + 5 burn-in steps, amortised over outputs_per_chain outputs per chain
    assert led["parts"]["init_amortised"] == pytest.approx((2 * cfg.init_steps - 1 + 5) / cfg.outputs_per_chain)
    assert led["full"] == pytest.approx(sum(led["parts"].values()))
    assert r.samples.shape == (C * cfg.outputs_per_chain, 2)


def test_classifier_calls_in_ledger():
    mix = ring()
    cfg = small_config(sigma_update="classifier-sample")
    clf = ExactLevelClassifier(mix, cfg.grid())
    r = DMCMCSampler(mix, cfg, data_shape=(2,), classifier=clf).run()
    led = r.ledger.per_output()
    assert led["parts"]["classifier"] == cfg.n_skip  # one classifier call per Gibbs step
    # init: one sigma-update after the kick + 5 burn-in steps
    assert led["parts"]["classifier_init_amortised"] == pytest.approx(6 / cfg.outputs_per_chain)
    assert led["full"] == pytest.approx(led["score_evals"] + cfg.n_skip + 6 / cfg.outputs_per_chain)


def test_same_seed_same_samples():
    mix = ring()
    a = DMCMCSampler(mix, small_config(seed=3), data_shape=(2,)).run().samples
    b = DMCMCSampler(mix, small_config(seed=3), data_shape=(2,)).run().samples
    assert torch.equal(a, b)


def test_resume_after_interruption_gives_identical_outputs(tmp_path):
    mix = ring()
    ref = run_to_directory(DMCMCSampler(mix, small_config(), data_shape=(2,)), tmp_path / "ref", progress=False)

    class Killed(Exception):
        pass

    def kill_after(r):
        if r == 2:
            raise Killed

    out = tmp_path / "run"
    with pytest.raises(Killed):
        run_to_directory(DMCMCSampler(mix, small_config(), data_shape=(2,)), out, checkpoint_every=2,
                         progress=False, on_round=kill_after)
    # rounds 0-2 written, checkpoint after round 1: resuming recomputes round 2 and must agree with the file
    assert (out / "rounds" / "round_000002.npy").exists() and not (out / "samples.npy").exists()
    torch.load(out / "checkpoint.pt", weights_only=True)  # loadable
    res = run_to_directory(DMCMCSampler(mix, small_config(), data_shape=(2,)), out, checkpoint_every=2,
                           progress=False)
    assert np.array_equal(np.load(out / "samples.npy"), np.load(tmp_path / "ref" / "samples.npy"))
    assert torch.equal(res.samples, ref.samples)
    a, b = json.loads((out / "ledger.json").read_text()), json.loads((tmp_path / "ref" / "ledger.json").read_text())
    assert a["per_output"] == b["per_output"]
    # a different setting in the same directory is refused, naming the field
    with pytest.raises(ValueError, match="eta"):
        run_to_directory(DMCMCSampler(mix, small_config(eta=0.1), data_shape=(2,)), out, progress=False)


def test_existing_outputs_never_overwritten(tmp_path):
    mix = ring()
    out = tmp_path / "run"
    run_to_directory(DMCMCSampler(mix, small_config(), data_shape=(2,)), out, progress=False)
    np.save(out / "rounds" / "round_000001.npy", np.zeros((64, 2)))
    (out / "checkpoint.pt").unlink()  # force a re-run from scratch over existing files
    with pytest.raises(RuntimeError, match="refusing to overwrite"):
        run_to_directory(DMCMCSampler(mix, small_config(), data_shape=(2,)), out, progress=False)
    assert np.all(np.load(out / "rounds" / "round_000001.npy") == 0)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("kw,match", [
    (dict(eta=0.0), "eta"), (dict(eta=-1.0), "eta"), (dict(n_skip=0), "n_skip"),
    (dict(integrator="nope"), "unknown integrator"), (dict(sigma_update="guess"), "unknown sigma-update"),
])
def test_config_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        DMCMCSampler(ring(), small_config(**kw), data_shape=(2,))


def test_grid_not_strictly_decreasing():
    with pytest.raises(ValueError, match="strictly decreasing"):
        dlg_init(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), torch.tensor([1.0, 2.0, 0.5]))


def test_classifier_size_and_shape_mismatch():
    mix = ring()
    cfg = small_config(sigma_update="classifier-argmax")
    clf = ExactLevelClassifier(mix, noise_level_grid(0.01, 9.5, 50))
    with pytest.raises(ValueError, match="50 levels"):
        DMCMCSampler(mix, cfg, data_shape=(2,), classifier=clf)
    clf = ExactLevelClassifier(mix, cfg.grid())
    clf.input_shape = (3,)
    with pytest.raises(ValueError, match=r"input shape \(3,\)"):
        DMCMCSampler(mix, cfg, data_shape=(2,), classifier=clf)
    upd = ClassifierArgmaxUpdate(ExactLevelClassifier(mix, noise_level_grid(0.01, 9.5, 50)))
    with pytest.raises(ValueError, match="50 levels"):
        upd(torch.zeros(2, 2, dtype=torch.float64), cfg.grid())


def test_non_finite_chain_state_names_chain_and_step():
    mix = ring()
    x = torch.zeros(4, 2, dtype=torch.float64)
    state = dlg_init(x, torch.full((4,), 99), noise_level_grid(0.01, 9.5, 100))
    upd = make_sigma_update("exact", model=mix)
    model = CountingDenoiser(lambda x, s: torch.where(torch.arange(4)[:, None] == 2, float("nan"), x))
    with pytest.raises(FloatingPointError, match=r"chain\(s\) \[2\] at Gibbs step 0"):
        dlg_step(model, state, upd, eta=0.01)


def test_mala_needs_log_prob():
    state = dlg_init(torch.zeros(2, 2, dtype=torch.float64), torch.zeros(2, dtype=torch.long), GRID)
    with pytest.raises(TypeError, match="log_prob"):
        dlg_step(lambda x, s: x, state, lambda x, g, gen: torch.zeros(2, dtype=torch.long), eta=0.1, x_update="mala")


@pytest.mark.slow
def test_default_settings_give_correct_mode_weights():
    """Ring of 8 with weights 1..8 (8x ratio): targets.dlg_config defaults give a mode-weight TV within the
    95% quantile of the TV of exact sample sets of the same size (2048 outputs; seeds 0 and 7; quantile from 200
    exact sets)."""
    from dmcmc_edu.evaluation import metrics

    mix = ring()
    n = 2048
    g = torch.Generator().manual_seed(7)
    exact = np.quantile([metrics.mode_weight_tv(mix, mix.sample(n, g)) for _ in range(200)], 0.95)
    cfg = dlg_config(mix, n)
    res = DMCMCSampler(mix, cfg, data_shape=(2,)).run()
    assert res.samples.shape == (n, 2)
    tv = metrics.mode_weight_tv(mix, res.samples)
    assert tv <= exact, (tv, exact)
    assert abs(metrics.spread(mix, res.samples) - 1) < 0.1


def test_prior_over_the_grid_is_overridable():
    """With a non-uniform prior pi_i ∝ i + 1 the exact/MALA chain's sigma marginal is that prior (chi-square, 0.1%)."""
    g = torch.Generator().manual_seed(4)
    prior = torch.arange(1, len(GRID) + 1, dtype=torch.float64)
    upd = make_sigma_update("exact", model=MIX1D, log_prior=prior.log())
    idx = torch.multinomial(prior / prior.sum(), 4000, replacement=True, generator=g)
    x = MIX1D.sample(4000, g) + GRID[idx][:, None] * torch.randn(4000, 1, generator=g, dtype=torch.float64)
    state = dlg_init(x, idx, GRID)
    for _ in range(100):
        state, _ = dlg_step(MIX1D, state, upd, eta=0.05, generator=g, x_update="mala")
    counts = torch.bincount(state.index, minlength=len(GRID)).double()
    expected = 4000 * prior / prior.sum()
    assert (((counts - expected) ** 2) / expected).sum().item() < 24.3  # chi2_7 99.9%
    with pytest.raises(ValueError, match="grid's shape"):
        make_sigma_update("exact", model=MIX1D, log_prior=torch.zeros(3))(x, GRID)


class _NanAfter:
    """The ring's denoiser, returning NaN for chain 1 from the ``after``-th call on (a chain that diverges)."""

    def __init__(self, after: int):
        self.mix, self.after, self.calls = ring(), after, 0

    def __call__(self, x, sigma):
        self.calls += 1
        out = self.mix(x, sigma)
        if self.calls > self.after:
            out = out.clone()
            out[1] = float("nan")
        return out


def test_a_chain_that_diverges_during_an_output_round_stops_the_sampler_naming_it():
    """The divergence monitor of an output round is checked (not only collected): next_round raises."""
    mix = ring()
    cfg = dlg_config(mix, n_outputs=8, outputs_per_chain=2, n_skip=3, x_update="ula",
                     sigma_update="classifier-argmax", init_steps=2, burn_in=[], seed=0)
    model = _NanAfter(after=10**9)
    sampler = DMCMCSampler(model, cfg, data_shape=(2,), classifier=ExactLevelClassifier(mix, cfg.grid()))
    sampler.init_chains()
    model.after = model.calls  # from now on chain 1's denoiser is NaN
    with pytest.raises(FloatingPointError, match=r"chain\(s\) \[1\]"):
        sampler.next_round()


def test_one_kar2_init_step_is_run_and_counted():
    """init_steps = 1: a one-step KAR2 run (1 NFE per chain) moves the chains and enters the ledger."""
    mix = ring()
    base = dict(n_outputs=4, outputs_per_chain=1, burn_in=[], seed=0, init_kick=0.0)
    one = DMCMCSampler(mix, dlg_config(mix, init_steps=1, **base), data_shape=(2,))
    none = DMCMCSampler(mix, dlg_config(mix, init_steps=0, **base), data_shape=(2,))
    one.init_chains()
    none.init_chains()
    # without the run the chains start at sigma_max z, far out; one KAR2 step to 0 lands them on the data
    assert float(one.state.x.norm(dim=1).max()) < 0.2 * float(none.state.x.norm(dim=1).min())
    assert one.ledger.init - none.ledger.init == one.config.n_chains
