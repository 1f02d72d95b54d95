"""DLG as a kernel built once, and a sampler that owns its state (issue 21, items 2 and 3).

Every check is at a fixed seed on the analytic ring mixture, whose denoiser, score and log-density are exact.
"""

import dataclasses
import io
import math

import pytest
import torch

from dmcmc_edu.core.dlg import DivergenceMonitor, dlg_init, dlg_kernel, dlg_step
from dmcmc_edu.core.langevin import StepSize, step_size
from dmcmc_edu.core.random import normal, uniform
from dmcmc_edu.core.sampler import BurnInPhase, DMCMCConfig, DMCMCSampler, chain_seed
from dmcmc_edu.core.schedules import noise_level_grid
from dmcmc_edu.core.sigma_updates import make_sigma_update
from dmcmc_edu.runs import sampler_fingerprint
from dmcmc_edu.targets import ring

MIX = ring()
GRID = noise_level_grid(0.01, 80.0, 60)
UPDATE = make_sigma_update("exact", model=MIX)


def _start(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    index = torch.randint(20, 60, (n,), generator=g)
    return MIX.sample(n, g) + GRID[index][:, None] * torch.randn(n, 2, generator=g, dtype=torch.float64), index


@pytest.mark.parametrize("x_update,eta_rel", [("ula", 0.0), ("mala", 0.0), ("mala", 0.3), ("ula", 0.3)])
def test_a_kernel_built_once_equals_dlg_step_bit_for_bit(x_update, eta_rel):
    x, index = _start()
    kernel = dlg_kernel(MIX, UPDATE, GRID, eta=0.05, eta_rel=eta_rel, x_update=x_update)
    a, b = kernel.init(x, index), dlg_init(x, index, GRID)
    ga, gb = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    for _ in range(6):
        a, ia = kernel.step(a, ga)
        b, ib = dlg_step(MIX, b, UPDATE, eta=step_size(0.05, eta_rel, b.sigma), generator=gb, x_update=x_update)
        assert torch.equal(a.x, b.x) and torch.equal(a.index, b.index) and a.step == b.step
        assert (ia.accepted is None) == (ib.accepted is None)
        if ia.accepted is not None:
            assert torch.equal(ia.accepted, ib.accepted)
    assert torch.equal(ga.get_state(), gb.get_state())  # the same number of draws


def test_mala_acceptance_probability_is_the_metropolis_hastings_ratio():
    """info.acceptance = min(1, p(x') q(x | x') / (p(x) q(x' | x))), computed here from the ring's exact score and
    log-density with torch.distributions; the decisions are u < that probability."""
    x, index = _start(64, seed=1)
    eta = 0.3  # large enough that many proposals are rejected
    kernel = dlg_kernel(MIX, UPDATE, GRID, eta=eta, x_update="mala")
    state = kernel.init(x, index)
    new, info = kernel.step(state, torch.Generator().manual_seed(11))
    replay = torch.Generator().manual_seed(11)  # the same draws: z for the proposal, then u
    z = normal(x.shape, replay, x.dtype, x.device)
    u = uniform(x.shape[0], replay, x.device)
    s = state.sigma
    prop = x + 0.5 * eta * MIX.score(x, s) + math.sqrt(eta) * z

    def log_q(to, frm):  # log N(to; frm + eta/2 score(frm), eta I)
        return torch.distributions.Normal(frm + 0.5 * eta * MIX.score(frm, s), math.sqrt(eta)).log_prob(to).sum(1)

    log_ratio = MIX.log_prob(prop, s) - MIX.log_prob(x, s) + log_q(x, prop) - log_q(prop, x)
    want = log_ratio.clamp(max=0).exp()
    assert info.acceptance.dtype == torch.float64
    torch.testing.assert_close(info.acceptance, want, rtol=1e-9, atol=1e-12)
    assert ((want > 0.05) & (want < 0.95)).sum() >= 5 and (want == 1).sum() >= 5  # both kinds of chain occur
    assert torch.equal(info.accepted, u < want)
    torch.testing.assert_close(new.x, torch.where(info.accepted[:, None], prop, x), rtol=0,
                               atol=1e-12 * prop.abs().max().item())
    _, ula = dlg_kernel(MIX, UPDATE, GRID, eta=eta).step(state, torch.Generator().manual_seed(11))
    assert ula.accepted is None and torch.equal(ula.acceptance, torch.ones(64, dtype=torch.float64))


def test_a_custom_x_update_reports_its_decisions_as_probabilities():
    x, index = _start(4)

    def half(model, x, sigma, eta, generator=None):  # keeps chains 0 and 2, "rejects" 1 and 3
        keep = torch.tensor([True, False, True, False])
        return x, keep

    _, info = dlg_kernel(MIX, UPDATE, GRID, eta=0.1, x_update=half).step(dlg_init(x, index, GRID))
    assert torch.equal(info.acceptance, torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64))


