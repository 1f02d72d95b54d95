"""Integrators and solvers on given levels (``sigmas=``), and the float64 references of their stochastic steps.

* every integrator x every schedule builder runs, and the NFE a CountingDenoiser counts is the one the levels imply;
* the short form ``f(model, x, sigma_start, sigma_min, steps)`` equals ``f(model, x, sigmas=default levels)`` bit
  for bit, for every integrator;
* bad levels fail with one line naming the rule;
* KAR2's churn and Restart's backward churn (gamma > 0) agree with k-diffusion's ``sample_heun`` to 1e-10 in float64;
* UniPC's two last-step conventions: the authors' (default) against diffusers run as the authors' code runs
  (M = N - 1 steps down to sigma_min, then the data prediction), and the diffusers one against diffusers.
"""

import math

import pytest
import torch
from test_modern_solvers import k_diffusion_sampling, small_mixture

from dmcmc_edu.core.contract import CountingDenoiser
from dmcmc_edu.core.integrators import kar2, sample_from_noise
from dmcmc_edu.core.schedules import SCHEDULES, check_sigmas, grid_sigmas, karras_sigmas, make_sigmas, noise_level_grid
from dmcmc_edu.registry import get_integrator, integrator_table
from dmcmc_edu.solvers import restart, unipc
from dmcmc_edu.targets import ring

SIGMA_MIN = 0.01
# methods whose levels end at 0 by default (the last step is the data prediction or an Euler step to 0)
TO_ZERO = {"kar1", "kar2", "dpmpp_2m", "dpmpp_2m_sde", "unipc", "restart", "em_score_sde"}
ONE_PER_STEP = {"pf_euler", "reverse_diffusion", "euler_maruyama", "dpmpp_2m", "dpmpp_2m_sde", "unipc", "em_score_sde"}
HEUN = {"kar1", "kar2", "restart"}


def starts(b=6, seed=0):
    return torch.exp(torch.empty(b, dtype=torch.float64).uniform_(math.log(0.05), math.log(80.0),
                                                                  generator=torch.Generator().manual_seed(seed)))


def noisy(mix, s0, seed=1):
    g = torch.Generator().manual_seed(seed)
    return mix.sample(s0.numel(), g) + s0[:, None] * torch.randn(s0.numel(), mix.d, generator=g, dtype=torch.float64)


def implied_nfe(name, n, to_zero, info):
    if name in ONE_PER_STEP:
        return n
    if name == "pc":
        return 2 * n  # one Langevin corrector step per predictor step
    if name == "rk45":
        return info.extra["nfev"]
    heun = 2 * n - 1 if to_zero else 2 * n
    return heun + (8 * info.extra["restarted_fraction"] if name == "restart" else 0)


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("name", list(integrator_table()))
def test_every_integrator_runs_on_every_schedule_with_the_implied_nfe(name, schedule):
    mix, n = ring(), 7
    s0 = starts()
    sig = make_sigmas(schedule, s0, SIGMA_MIN, n, to_zero=name in TO_ZERO)
    counter = CountingDenoiser(mix, n_samples=s0.numel())
    out, info = get_integrator(name)(counter, noisy(mix, s0), sigmas=sig, generator=torch.Generator().manual_seed(2))
    assert out.shape == (6, 2) and torch.isfinite(out).all()
    assert info.steps == (n if name != "rk45" else info.steps) and info.sigma_end == float(sig[0, -1])
    assert counter.nfe == info.nfe == pytest.approx(implied_nfe(name, n, name in TO_ZERO, info))


