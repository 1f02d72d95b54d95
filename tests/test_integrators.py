"""Integrators against a single Gaussian, where the probability-flow ODE has a closed form.

For p_0 = N(mu, tau I): p_sigma = N(mu, (tau + sigma^2) I), D(x, s) = mu + tau/(tau+s^2) (x - mu), and the
probability-flow ODE maps x(s0) to x(s) = mu + sqrt((tau+s^2)/(tau+s0^2)) (x(s0) - mu).
"""

import math

import pytest
import torch

from dmcmc_edu.core.contract import CountingDenoiser
from dmcmc_edu.core.integrators import (
    PAPER_INTEGRATORS,
    kar1,
    pf_euler,
    rk45,
    sample_from_noise,
)
from dmcmc_edu.core.tweedie import tweedie
from dmcmc_edu.registry import get_integrator
from dmcmc_edu.solvers import langevin_corrector

TAU = 0.5
MU = torch.tensor([1.0, -2.0], dtype=torch.float64)


def gauss_denoiser(x, sigma):
    s2 = sigma[:, None] ** 2
    return MU + TAU / (TAU + s2) * (x - MU)


def exact_flow(x, s0, s1):
    return MU + torch.sqrt((TAU + s1[:, None] ** 2) / (TAU + s0[:, None] ** 2)) * (x - MU)


def start(n, s0, seed=0):
    g = torch.Generator().manual_seed(seed)
    s0 = torch.as_tensor(s0, dtype=torch.float64).expand(n).clone()
    return MU + torch.randn(n, 2, generator=g, dtype=torch.float64) * torch.sqrt(TAU + s0[:, None] ** 2), s0


@pytest.mark.parametrize("name,order", [("kar1", 2), ("pf_euler", 1)])
def test_deterministic_convergence_order(name, order):
    """Error at N vs 2N steps shrinks by ~2^order (KAR1: Heun, 2nd order; PF Euler: 1st order)."""
    x, s0 = start(64, [20.0, 3.0, 0.7, 10.0] * 16)
    sigma_min = 1e-3 if name == "kar1" else 0.01
    end = torch.zeros_like(s0) if name == "kar1" else torch.full_like(s0, sigma_min)
    target = exact_flow(x, s0, end)
    errs = []
    for n in (16, 32, 64):
        out, _ = get_integrator(name)(gauss_denoiser, x, s0, sigma_min, n)
        errs.append((out - target).abs().max().item())
    ratios = [errs[0] / errs[1], errs[1] / errs[2]]
    expected = 2**order
    # tolerance: the observed ratio is within 30% of 2^order on the finer pair
    assert ratios[1] == pytest.approx(expected, rel=0.3), (errs, ratios)
    assert errs[2] < errs[0]


def test_rk45_matches_exact_flow():
    x, s0 = start(32, [50.0, 5.0, 0.5, 0.02] * 8)
    out, info = rk45(gauss_denoiser, x, s0, 0.01)
    torch.testing.assert_close(out, exact_flow(x, s0, torch.full_like(s0, 0.01)), atol=2e-4, rtol=0)
    assert info.nfe == info.extra["nfev"] > 10


@pytest.mark.parametrize("name", ["kar2", "reverse_diffusion", "euler_maruyama", "pc"])
def test_stochastic_integrators_moments(name):
    """From sigma_max the output has the target's mean and variance (n=20000, seed 1, tolerance ~5 s.e. + bias)."""
    n = 20000
    g = torch.Generator().manual_seed(1)
    out, info = sample_from_noise(gauss_denoiser, (n, 2), integrator=get_integrator(name), steps=200, sigma_max=20.0,
                                  sigma_min=0.01, generator=g)
    se_mean = math.sqrt(TAU / n)
    torch.testing.assert_close(out.mean(0), MU, atol=5 * se_mean, rtol=0)
    var = out.var(0)
    # s.e. of a sample variance is tau*sqrt(2/n) ~ 0.005; allow discretisation bias of 0.03
    assert torch.all((var - TAU).abs() < 0.03 + 5 * TAU * math.sqrt(2 / n)), var


@pytest.mark.parametrize("name", PAPER_INTEGRATORS)
def test_mixed_sigma_start_equals_alone(name):
    """A batch with mixed sigma_start gives what each sample gives when run alone (per-sample generators).

    (The PC sampler is excluded by design: its corrector step size is a batch statistic, as in score_sde.)
    """
    x, s0 = start(4, [8.0, 0.5, 2.0, 0.05], seed=3)
    fn = get_integrator(name)
    gens = [torch.Generator().manual_seed(100 + i) for i in range(4)]
    batch, _ = fn(gauss_denoiser, x, s0, 0.01, 6, generator=gens)
    for i in range(4):
        alone, _ = fn(gauss_denoiser, x[i : i + 1], s0[i : i + 1], 0.01, 6,
                      generator=[torch.Generator().manual_seed(100 + i)])
        tol = 1e-4 if name == "rk45" else 1e-12  # RK45 chooses steps for the batch jointly
        torch.testing.assert_close(batch[i : i + 1], alone, atol=tol, rtol=0)


@pytest.mark.parametrize("name,expected", [
    ("kar1", lambda n: 2 * n - 1), ("kar2", lambda n: 2 * n - 1), ("pf_euler", lambda n: n),
    ("reverse_diffusion", lambda n: n), ("euler_maruyama", lambda n: n), ("pc", lambda n: 2 * n),
])
def test_counted_nfe_equals_documented(name, expected):
    x, s0 = start(8, 5.0)
    for n in (1, 2, 7):
        outer = CountingDenoiser(gauss_denoiser, n_samples=8)
        _, info = get_integrator(name)(outer, x, s0, 0.01, n, generator=torch.Generator().manual_seed(0))
        assert info.nfe == expected(n)
        assert outer.nfe == expected(n)  # nested counters both advance


