"""DPM-Solver++(2M), DPM-Solver++(2M) SDE, UniPC and Restart (dmcmc_edu.solvers), checked against references.

* DPM++ 2M / 2M SDE against k-diffusion 0.1.1's ``sample_dpmpp_2m`` / ``sample_dpmpp_2m_sde`` on the same sigma
  grid (ours, float64) and, for the SDE, the same noise (a ``noise_sampler`` drawing from an equal generator);
* UniPC against diffusers' ``UniPCMultistepScheduler`` driven in its VP parameterisation: the VE state x and the VP
  state x / sqrt(1 + sigma^2) share lambda = -log sigma and the data prediction, so the updates are the same maps;
  its float32 grid is replaced by ours in float64 (``scheduler.sigmas``), which makes an exact comparison possible;
* Restart against a direct transcription of the authors' Algorithm 1 (their ``generate_restart.py`` loop, written
  here with Python floats for one shared schedule) to 1e-12;
* per-sample starts (each row equals a run of that row alone), counted NFE, convergence orders on a Gaussian with
  a closed-form flow, and the SDE's output variance on a Gaussian.

The reference tests skip, with the reason, only if k-diffusion or diffusers is missing.
"""

import importlib
import importlib.util
import math
import sys
import types

import pytest
import torch

from dmcmc_edu.core.contract import CountingDenoiser
from dmcmc_edu.core.integrators import kar1, sample_from_noise
from dmcmc_edu.core.schedules import karras_sigmas
from dmcmc_edu.registry import get_integrator
from dmcmc_edu.solvers import MODERN_SOLVERS, dpmpp_2m, dpmpp_2m_sde, restart, unipc
from dmcmc_edu.targets import GaussianMixture, ring

SIGMA_MAX, SIGMA_MIN = 80.0, 0.01


def k_diffusion_sampling():
    """``k_diffusion.sampling`` without the package ``__init__`` (which imports k-diffusion's training stack)."""
    if "k_diffusion.sampling" in sys.modules:
        return sys.modules["k_diffusion.sampling"]
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("k-diffusion is not installed (pip install --no-deps k-diffusion==0.1.1.post1 torchsde "
                    "torchdiffeq trampoline)")
    if "k_diffusion" not in sys.modules:
        pkg = types.ModuleType("k_diffusion")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["k_diffusion"] = pkg
    try:
        return importlib.import_module("k_diffusion.sampling")
    except ImportError as err:
        pytest.skip(f"k_diffusion.sampling cannot be imported: {err}")


def small_mixture():
    """Three anisotropic components in 3-D (a second exact target beside the ring)."""
    return GaussianMixture([0.2, 0.5, 0.3], [[0.0, 2.0, -1.0], [1.5, -1.0, 0.5], [-2.0, 0.0, 1.0]],
                           covariances=[torch.diag(torch.tensor(v)).tolist()
                                        for v in ([0.3, 0.1, 0.2], [0.05, 0.4, 0.1], [0.2, 0.2, 0.02])])


def start(d, n=64, seed=0, sigma=SIGMA_MAX):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * sigma


def grid(steps, sigma_max=SIGMA_MAX, sigma_min=SIGMA_MIN):
    """The shared sigma grid ([steps + 1], trailing 0): the one our solvers build from a float sigma_start."""
    return karras_sigmas(torch.tensor([sigma_max], dtype=torch.float64), sigma_min, steps)[0]


# ----------------------------------------------------------------------------- DPM-Solver++ against k-diffusion


@pytest.mark.parametrize("mix_fn", [ring, small_mixture])
@pytest.mark.parametrize("steps", [1, 2, 7, 20])
def test_dpmpp_2m_matches_k_diffusion(mix_fn, steps):
    kd = k_diffusion_sampling()
    mix = mix_fn()
    x0 = start(mix.d)
    ours, info = dpmpp_2m(mix, x0, SIGMA_MAX, SIGMA_MIN, steps)
    ref = kd.sample_dpmpp_2m(mix, x0.clone(), grid(steps), disable=True)
    assert (ours - ref).abs().max().item() <= 1e-10
    assert info.nfe == steps and info.sigma_end == 0.0