@pytest.mark.parametrize("name", ["kar1", "kar2", "dpmpp_2m", "dpmpp_2m_sde", "unipc", "restart"])
def test_methods_that_end_at_zero_also_run_on_levels_that_end_above_it(name):
    mix, n = ring(), 6
    s0 = starts(seed=3)
    sig = make_sigmas("geometric", s0, SIGMA_MIN, n, to_zero=False)
    counter = CountingDenoiser(mix, n_samples=s0.numel())
    _, info = get_integrator(name)(counter, noisy(mix, s0), sigmas=sig, generator=torch.Generator().manual_seed(0))
    assert info.sigma_end == SIGMA_MIN and counter.nfe == pytest.approx(implied_nfe(name, n, False, info))
    _, info = sample_from_noise(mix, (5, 2), integrator=get_integrator(name), sigmas=sig[0],
                                generator=torch.Generator().manual_seed(0))
    assert info.extra["final_tweedie"] is True  # it ended above 0: the Tweedie step follows


# rk45 has one error control for the batch, pc's corrector a step size averaged over the batch (as documented)
@pytest.mark.parametrize("name", [n for n in integrator_table() if n not in ("rk45", "pc")])
def test_each_row_runs_on_its_own_levels(name):
    """A batch whose rows have different levels (schedules, starts) equals each row run alone (per-row seeds)."""
    mix, n = ring(), 5
    s0 = starts(b=4, seed=5)
    sig = torch.cat([make_sigmas(k, s0[i:i + 1], SIGMA_MIN, n, to_zero=name in TO_ZERO)
                     for i, k in enumerate(sorted(SCHEDULES))])
    x, fn = noisy(mix, s0), get_integrator(name)
    batch, _ = fn(mix, x, sigmas=sig, generator=[torch.Generator().manual_seed(30 + b) for b in range(4)])
    for b in range(4):
        one, _ = fn(mix, x[b:b + 1], sigmas=sig[b:b + 1], generator=[torch.Generator().manual_seed(30 + b)])
        torch.testing.assert_close(one[0], batch[b], rtol=1e-12, atol=1e-12)


DEFAULT_LEVELS = {  # each method's levels of the short form (sigma_start, sigma_min, steps)
    **dict.fromkeys(["kar1", "kar2", "dpmpp_2m", "dpmpp_2m_sde", "unipc", "restart"], "karras"),
    **dict.fromkeys(["pf_euler", "reverse_diffusion", "euler_maruyama", "pc", "rk45", "em_score_sde"], "geometric"),
}


@pytest.mark.parametrize("name", list(integrator_table()))
def test_an_explicit_schedule_equals_the_short_form_bit_for_bit(name):
    mix, n = ring(), 6 if name != "rk45" else 1
    s0 = starts(seed=4)
    x = noisy(mix, s0)
    short, info_a = get_integrator(name)(mix, x, s0, SIGMA_MIN, n, generator=torch.Generator().manual_seed(7))
    sig = make_sigmas(DEFAULT_LEVELS[name], s0, SIGMA_MIN, n, to_zero=name in TO_ZERO)
    given, info_b = get_integrator(name)(mix, x, sigmas=sig, generator=torch.Generator().manual_seed(7))
    assert torch.equal(short, given)
    assert info_a.nfe == info_b.nfe and info_a.sigma_end == info_b.sigma_end


def test_the_schedule_builders_space_their_levels_as_named():
    s0 = torch.tensor([40.0, 2.0], dtype=torch.float64)
    geo = make_sigmas("geometric", s0, SIGMA_MIN, 5, to_zero=False)
    ratios = geo[:, 1:] / geo[:, :-1]
    torch.testing.assert_close(ratios, ratios[:, :1].expand_as(ratios), rtol=1e-12, atol=0)
    lin = make_sigmas("linear", s0, SIGMA_MIN, 5, to_zero=True)
    assert torch.all(lin[:, -1] == 0) and lin.shape == (2, 6)
    gaps = lin[:, 1:-1] - lin[:, :-2]
    torch.testing.assert_close(gaps, gaps[:, :1].expand_as(gaps), rtol=1e-12, atol=0)
    kar = make_sigmas("karras", s0, SIGMA_MIN, 5, to_zero=False)
    torch.testing.assert_close(kar, karras_sigmas(s0, SIGMA_MIN, 6, append_zero=False), rtol=1e-14, atol=0)
    # the paper's grid: inner levels are levels of noise_level_grid(sigma_min, 50, 1000); the ends are exact
    g = grid_sigmas(s0, SIGMA_MIN, 6)
    lv = noise_level_grid(SIGMA_MIN, 50.0, 1000)
    assert torch.equal(g[:, 0], s0) and torch.all(g[:, -1] == SIGMA_MIN)
    for v in g[:, 1:-1].flatten():
        assert (lv == v).any()
    with pytest.raises(ValueError, match="grid_sigmas: fewer than 40 grid levels"):
        grid_sigmas(torch.tensor([0.0102], dtype=torch.float64), SIGMA_MIN, 40)
    # a repeated level in the middle of the ramp (not next to the start) is refused too: from level 10 of 20,
    # 12 steps round to indices 10, 11, 12, 12, ...
    small = noise_level_grid(SIGMA_MIN, 50.0, 20)
    with pytest.raises(ValueError, match="grid_sigmas: fewer than 12 grid levels"):
        grid_sigmas(small[[10]].double(), SIGMA_MIN, 12, n_levels=20)