def test_an_absurd_step_is_flagged_per_chain_without_raising():
    x, index = _start(4)
    eta = torch.tensor([0.01, 1e12, 0.01, 1e12], dtype=torch.float64)
    kernel = dlg_kernel(MIX, UPDATE, GRID, eta=eta)
    state = kernel.init(x, index)
    sigma0 = state.sigma[[1, 3]].tolist()
    monitor = DivergenceMonitor()
    for _ in range(3):
        new, info = kernel.step(state, torch.Generator().manual_seed(0))
        monitor.update(state, info)
        state = new
        assert torch.equal(info.diverged, torch.tensor([False, True, False, True]))
        assert torch.equal(info.eta, eta)
    with pytest.raises(FloatingPointError, match=r"chain\(s\) \[1, 3\] at Gibbs step 0 diverged") as err:
        monitor.check()
    assert f"(sigma {sigma0}, eta [1000000000000.0, 1000000000000.0])" in str(err.value)
    fine = DivergenceMonitor()
    fine.update(state, dataclasses.replace(info, diverged=torch.zeros(4, dtype=torch.bool)))
    fine.check()  # nothing flagged: no error
    strict = dlg_kernel(MIX, UPDATE, GRID, eta=eta, on_divergence="raise")
    start = strict.init(x, index)
    assert len(set(start.sigma.tolist())) == 4  # distinct levels, so the message must show the diverged chains' own
    with pytest.raises(FloatingPointError, match=r"chain\(s\) \[1, 3\] at Gibbs step 0") as err:
        strict.step(start, torch.Generator().manual_seed(0))
    assert f"(sigma {sigma0}, eta [1000000000000.0, 1000000000000.0])" in str(err.value)


def _count_host_reads(fn):
    """How often ``fn()`` reads a tensor's value on the host (bool/int/float/item/tolist/nonzero): on a GPU each
    of these waits for the device."""
    names = ["__bool__", "__int__", "__float__", "__index__", "item", "tolist", "nonzero"]
    orig, n = {k: getattr(torch.Tensor, k) for k in names}, [0]

    def counting(k):
        def f(self, *a, **kw):
            n[0] += 1
            return orig[k](self, *a, **kw)
        return f

    try:
        for k in names:
            setattr(torch.Tensor, k, counting(k))
        fn()
    finally:
        for k in names:
            setattr(torch.Tensor, k, orig[k])
    return n[0]


def test_a_kernel_step_reads_nothing_back_from_the_device_and_dlg_step_does():
    x, index = _start(6)
    model = lambda x, s: 0.5 * x  # noqa: E731  (plain tensor arithmetic: any host read is the kernel's own)
    to_level_7 = lambda x, grid, gen: torch.full((x.shape[0],), 7, dtype=torch.long)  # noqa: E731
    kernel = dlg_kernel(model, to_level_7, GRID, eta=0.05)
    state = kernel.init(x, index)
    assert _count_host_reads(lambda: kernel.step(state, torch.Generator().manual_seed(0))) == 0
    assert _count_host_reads(lambda: dlg_step(model, state, to_level_7, eta=0.05)) > 0  # the check can fail


def test_a_non_finite_state_is_flagged():
    x, index = _start(4)
    nan_at_2 = lambda x, s: torch.where(torch.arange(4)[:, None] == 2, float("nan"), MIX(x, s))  # noqa: E731
    _, info = dlg_kernel(nan_at_2, UPDATE, GRID, eta=0.01).step(dlg_init(x, index, GRID))
    assert torch.equal(info.diverged, torch.tensor([False, False, True, False]))