@pytest.mark.parametrize("mix_fn", [ring, small_mixture])
@pytest.mark.parametrize("solver_type,eta", [("midpoint", 1.0), ("heun", 1.0), ("midpoint", 0.5)])
def test_dpmpp_2m_sde_matches_k_diffusion_with_the_same_noise(mix_fn, solver_type, eta):
    kd = k_diffusion_sampling()
    mix, steps = mix_fn(), 12
    x0 = start(mix.d)
    ours, info = dpmpp_2m_sde(mix, x0, SIGMA_MAX, SIGMA_MIN, steps, generator=torch.Generator().manual_seed(5),
                              eta=eta, solver_type=solver_type)
    g = torch.Generator().manual_seed(5)  # an equal generator: the same draws in the same order

    def noise_sampler(sigma, sigma_next):
        return torch.randn(x0.shape, generator=g, dtype=torch.float64)

    ref = kd.sample_dpmpp_2m_sde(mix, x0.clone(), grid(steps), disable=True, eta=eta, noise_sampler=noise_sampler,
                                 solver_type=solver_type)
    assert (ours - ref).abs().max().item() <= 1e-10
    assert info.nfe == steps


def test_dpmpp_2m_sde_without_noise_is_dpmpp_2m():
    """eta = 0 with the midpoint correction is DPM-Solver++(2M) term by term (a check of the 1/r factor)."""
    mix = ring()
    x0 = start(2)
    a, _ = dpmpp_2m_sde(mix, x0, SIGMA_MAX, SIGMA_MIN, 9, eta=0.0)
    b, _ = dpmpp_2m(mix, x0, SIGMA_MAX, SIGMA_MIN, 9)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- UniPC against diffusers


def diffusers_unipc(mix, x0, sig, order, variant, corrector=True):
    """diffusers' UniPCMultistepScheduler on our float64 grid ``sig`` ([N + 1], trailing 0), in VP coordinates."""
    try:
        from diffusers import UniPCMultistepScheduler
    except ImportError as err:
        pytest.skip(f"diffusers is not installed: {err}")
    n = sig.numel() - 1
    sched = UniPCMultistepScheduler(num_train_timesteps=1000, solver_order=order, solver_type=variant,
                                    prediction_type="sample", predict_x0=True, lower_order_final=True,
                                    final_sigmas_type="zero", disable_corrector=[] if corrector else list(range(n)))
    sched.set_timesteps(n)
    assert sched.sigmas.numel() == n + 1 and sched.timesteps.numel() == n
    sched.sigmas = sig.clone()  # our levels, float64
    sample = x0 / math.sqrt(1.0 + sig[0].item() ** 2)  # x_vp = alpha x_ve, alpha = 1 / sqrt(1 + sigma^2)
    for i, t in enumerate(sched.timesteps):
        s = sig[i]
        x_ve = sample * torch.sqrt(1.0 + s**2)
        den = mix(x_ve, s.expand(x0.shape[0]))
        if i == n - 1:
            # diffusers' last step (to sigma = 0, order 1) returns this data prediction: x_t = 0 * x + 1 * m0 for
            # bh2; for bh1 it computes B(h) * 0 with B(h) = -h = -inf and returns NaN, so the step is not called
            return den
        sample = sched.step(den, t, sample).prev_sample


@pytest.mark.parametrize("mix_fn", [ring, small_mixture])
@pytest.mark.parametrize("order,variant,steps", [(2, "bh2", 10), (3, "bh2", 10), (3, "bh1", 10), (2, "bh1", 5),
                                                 (3, "bh2", 3), (4, "bh2", 12), (1, "bh2", 6)])
def test_unipc_matches_diffusers(mix_fn, order, variant, steps):
    mix = mix_fn()
    x0 = start(mix.d)
    ours, info = unipc(mix, x0, SIGMA_MAX, SIGMA_MIN, steps, order=order, variant=variant,
                       lower_order_final="diffusers")
    ref = diffusers_unipc(mix, x0, grid(steps), order, variant)
    assert (ours - ref).abs().max().item() <= 1e-10
    assert info.nfe == steps


def test_unip_alone_matches_diffusers_without_corrector():
    mix = ring()
    x0 = start(2)
    ours, _ = unipc(mix, x0, SIGMA_MAX, SIGMA_MIN, 10, order=3, corrector=False, lower_order_final="diffusers")
    ref = diffusers_unipc(mix, x0, grid(10), 3, "bh2", corrector=False)
    assert (ours - ref).abs().max().item() <= 1e-10
    with_c, _ = unipc(mix, x0, SIGMA_MAX, SIGMA_MIN, 10, order=3, lower_order_final="diffusers")
    assert (with_c - ours).abs().max().item() > 1e-3  # the corrector does something


# ----------------------------------------------------------------------------- Restart against the algorithm