@pytest.mark.parametrize("sigmas,match", [
    (torch.tensor([[5.0, 1.0, 0.1]]), r"shape \[B=3, N \+ 1\]"),
    (torch.tensor([5.0]), r"shape \[B=3, N \+ 1\]"),
    (torch.tensor([5.0, 6.0, 0.1]), "strictly decreasing"),
    (torch.tensor([5.0, 1.0, 1.0]), "strictly decreasing"),
    (torch.tensor([5.0, -1.0, 0.0]), "> 0 except a final column"),
    (torch.tensor([[5.0, 1.0, 0.0], [5.0, 1.0, 0.1], [5.0, 1.0, 0.0]]), "all 0 or one sigma_min"),
    (torch.tensor([5.0, float("nan"), 0.1]), "finite"),
    (torch.tensor([5, 1, 0]), "floating-point"),
])
def test_bad_levels_fail_in_one_line(sigmas, match):
    x = torch.zeros(3, 2, dtype=torch.float64)
    for name in ("kar1", "dpmpp_2m", "pf_euler"):
        with pytest.raises(ValueError, match=match) as err:
            get_integrator(name)(ring(), x, sigmas=sigmas.to(torch.float64) if sigmas.is_floating_point() else sigmas)
        assert "\n" not in str(err.value) and str(err.value).startswith(name + ": ")


def test_levels_to_zero_where_the_method_cannot_end_there_and_mixed_forms_are_refused():
    x, sig = torch.zeros(2, 2, dtype=torch.float64), torch.tensor([5.0, 1.0, 0.0], dtype=torch.float64)
    for name in ("pf_euler", "reverse_diffusion", "euler_maruyama", "pc", "rk45"):
        with pytest.raises(ValueError, match=f"{name if name != 'pc' else 'reverse_diffusion'}: sigmas must end above"):
            get_integrator(name)(ring(), x, sigmas=sig)
    with pytest.raises(ValueError, match="em_score_sde: sigmas must end at 0"):
        get_integrator("em_score_sde")(ring(), x, sigmas=torch.tensor([5.0, 1.0, 0.1], dtype=torch.float64))
    with pytest.raises(ValueError, match="kar1: give sigmas= or"):
        get_integrator("kar1")(ring(), x, 5.0, 0.01, 3, sigmas=sig)
    with pytest.raises(ValueError, match="kar1: give sigmas=, or"):
        get_integrator("kar1")(ring(), x)
    assert check_sigmas(sig, 2).shape == (2, 3)  # a shared row is broadcast
    with pytest.raises(ValueError, match="sample_from_noise: sigmas must be strictly decreasing"):
        sample_from_noise(ring(), (3, 2), sigmas=torch.tensor([1.0, 2.0, 0.0]))


# ----------------------------------------------------------------------------- float64 references of the churn


def _rng_fork(seed):
    ctx = torch.random.fork_rng(devices=[])
    ctx.__enter__()
    torch.manual_seed(seed)
    return ctx