def test_tweedie_and_sample_from_noise_count():
    g = torch.Generator().manual_seed(0)
    out, info = sample_from_noise(gauss_denoiser, (16, 2), integrator="pf_euler", steps=10, sigma_max=10.0,
                                  sigma_min=0.01, generator=g)
    assert info.nfe == 11 and info.extra["final_tweedie"]
    _, info = sample_from_noise(gauss_denoiser, (16, 2), integrator="kar1", steps=10, sigma_max=10.0, sigma_min=0.01)
    assert info.nfe == 19 and not info.extra["final_tweedie"]
    x = torch.randn(5, 2, dtype=torch.float64)
    torch.testing.assert_close(tweedie(gauss_denoiser, x, 0.3), gauss_denoiser(x, torch.full((5,), 0.3,
                                                                                                  dtype=torch.float64)))


def test_same_seed_same_samples():
    for name in PAPER_INTEGRATORS:
        a, _ = sample_from_noise(gauss_denoiser, (8, 2), integrator=name, steps=5, sigma_max=5.0, sigma_min=0.01,
                                 generator=torch.Generator().manual_seed(7))
        b, _ = sample_from_noise(gauss_denoiser, (8, 2), integrator=name, steps=5, sigma_max=5.0, sigma_min=0.01,
                                 generator=torch.Generator().manual_seed(7))
        assert torch.equal(a, b), name


def test_langevin_corrector_keeps_target():
    """Langevin at fixed sigma leaves p_sigma approximately invariant (mean/var within 0.05)."""
    g = torch.Generator().manual_seed(2)
    x, s = start(20000, 1.0, seed=5)
    D = CountingDenoiser(gauss_denoiser, n_samples=x.shape[0])
    y = langevin_corrector(D, x, s, n_steps=20, snr=0.16, generator=g)
    assert D.nfe == 20
    assert (y.mean(0) - MU).abs().max() < 0.05
    assert ((y.var(0) - (TAU + 1.0)).abs() < 0.1).all()


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad,match", [
    (dict(x=torch.zeros(3)), "shape"),
    (dict(sigma_start=torch.ones(4)), r"shape \[B\]"),
    (dict(sigma_start=torch.tensor([1.0, -1.0, 1.0])), "> 0"),
    (dict(sigma_start=torch.tensor([1.0, float("nan"), 1.0])), "non-finite"),
    (dict(sigma_start=torch.tensor([1.0, 0.001, 1.0])), "sigma_start < sigma_min"),
    (dict(steps=0), "steps"),
    (dict(sigma_min=0.0), "sigma_min"),
    (dict(x=torch.tensor([[0.0, 1.0], [float("inf"), 0.0], [1.0, 1.0]])), "non-finite"),
])
@pytest.mark.parametrize("fn", [kar1, pf_euler])
def test_bad_input_errors(fn, bad, match):
    args = dict(x=torch.zeros(3, 2, dtype=torch.float64), sigma_start=torch.ones(3, dtype=torch.float64),
                sigma_min=0.01, steps=4)
    args.update(bad)
    with pytest.raises((ValueError, TypeError), match=match):
        fn(gauss_denoiser, args["x"], args["sigma_start"], args["sigma_min"], args["steps"])


def test_unknown_integrator():
    with pytest.raises(ValueError, match="known: kar1"):
        get_integrator("heun++")


@pytest.fixture(scope="module")
def ring_floor():
    """The ring, two exact reference sets (n = 1000) and the W2 / mode-TV of 10 further exact sets against them."""
    from dmcmc_edu.evaluation import metrics
    from dmcmc_edu.targets import ring

    mix = ring()
    g = torch.Generator().manual_seed(1)
    refs = [mix.sample(1000, g) for _ in range(2)]
    exact = [mix.sample(1000, g) for _ in range(10)]
    w2s = [sum(metrics.w2(e, r) for r in refs) / 2 for e in exact]
    tvs = [metrics.mode_weight_tv(mix, e) for e in exact]
    return mix, refs, max(w2s), max(tvs)


@pytest.mark.slow
@pytest.mark.parametrize("name", PAPER_INTEGRATORS)
def test_every_integrator_recovers_the_ring(name, ring_floor):
    """From sigma_max with enough steps the samples are as close to exact samples as exact samples are.

    Steps: KAR 100; reverse diffusion and Euler-Maruyama 400; probability-flow Euler (the slowest to converge) 1000;
    RK45 adaptive.  W2 (mean over 2 reference sets, n = 1000, seed 0) and mode-weight TV must be no larger than
    the largest of 10 exact sample sets (within the noise floor at about the 90% level)."""
    from dmcmc_edu.evaluation import metrics

    mix, refs, w2_floor, tv_floor = ring_floor
    steps = {"kar1": 100, "kar2": 100, "pf_euler": 1000}.get(name, 400)
    x, _ = sample_from_noise(mix, (1000, 2), integrator=name, steps=steps, sigma_max=mix.default_sigma_max(),
                             sigma_min=mix.default_sigma_min(), generator=torch.Generator().manual_seed(0))
    w_x = sum(metrics.w2(x, r) for r in refs) / 2
    assert w_x <= w2_floor, (w_x, w2_floor)
    assert metrics.mode_weight_tv(mix, x) <= tv_floor


def test_kar2_defaults_are_the_papers_churn_settings():
    """KAR2's churn settings as the DMCMC code (and Karras et al.'s Alg. 2 runs for it) uses them."""
    from dmcmc_edu.core.integrators import KAR2_DEFAULTS

    assert KAR2_DEFAULTS == {"s_churn": 80.0, "s_tmin": 0.05, "s_tmax": 1.0, "s_noise": 1.007}