def test_the_divergence_bound_is_100_sigma_max_in_rms_and_the_monitor_names_the_first_step():
    x, index = _start(4)
    sigma_max = GRID[0].item()
    rms = torch.tensor([99.0, 101.0, 50.0, 99.9], dtype=torch.float64) * sigma_max
    calls = []

    def jump(model, x, sigma, eta, generator=None):  # step 0: rows at the given RMS; step 1: row 2 becomes inf
        calls.append(1)
        out = rms[:, None] * torch.ones(4, 2, dtype=torch.float64)
        return (out if len(calls) == 1 else torch.where(torch.arange(4)[:, None] == 2, math.inf, out)), None

    kernel = dlg_kernel(MIX, UPDATE, GRID, eta=0.01, x_update=jump)
    state, monitor = kernel.init(x, index), DivergenceMonitor()
    flags = []
    for _ in range(2):
        new, info = kernel.step(state)
        monitor.update(state, info)
        flags.append(info.diverged.tolist())
        state = new
    assert flags == [[False, True, False, False], [False, True, True, False]]
    with pytest.raises(FloatingPointError, match=r"chain\(s\) \[1\] at Gibbs step 0 diverged"):
        monitor.check()


def test_the_kernel_checks_its_settings_once_with_one_line_errors():
    for bad in (0.0, -1.0, math.nan, math.inf, torch.tensor([0.1, -0.1])):
        with pytest.raises(ValueError, match="eta must be > 0 and finite"):
            dlg_kernel(MIX, UPDATE, GRID, eta=bad)
    with pytest.raises(ValueError, match="eta_rel must be >= 0"):
        StepSize(0.1, -0.5)
    with pytest.raises(ValueError, match="unknown x-update 'hmc'"):
        dlg_kernel(MIX, UPDATE, GRID, eta=0.1, x_update="hmc")
    with pytest.raises(TypeError, match="log_prob"):
        dlg_kernel(lambda x, s: x, UPDATE, GRID, eta=0.1, x_update="mala")
    with pytest.raises(ValueError, match="strictly decreasing"):
        dlg_kernel(MIX, UPDATE, GRID.flip(0), eta=0.1)
    with pytest.raises(ValueError, match="on_divergence"):
        dlg_kernel(MIX, UPDATE, GRID, eta=0.1, on_divergence="ignore")


def test_kernel_init_snaps_float_sigmas_to_the_nearest_level():
    kernel = dlg_kernel(MIX, UPDATE, GRID, eta=0.1)
    sig = GRID[[5, 17, 40]] * torch.tensor([1.01, 0.99, 1.0], dtype=torch.float64)
    assert kernel.init(torch.zeros(3, 2, dtype=torch.float64), sig).index.tolist() == [5, 17, 40]


# ----------------------------------------------------------------------------- the sampler's own state

def _config(**kw):
    base = dict(sigma_min=0.01, sigma_max=80.0, n_levels=100, eta=0.01, n_chains=8, outputs_per_chain=4,
                init_steps=4, burn_in=[[3, 0.02], [2, None]], n_skip=2, steps=3, seed=3)
    return DMCMCConfig(**{**base, **kw})