@pytest.mark.parametrize("mix_fn", [ring, small_mixture])
@pytest.mark.parametrize("s_tmin,s_tmax,steps", [(0.05, 1.0, 8), (0.0, float("inf"), 5), (0.05, 1.0, 18)])
def test_kar2_matches_k_diffusion_heun_with_churn_in_float64(mix_fn, s_tmin, s_tmax, steps):
    """Karras et al.'s Alg. 2 (k-diffusion 0.1.1's sample_heun with s_churn) at 1e-10: gamma in float64.

    Both draw one normal per step (zero amplitude outside [s_tmin, s_tmax]): the same draws from equal seeds.
    """
    kd = k_diffusion_sampling()
    mix = mix_fn()
    x0 = torch.randn(64, mix.d, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 80.0
    sig = karras_sigmas(torch.tensor([80.0], dtype=torch.float64), SIGMA_MIN, steps)[0]
    opts = dict(s_churn=80.0, s_tmin=s_tmin, s_tmax=s_tmax, s_noise=1.007)
    ours, _ = kar2(mix, x0, sigmas=sig, generator=torch.Generator().manual_seed(5), **opts)
    ctx = _rng_fork(5)
    try:
        ref = kd.sample_heun(mix, x0.clone(), sig, disable=True, **opts)
    finally:
        ctx.__exit__(None, None, None)
    assert (ours - ref).abs().max().item() <= 1e-10 * max(1.0, ref.abs().max().item())


@pytest.mark.parametrize("mix_fn", [ring, small_mixture])
@pytest.mark.parametrize("steps,interval,gamma", [(18, (3, 2, 0.06, 0.30), 0.05), (10, (4, 1, 0.1, 0.8), 0.2)])
def test_restart_with_churn_matches_k_diffusion_heun_pieces_in_float64(mix_fn, steps, interval, gamma):
    """Restart with restart_gamma > 0 (the authors' CIFAR-10 command) against k-diffusion's sample_heun, piece by piece.

    Main path: sample_heun without churn down to the main level t_j nearest t_min; K times: noise up to t_max
    (s_noise sqrt(t_max^2 - t_j^2) z), sample_heun with churn gamma (s_churn = gamma (N_restart - 1)) on
    N_restart Karras levels from t_max to t_j; then sample_heun on the rest of the main levels.  sample_heun draws
    on every step, as Restart's churned backward steps do; its draws on the main path (no churn, no effect) are
    made on a forked generator, so the restarts see the same draws in the same order as Restart.
    """
    kd = k_diffusion_sampling()
    mix, rho, s_noise = mix_fn(), 7.0, 1.003
    n_r, k, t_min, t_max = interval
    x0 = torch.randn(32, mix.d, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 80.0
    main = karras_sigmas(torch.tensor([80.0], dtype=torch.float64), SIGMA_MIN, steps)[0]
    ours, info = restart(mix, x0, sigmas=main, restarts=[list(interval)], restart_gamma=gamma, s_tmin=0.01,
                         s_tmax=1.0, s_noise=s_noise, generator=torch.Generator().manual_seed(9))
    j = int((main[:-1] - t_min).abs().argmin())
    back = torch.tensor([(t_max ** (1 / rho) + i / (n_r - 1) * (main[j].item() ** (1 / rho) - t_max ** (1 / rho)))
                         ** rho for i in range(n_r)], dtype=torch.float64)
    ctx = _rng_fork(9)
    try:
        with torch.random.fork_rng(devices=[]):
            x = kd.sample_heun(mix, x0.clone(), main[:j + 1], disable=True)
        for _ in range(k):
            x = x + torch.randn_like(x) * s_noise * math.sqrt(t_max**2 - main[j].item() ** 2)
            x = kd.sample_heun(mix, x, back, disable=True, s_churn=gamma * (n_r - 1), s_tmin=0.01, s_tmax=1.0,
                               s_noise=s_noise)
        with torch.random.fork_rng(devices=[]):
            ref = kd.sample_heun(mix, x, main[j:], disable=True)
    finally:
        ctx.__exit__(None, None, None)
    assert info.extra["restarted_fraction"] == 1.0
    assert (ours - ref).abs().max().item() <= 1e-10 * max(1.0, ref.abs().max().item())


def test_restart_defaults_to_the_authors_noise_inflation():
    mix = ring()
    x0 = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 80.0
    a, info = restart(mix, x0, 80.0, SIGMA_MIN, 8, generator=torch.Generator().manual_seed(1))
    b, _ = restart(mix, x0, 80.0, SIGMA_MIN, 8, s_noise=1.003, generator=torch.Generator().manual_seed(1))
    c, _ = restart(mix, x0, 80.0, SIGMA_MIN, 8, s_noise=1.0, generator=torch.Generator().manual_seed(1))
    assert info.extra["s_noise"] == 1.003 and torch.equal(a, b) and not torch.equal(a, c)


# ----------------------------------------------------------------------------- UniPC's last-step orders


def diffusers_unipc_to_sigma_min(mix, x0, levels, order, variant):
    """diffusers' UniPC run as the authors' code runs: M = len(levels) - 1 steps from levels[0] down to
    levels[-1] = sigma_min (``final_sigmas_type="sigma_min"``, our float64 levels), lower orders counted over those
    M steps, then the data prediction at sigma_min (the authors' ``denoise_to_zero``)."""
    try:
        from diffusers import UniPCMultistepScheduler
    except ImportError as err:
        pytest.skip(f"diffusers is not installed: {err}")
    m = levels.numel() - 1
    sched = UniPCMultistepScheduler(num_train_timesteps=1000, solver_order=order, solver_type=variant,
                                    prediction_type="sample", predict_x0=True, lower_order_final=True,
                                    final_sigmas_type="sigma_min")
    sched.set_timesteps(m)
    assert sched.sigmas.numel() == m + 1
    sched.sigmas = levels.clone()
    sample = x0 / math.sqrt(1.0 + levels[0].item() ** 2)
    for i, t in enumerate(sched.timesteps):
        x_ve = sample * torch.sqrt(1.0 + levels[i] ** 2)
        sample = sched.step(mix(x_ve, levels[i].expand(x0.shape[0])), t, sample).prev_sample
    x_ve = sample * torch.sqrt(1.0 + levels[-1] ** 2)
    return mix(x_ve, levels[-1].expand(x0.shape[0]))


@pytest.mark.parametrize("mix_fn", [ring, small_mixture])
@pytest.mark.parametrize("order,variant,steps", [(3, "bh2", 10), (2, "bh1", 6), (3, "bh1", 12), (4, "bh2", 12),
                                                 (3, "bh2", 4)])
def test_unipc_authors_final_orders_match_diffusers_run_as_the_authors_code(mix_fn, order, variant, steps):
    mix = mix_fn()
    x0 = torch.randn(64, mix.d, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 80.0
    sig = karras_sigmas(torch.tensor([80.0], dtype=torch.float64), SIGMA_MIN, steps)[0]
    ours, info = unipc(mix, x0, 80.0, SIGMA_MIN, steps, order=order, variant=variant)
    ref = diffusers_unipc_to_sigma_min(mix, x0, sig[:-1], order, variant)
    assert (ours - ref).abs().max().item() <= 1e-10
    m = steps - 1
    assert info.extra["orders"] == [min(order, i + 1, m - i) for i in range(m)]
    assert info.extra["lower_order_final"] == "authors" and info.nfe == steps


def test_unipc_conventions_differ_only_on_levels_that_end_at_zero():
    mix = ring()
    x0 = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 80.0
    a, ia = unipc(mix, x0, 80.0, SIGMA_MIN, 10)
    b, ib = unipc(mix, x0, 80.0, SIGMA_MIN, 10, lower_order_final="diffusers")
    assert ia.extra["orders"] == [1, 2, 3, 3, 3, 3, 3, 2, 1] and ib.extra["orders"] == [1, 2, 3, 3, 3, 3, 3, 3, 2]
    assert (a - b).abs().max().item() > 1e-6
    sig = karras_sigmas(torch.tensor([80.0], dtype=torch.float64), SIGMA_MIN, 10, append_zero=False)[0]
    c, ic = unipc(mix, x0, sigmas=sig)
    d, _ = unipc(mix, x0, sigmas=sig, lower_order_final="diffusers")
    assert torch.equal(c, d) and ic.extra["orders"] == [1, 2, 3, 3, 3, 3, 3, 2, 1]
    e, ie = unipc(mix, x0, 80.0, SIGMA_MIN, 10, lower_order_final="none")
    assert ie.extra["orders"] == [1, 2] + [3] * 7
    with pytest.raises(ValueError, match="unipc: lower_order_final must be"):
        unipc(mix, x0, 80.0, SIGMA_MIN, 10, lower_order_final="last")


def test_sample_from_noise_takes_each_rows_own_last_level_for_the_tweedie_step():
    """Rows whose last level above 0 differs (levels that end at 0; rows that stop above 0 share one sigma_min):
    the final Tweedie step of row i is D(x_i, row i's last level above 0)."""
    mix = ring()
    lo = torch.tensor([0.05, 0.2, 1.0], dtype=torch.float64)  # three rows, three different last levels
    sig = torch.cat([karras_sigmas(torch.tensor([10.0], dtype=torch.float64), float(v), 4) for v in lo])
    x, info = sample_from_noise(mix, (3, 2), integrator="kar1", sigmas=sig, final_tweedie=True,
                                generator=torch.Generator().manual_seed(4))
    assert info.extra["final_tweedie"]
    # the same run without the last step, then the step by hand at each row's level
    before, _ = sample_from_noise(mix, (3, 2), integrator="kar1", sigmas=sig, final_tweedie=False,
                                  generator=torch.Generator().manual_seed(4))
    assert torch.allclose(sig[:, -2], lo, rtol=1e-12)
    want = mix(before, sig[:, -2])
    torch.testing.assert_close(x, want, rtol=1e-12, atol=1e-12)
    # row 0's level for every row (the old behaviour) is a different result for the rows that end higher
    assert not torch.allclose(mix(before, torch.full((3,), 0.05, dtype=torch.float64))[1:], x[1:])


@pytest.mark.parametrize("name", [n for n in SCHEDULES if n != "karras"])
def test_make_sigmas_to_zero_needs_two_steps_and_says_so(name):
    """Levels that end at 0 need a level above sigma_min first: one step to 0 is refused by make_sigmas itself."""
    with pytest.raises(ValueError, match=r"steps must be an integer >= 2, got 1"):
        make_sigmas(name, torch.tensor([5.0], dtype=torch.float64), 0.01, 1, to_zero=True)
    assert make_sigmas(name, torch.tensor([5.0], dtype=torch.float64), 0.01, 2, to_zero=True).shape == (1, 3)


def test_an_integrator_that_needs_two_steps_refuses_levels_of_one():
    """em_score_sde needs at least 2 steps (min_steps): levels of one step are refused with the count."""
    em = get_integrator("em_score_sde")
    x = torch.zeros(3, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="needs at least 2 steps, got sigmas of 2 levels"):
        em(ring(), x, sigmas=torch.tensor([1.0, 0.0], dtype=torch.float64))
    _, info = em(ring(), x, sigmas=torch.tensor([1.0, 0.1, 0.0], dtype=torch.float64),
                 generator=torch.Generator().manual_seed(0))
    assert info.nfe == 2


def test_check_grid_takes_a_list_of_levels_as_a_tensor():
    """A grid given as a Python list is validated and returned as a tensor (it is not required to be one)."""
    from dmcmc_edu.core.schedules import check_grid

    grid = check_grid([3.0, 1.0, 0.1])
    assert isinstance(grid, torch.Tensor)
    torch.testing.assert_close(grid.double(), torch.tensor([3.0, 1.0, 0.1], dtype=torch.float64), rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match="strictly decreasing|finite levels > 0"):
        check_grid([0.1, 1.0, 3.0])
