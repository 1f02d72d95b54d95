"""DLG as a kernel built once (issue 21, item 2).

Every check is at a fixed seed on the analytic ring mixture, whose denoiser, score and log-density are exact.
"""

import dataclasses
import math

import pytest
import torch

from dmcmc_edu.core.dlg import DivergenceMonitor, dlg_init, dlg_kernel, dlg_step
from dmcmc_edu.core.langevin import StepSize, step_size
from dmcmc_edu.core.random import normal, uniform
from dmcmc_edu.core.schedules import noise_level_grid
from dmcmc_edu.core.sigma_updates import make_sigma_update
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
    with pytest.raises(FloatingPointError, match=r"chain\(s\) \[1, 3\] at Gibbs step 0"):
        strict.step(strict.init(x, index), torch.Generator().manual_seed(0))


def test_a_non_finite_state_is_flagged():
    x, index = _start(4)
    nan_at_2 = lambda x, s: torch.where(torch.arange(4)[:, None] == 2, float("nan"), MIX(x, s))  # noqa: E731
    _, info = dlg_kernel(nan_at_2, UPDATE, GRID, eta=0.01).step(dlg_init(x, index, GRID))
    assert torch.equal(info.diverged, torch.tensor([False, False, True, False]))


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