def restart_transcribed(mix, x, sigma_max, sigma_min, num_steps, restarts, g, rho=7.0):
    """Xu et al.'s Algorithm 1 as their generate_restart.py runs it (S_churn = 0, restart_gamma = 0, S_noise = 1).

    Main Karras levels (num_steps, then 0); restart_list keyed by the main level nearest to t_min; after the main
    step that lands there, K times: noise to t_max, Heun back over N_restart levels ending at that main level.
    """
    def levels(t_hi, t_lo, n):
        return [(t_hi ** (1 / rho) + j / (n - 1) * (t_lo ** (1 / rho) - t_hi ** (1 / rho))) ** rho for j in range(n)]

    def D(x, t):
        return mix(x, torch.full((x.shape[0],), t, dtype=torch.float64))

    def heun(x, t_cur, t_next, correct):
        d_cur = (x - D(x, t_cur)) / t_cur
        x_next = x + (t_next - t_cur) * d_cur
        if correct:
            d_prime = (x_next - D(x_next, t_next)) / t_next
            x_next = x + (t_next - t_cur) * (0.5 * d_cur + 0.5 * d_prime)
        return x_next

    t_steps = levels(sigma_max, sigma_min, num_steps) + [0.0]
    at = {min(range(len(t_steps)), key=lambda j: abs(t_steps[j] - r[2])): r for r in restarts}
    for i in range(num_steps):
        x = heun(x, t_steps[i], t_steps[i + 1], correct=i < num_steps - 1)
        if i + 1 in at:
            n_r, k, _, t_max = at[i + 1]
            new_t = levels(t_max, t_steps[i + 1], n_r)
            for _ in range(k):
                z = torch.randn(x.shape, generator=g, dtype=torch.float64)
                x = x + z * math.sqrt(new_t[0] ** 2 - new_t[-1] ** 2)
                for j in range(n_r - 1):
                    x = heun(x, new_t[j], new_t[j + 1], correct=True)
    return x


@pytest.mark.parametrize("mix_fn", [ring, small_mixture])
@pytest.mark.parametrize("steps,restarts", [(18, [[3, 2, 0.06, 0.30]]), (6, [[2, 1, 0.06, 0.30]]),
                                            (10, [[4, 1, 1.0, 3.0], [3, 2, 0.06, 0.30]])])
def test_restart_matches_the_transcribed_algorithm(mix_fn, steps, restarts):
    """Same schedule, same noise: agreement to 1e-12 (float64 rounding of the level formulas only)."""
    mix = mix_fn()
    x0 = start(mix.d)
    ours, info = restart(mix, x0, SIGMA_MAX, SIGMA_MIN, steps, restarts=restarts, s_noise=1.0,
                         generator=torch.Generator().manual_seed(3))
    ref = restart_transcribed(mix, x0, SIGMA_MAX, SIGMA_MIN, steps, restarts, torch.Generator().manual_seed(3))
    assert (ours - ref).abs().max().item() <= 1e-12
    extra = sum(k * 2 * (n_r - 1) for n_r, k, _, _ in restarts)
    assert info.nfe == 2 * steps - 1 + extra


def test_restart_without_repetitions_is_kar1_and_restarts_change_the_output():
    mix = ring()
    x0 = start(2)
    a, info = restart(mix, x0, SIGMA_MAX, SIGMA_MIN, 8, restarts=[[3, 0, 0.06, 0.3]])
    b, _ = kar1(mix, x0, SIGMA_MAX, SIGMA_MIN, 8)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert info.nfe == 15
    c, _ = restart(mix, x0, SIGMA_MAX, SIGMA_MIN, 8, generator=torch.Generator().manual_seed(0))
    assert (c - b).abs().max().item() > 1e-3


@pytest.mark.parametrize("bad", [[[1, 1, 0.06, 0.3]], [[3, 1, 0.3, 0.06]], [[3, 1, 0.001, 0.3]], [[3, 1, 0.1]]])
def test_restart_refuses_bad_intervals_in_one_line(bad):
    with pytest.raises(ValueError, match="restart: "):
        restart(ring(), start(2, 4), SIGMA_MAX, SIGMA_MIN, 5, restarts=bad)


# ----------------------------------------------------------------------------- per-sample starts, counted NFE


SOLVER_OPTIONS = {"dpmpp_2m": {}, "dpmpp_2m_sde": {}, "unipc": {"order": 3},
                  "restart": {"restarts": [[3, 2, 0.06, 0.30]]}}