def _through_bytes(d: dict) -> dict:
    buf = io.BytesIO()
    torch.save(d, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def test_each_burn_in_phase_steps_with_its_own_eta():
    """The sampler's burn-in equals dlg_step replayed with the phases' etas (0.3, 0.3, then the main 0.01)."""
    cfg = _config(burn_in=[[2, 0.3], [1, None]], eta_rel=0.1)
    sampler = DMCMCSampler(MIX, cfg, data_shape=(2,))
    sampler.init_chains()
    state, g = sampler.state, torch.Generator().set_state(sampler.generator.get_state())
    sampler.burn_in()
    for eta in (0.3, 0.3, 0.01):
        state, _ = dlg_step(MIX, state, sampler.sigma_update, eta=step_size(eta, 0.1, state.sigma), generator=g)
    assert torch.equal(sampler.state.x, state.x) and torch.equal(sampler.state.index, state.index)


@pytest.mark.parametrize("kw", [dict(), dict(per_chain_seeds=True, x_update="mala", eta_rel=0.2)])
@pytest.mark.parametrize("stop", ["burn-in", "rounds"])
def test_state_dict_round_trip_continues_a_run_identically(kw, stop):
    cfg = _config(**kw)
    whole = DMCMCSampler(MIX, cfg, data_shape=(2,)).run()
    first = DMCMCSampler(MIX, cfg, data_shape=(2,))
    if stop == "burn-in":
        assert not first.burn_in(max_steps=2)
        done = []
    else:
        done = [first.next_round()[0] for _ in range(2)]
    second = DMCMCSampler(MIX, cfg, data_shape=(2,))
    second.load_state_dict(_through_bytes(first.state_dict()))
    assert second.state.step == first.state.step and second.burn_in_done == first.burn_in_done
    rest = second.run(rounds=cfg.outputs_per_chain - len(done))
    assert torch.equal(torch.cat([*done, rest.samples]), whole.samples)
    assert torch.equal(rest.sigma_trace, whole.sigma_trace)
    assert second.ledger.per_output() == whole.ledger.per_output()


def test_load_state_dict_refuses_other_settings_and_other_things():
    saved = DMCMCSampler(MIX, _config(), data_shape=(2,)).state_dict()
    with pytest.raises(ValueError, match=r"different settings: eta: 0\.01 \(saved\) vs 0\.02 \(now\)$"):
        DMCMCSampler(MIX, _config(eta=0.02), data_shape=(2,)).load_state_dict(saved)
    with pytest.raises(ValueError, match=r"per_chain_seeds: None \(saved\) vs True \(now\)"):
        DMCMCSampler(MIX, _config(per_chain_seeds=True), data_shape=(2,)).load_state_dict(saved)
    with pytest.raises(ValueError, match="not a DMCMC checkpoint"):
        DMCMCSampler(MIX, _config(), data_shape=(2,)).load_state_dict({"format": "something else"})


def test_per_chain_generators_make_a_chain_independent_of_the_number_of_chains():
    """Chain k's outputs, chosen sigmas and sigma trace with 4 chains equal those with 8 (same seed); with the
    shared generator they differ (so the check can fail)."""
    def run(n, per_chain):
        cfg = _config(n_chains=n, per_chain_seeds=per_chain, outputs_per_chain=3, integrator="euler_maruyama",
                      steps_per_decade=3.0)  # a stochastic integrator, run in groups of chains by number of steps
        r = DMCMCSampler(MIX, cfg, data_shape=(2,)).run()
        return r.samples.reshape(3, n, 2)[:, :4], r.chosen_sigma.reshape(3, n)[:, :4], r.sigma_trace[:, :4]

    four, eight = run(4, True), run(8, True)
    for a, b in zip(four, eight):
        assert torch.equal(a, b)
    assert not torch.equal(run(4, False)[0], run(8, False)[0])
    assert len({chain_seed(3, k) for k in range(1000)} | {chain_seed(4, 0)}) == 1001


def test_burn_in_phases_are_typed_and_stored_as_pairs():
    cfg = _config(burn_in=[[3, 0.02], (2, None)])
    assert cfg.burn_in == [BurnInPhase(3, 0.02), BurnInPhase(2)]
    assert cfg.to_dict()["burn_in"] == [[3, 0.02], [2, None]]
    assert cfg.burn_in_etas() == [0.02, 0.02, 0.02, 0.01, 0.01]
    assert cfg == _config(burn_in=[BurnInPhase(3, 0.02), BurnInPhase(2, None)])
    assert [(n, eta) for n, eta in cfg.burn_in] == [(3, 0.02), (2, None)]
    for bad in ([[2.5, None]], [[2, -1.0]], [[1, 2, 3]], [[True, None]], "10:"):
        with pytest.raises(ValueError, match="burn_in"):
            _config(burn_in=bad).validate()


def test_fingerprints_of_earlier_runs_are_unchanged():
    """The new option appears in a config's dict only when set, so a run folder made before it still resumes."""
    s = DMCMCSampler(MIX, _config(), data_shape=(2,))
    assert "per_chain_seeds" not in s.config.to_dict() and "per_chain_seeds" not in sampler_fingerprint(s)["settings"]
    t = DMCMCSampler(MIX, _config(per_chain_seeds=True), data_shape=(2,))
    assert sampler_fingerprint(t)["settings"]["per_chain_seeds"] is True