@pytest.mark.parametrize("name", MODERN_SOLVERS)
def test_per_sample_start_rows_equal_single_sample_runs(name):
    """Each row of a batch with per-sample starts (and per-sample generators) equals a run of that row alone."""
    mix = ring()
    starts = torch.tensor([0.03, 0.2, 0.7, 5.0, 80.0], dtype=torch.float64)  # below, inside, above the restart band
    x = start(2, 5, seed=4, sigma=1.0) * starts[:, None] + mix.sample(5, torch.Generator().manual_seed(1))
    fn = get_integrator(name)
    batch, _ = fn(mix, x, starts, SIGMA_MIN, 7, generator=[torch.Generator().manual_seed(20 + b) for b in range(5)],
                  **SOLVER_OPTIONS[name])
    for b in range(5):
        one, _ = fn(mix, x[b:b + 1], starts[b:b + 1], SIGMA_MIN, 7, generator=[torch.Generator().manual_seed(20 + b)],
                    **SOLVER_OPTIONS[name])
        torch.testing.assert_close(one[0], batch[b], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", MODERN_SOLVERS)
def test_reported_nfe_equals_the_counted_calls(name):
    mix = ring()
    starts = torch.tensor([0.03, 0.2, 0.7, 5.0, 80.0], dtype=torch.float64)
    counter = CountingDenoiser(mix, n_samples=5)
    _, info = get_integrator(name)(counter, start(2, 5) * 0.01, starts, SIGMA_MIN, 6,
                                   generator=torch.Generator().manual_seed(0), **SOLVER_OPTIONS[name])
    assert info.nfe == counter.nfe and info.sigma_end == 0.0
    if name == "restart":  # 0.03 is not restarted (its nearest level is its start); the other four are, 8 NFE each
        assert info.extra["restarted_fraction"] == pytest.approx(0.8)
        assert counter.nfe == pytest.approx(11 + 0.8 * 8)
    else:
        assert counter.nfe == 6 and counter.calls == 6
    _, info = sample_from_noise(mix, (10, 2), integrator=get_integrator(name), steps=6, sigma_max=SIGMA_MAX,
                                sigma_min=SIGMA_MIN,
                                generator=torch.Generator().manual_seed(0), **SOLVER_OPTIONS[name])
    assert info.extra["final_tweedie"] is False  # they end at 0: no extra evaluation


# ----------------------------------------------------------------------------- properties on a Gaussian

TAU = 0.5
MU = torch.tensor([1.0, -2.0], dtype=torch.float64)


def gauss_denoiser(x, sigma):
    return MU + TAU / (TAU + sigma[:, None] ** 2) * (x - MU)


def exact_output(x, s0, sigma_min):
    """The probability-flow ODE from s0 to sigma_min in closed form, then the Tweedie step at sigma_min."""
    x_end = MU + torch.sqrt((TAU + sigma_min**2) / (TAU + s0[:, None] ** 2)) * (x - MU)
    return gauss_denoiser(x_end, torch.full_like(s0, sigma_min))


@pytest.mark.parametrize("name,options,order", [("dpmpp_2m", {}, 2), ("unipc", {"order": 2}, 3),
                                                ("unipc", {"order": 3}, 4),
                                                ("unipc", {"order": 2, "corrector": False}, 2),
                                                ("restart", {"restarts": [[3, 0, 0.06, 0.3]]}, 2)])
def test_convergence_order_on_a_gaussian(name, options, order):
    """Error ratio between N and 2N steps ~ 2^order (UniC-p raises UniP-p's order by one)."""
    s0 = torch.tensor([20.0, 3.0, 0.7, 10.0] * 8, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x = MU + torch.randn(32, 2, generator=g, dtype=torch.float64) * torch.sqrt(TAU + s0[:, None] ** 2)
    target = exact_output(x, s0, 1e-3)
    errs = []
    for n in (16, 32, 64):
        out, _ = get_integrator(name)(gauss_denoiser, x, s0, 1e-3, n, **options)
        errs.append((out - target).abs().max().item())
    ratio = errs[1] / errs[2]
    assert math.log2(ratio) == pytest.approx(order, abs=0.45), (errs, ratio)
    assert errs[2] < errs[1] < errs[0]


def test_dpmpp_2m_sde_gives_the_gaussian_its_variance():
    """From x ~ p_{sigma_max}, the SDE solver's outputs have the data's mean and variance (20,000 draws).

    Its weak error is visible at few steps (variance about 0.62 at 20 steps, 0.525 at 40): checked at 120 steps,
    within 4 standard errors plus 2 %, and the 20-step bias must be larger.
    """
    n = 20000
    bias = []
    for steps in (20, 120):
        g = torch.Generator().manual_seed(1)
        x = MU + torch.randn(n, 2, generator=g, dtype=torch.float64) * math.sqrt(TAU + SIGMA_MAX**2)
        out, _ = dpmpp_2m_sde(gauss_denoiser, x, SIGMA_MAX, 1e-3, steps, generator=g)
        bias.append((out.var(dim=0) - TAU).abs().max().item())
    se_var = TAU * math.sqrt(2.0 / n)
    assert bias[1] < 4 * se_var + 0.02 * TAU, bias
    assert bias[0] > 2 * bias[1]
    assert (out.mean(dim=0) - MU).abs().max().item() < 4 * math.sqrt(TAU / n)
