"""Checks of assignment A1, noise and denoising (``notebooks/assignments/source/a1_noise_and_denoising``).

The student writes five small functions; each check runs one of them on generated cases and compares it with the
library, which is the reference:

* ``forward_noise(x, sigma, eps)`` -- ``x_sigma = x + sigma * eps`` with one sigma per sample (shape ``[B]``);
* ``karras_schedule(sigma_start, sigma_min, steps, rho)`` -- :func:`dmcmc_edu.core.schedules.karras_sigmas`
  without its trailing zero;
* ``geometric_schedule(sigma_start, sigma_min, steps)`` -- :func:`dmcmc_edu.core.schedules.geometric_sigmas`;
* ``tweedie_denoiser(mixture, x, sigma)`` -- ``D(x, sigma) = x + sigma^2 score(x, sigma)``, against the mixture's
  exact posterior mean :meth:`dmcmc_edu.targets.GaussianMixture.denoise` (computed without the score);
* ``score_from_denoiser(denoiser, x, sigma)`` -- ``(D(x, sigma) - x) / sigma^2``, against the mixture's exact
  :meth:`~dmcmc_edu.targets.GaussianMixture.score`.

For the common mistakes (sigma^2 instead of sigma, the schedule reversed, rho applied the wrong way, sigma instead
of sigma^2 in Tweedie, the sign of the score, ...) the message names the mistake.  ``hidden=True`` uses other
seeds, shapes and targets.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import torch

from dmcmc_edu.core.schedules import geometric_sigmas, karras_sigmas
from dmcmc_edu.grading.feedback import call_student, compare, fail, graded, hidden_seed, ok
from dmcmc_edu.targets import GaussianMixture, grid, ring

__all__ = ["check_forward_noise", "check_karras_schedule", "check_geometric_schedule", "check_tweedie_denoiser",
           "check_score_from_denoiser", "plot_denoiser_field"]

FORWARD_SIGMA_SQUARED = "sigma**2 * eps instead of sigma * eps (the noise's standard deviation is sigma)"
FORWARD_NO_SIGMA = "x + eps, without the factor sigma"
KARRAS_REVERSED = "the schedule reversed (it must start at sigma_start and decrease to sigma_min)"
KARRAS_RHO_WRONG_WAY = "spacing evenly in sigma**rho instead of sigma**(1/rho)"
KARRAS_NO_POWER = "leaving out the final power rho (the levels are still in sigma**(1/rho) units)"
KARRAS_LINEAR = "spacing evenly in sigma itself (rho = 1)"
GEOMETRIC_REVERSED = "the schedule reversed (it must start at sigma_start and decrease to sigma_min)"
GEOMETRIC_LINEAR = "spacing evenly in sigma instead of in log sigma"
GEOMETRIC_STEPS = "steps levels instead of steps + 1 (steps intervals need steps + 1 end points)"
GEOMETRIC_MORE = "steps + 2 levels (linspace(0, 1, steps + 2)) instead of steps + 1"
KARRAS_ZERO = "a trailing 0 appended (karras_schedule ends at sigma_min; the integrator adds the 0)"
KARRAS_MORE = "steps + 1 levels (linspace(0, 1, steps + 1)) instead of steps"
KARRAS_FEWER = "steps - 1 levels (linspace(0, 1, steps - 1)) instead of steps"
TWEEDIE_SIGMA = "sigma * score instead of sigma**2 * score"
TWEEDIE_SIGN = "x - sigma**2 * score (the sign of the correction flipped)"
SCORE_SIGN = "(x - D) / sigma**2, the score with the wrong sign"
SCORE_SIGMA = "(D - x) / sigma, dividing by sigma instead of sigma**2"


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _sigmas(n: int, low: float, high: float, g: torch.Generator) -> torch.Tensor:
    """``n`` per-sample noise levels, log-uniform in ``[low, high]`` (float64)."""
    u = torch.rand(n, generator=g, dtype=torch.float64)
    return torch.exp(math.log(low) + u * (math.log(high) - math.log(low)))


def _where(sigma: torch.Tensor, what: str = "", label: str = "sigma") -> str:
    shown = ", ".join(f"{v:.3g}" for v in sigma[:3].tolist())
    more = ", ..." if sigma.numel() > 3 else ""
    return f"with {sigma.numel()} samples, {label} = [{shown}{more}]{', ' + what if what else ''}"


# ----------------------------------------------------------------------------- forward noising


@graded
def check_forward_noise(forward_noise, hidden: bool = False) -> str:
    """Check ``forward_noise(x, sigma, eps) -> x + sigma[:, None] * eps`` with a different sigma per sample."""
    __tracebackhide__ = True  # IPython leaves this frame (the reference's code) out of the student's traceback
    g = _gen(hidden_seed(11) if hidden else 1)
    cases = [(7, 2), (5, 3)] if not hidden else [(9, 4), (3, 2), (1, 2)]
    for b, d in cases:
        x = torch.randn(b, d, generator=g, dtype=torch.float64) * 2
        eps = torch.randn(b, d, generator=g, dtype=torch.float64)
        sigma = _sigmas(b, 0.05, 20.0, g)
        got = call_student(forward_noise, "forward_noise", x.clone(), sigma.clone(), eps.clone())
        s = sigma[:, None]
        want = x + s * eps
        compare("forward_noise(x, sigma, eps)", got, want, where=_where(sigma, f"d = {d}"),
                rtol=1e-5, atol=1e-6,
                mistakes={FORWARD_SIGMA_SQUARED: x + s**2 * eps, FORWARD_NO_SIGMA: x + eps},
                hint="each row i gets its own sigma[i]: is sigma reshaped to [B, 1] before it multiplies eps?")
    return ok("forward_noise adds sigma * eps with one sigma per sample")


# ----------------------------------------------------------------------------- schedules


def _karras_mistakes(s0: torch.Tensor, sigma_min: float, steps: int, rho: float) -> dict:
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)[None, :]
    lo = torch.tensor(sigma_min, dtype=torch.float64)
    hi_r, lo_r = s0[:, None] ** (1 / rho), lo ** (1 / rho)
    return {
        KARRAS_REVERSED: torch.flip(karras_sigmas(s0, sigma_min, steps, rho, append_zero=False), dims=[1]),
        KARRAS_RHO_WRONG_WAY: (s0[:, None] ** rho + ramp * (lo**rho - s0[:, None] ** rho)) ** (1 / rho),
        KARRAS_NO_POWER: hi_r + ramp * (lo_r - hi_r),
        KARRAS_LINEAR: s0[:, None] + ramp * (lo - s0[:, None]),
    }


def _karras_columns(got, s0: torch.Tensor, sigma_min: float, steps: int, rho: float) -> None:
    """A schedule with one column too many or too few: named when its numbers are those of the mistake."""
    arr = got if isinstance(got, torch.Tensor) else None
    if arr is None or arr.ndim != 2 or arr.shape[0] != s0.shape[0] or arr.shape[1] == steps:
        return
    where = _where(s0, f"sigma_min = {sigma_min}, steps = {steps}", "sigma_start")
    arr = arr.detach().to(torch.float64)
    variants = {KARRAS_ZERO: karras_sigmas(s0, sigma_min, steps, rho, append_zero=True),
                KARRAS_MORE: karras_sigmas(s0, sigma_min, steps + 1, rho, append_zero=False)}
    if steps > 1:
        variants[KARRAS_FEWER] = karras_sigmas(s0, sigma_min, steps - 1, rho, append_zero=False)
    for text, wrong in variants.items():
        if wrong.shape == arr.shape and torch.allclose(arr, wrong, rtol=1e-5, atol=1e-9):
            fail(f"{where}: karras_schedule returned shape {tuple(arr.shape)}, which is what {text} gives; "
                 f"expected {(s0.shape[0], steps)}")


@graded(off_limits=("dmcmc_edu.core.schedules:karras_sigmas",))
def check_karras_schedule(karras_schedule, hidden: bool = False) -> str:
    """Check ``karras_schedule(sigma_start [B], sigma_min, steps, rho) -> [B, steps]`` (no trailing zero)."""
    __tracebackhide__ = True  # IPython leaves this frame (the reference's code) out of the student's traceback
    g = _gen(hidden_seed(12) if hidden else 2)
    cases = [(4, 0.02, 6, 7.0), (3, 0.1, 10, 3.0)] if not hidden else [(5, 0.01, 18, 7.0), (2, 0.5, 4, 2.0)]
    for b, sigma_min, steps, rho in cases:
        s0 = _sigmas(b, 2 * sigma_min, 80.0, g)
        want = karras_sigmas(s0, sigma_min, steps, rho, append_zero=False)
        got = call_student(karras_schedule, "karras_schedule", s0.clone(), sigma_min, steps, rho)
        _karras_columns(got, s0, sigma_min, steps, rho)
        compare("karras_schedule(sigma_start, sigma_min, steps, rho)", got, want,
                where=_where(s0, f"sigma_min = {sigma_min}, steps = {steps}, rho = {rho}", "sigma_start"),
                rtol=1e-5, atol=1e-9, mistakes=_karras_mistakes(s0, sigma_min, steps, rho),
                hint="row i must go from sigma_start[i] (column 0) down to sigma_min (last column), evenly spaced "
                     "in sigma**(1/rho)")
    return ok("karras_schedule matches dmcmc_edu.core.schedules.karras_sigmas, one row per sample")


def _geometric_mistakes(s0: torch.Tensor, sigma_min: float, steps: int) -> dict:
    t = torch.linspace(0, 1, steps + 1, dtype=torch.float64)[None, :]
    return {
        GEOMETRIC_REVERSED: torch.flip(geometric_sigmas(s0, sigma_min, steps), dims=[1]),
        GEOMETRIC_LINEAR: s0[:, None] + t * (sigma_min - s0[:, None]),
        GEOMETRIC_STEPS: geometric_sigmas(s0, sigma_min, steps - 1) if steps > 1 else s0[:, None],
    }


@graded(off_limits=("dmcmc_edu.core.schedules:geometric_sigmas",))
def check_geometric_schedule(geometric_schedule, hidden: bool = False) -> str:
    """Check ``geometric_schedule(sigma_start [B], sigma_min, steps) -> [B, steps + 1]``."""
    __tracebackhide__ = True  # IPython leaves this frame (the reference's code) out of the student's traceback
    g = _gen(hidden_seed(13) if hidden else 3)
    cases = [(4, 0.01, 5), (2, 0.3, 9)] if not hidden else [(6, 0.002, 12), (3, 1.0, 3)]
    for b, sigma_min, steps in cases:
        s0 = _sigmas(b, 2 * sigma_min, 50.0, g)
        want = geometric_sigmas(s0, sigma_min, steps)
        got = call_student(geometric_schedule, "geometric_schedule", s0.clone(), sigma_min, steps)
        g_arr = torch.as_tensor(got) if not isinstance(got, torch.Tensor) else got
        for cols, text in ((steps, GEOMETRIC_STEPS), (steps + 2, GEOMETRIC_MORE)):
            wrong = geometric_sigmas(s0, sigma_min, cols - 1) if cols > 1 else s0[:, None]
            if tuple(g_arr.shape) == (b, cols) and torch.allclose(g_arr.detach().to(torch.float64), wrong,
                                                                  rtol=1e-5, atol=1e-9):
                fail(f"{_where(s0, label='sigma_start')}: geometric_schedule returned shape {(b, cols)}, which is "
                     f"what {text} gives; expected {(b, steps + 1)}")
        compare("geometric_schedule(sigma_start, sigma_min, steps)", got, want,
                where=_where(s0, f"sigma_min = {sigma_min}, steps = {steps}", "sigma_start"),
                rtol=1e-5, atol=1e-9, mistakes=_geometric_mistakes(s0, sigma_min, steps),
                hint="consecutive levels of a row must have the same ratio, from sigma_start[i] to sigma_min")
    return ok("geometric_schedule matches dmcmc_edu.core.schedules.geometric_sigmas, one row per sample")


# ----------------------------------------------------------------------------- Tweedie and the score


def _three_d_mixture() -> GaussianMixture:
    """A small 3-D mixture with unequal, full covariances (the hidden case)."""
    a = torch.tensor([[1.0, 0.3, 0.0], [0.3, 0.5, 0.1], [0.0, 0.1, 0.2]], dtype=torch.float64)
    covs = torch.stack([a, torch.eye(3, dtype=torch.float64) * 0.3])
    means = torch.tensor([[1.0, -1.0, 0.5], [-2.0, 0.5, 0.0]], dtype=torch.float64)
    return GaussianMixture([0.3, 0.7], means, covs)


def _tweedie_cases(hidden: bool, seed: int):
    """``(name, mixture, x, sigma)`` cases: points near and between the modes, sigma from 0.05 to 5."""
    g = _gen(hidden_seed(seed + 10) if hidden else seed)
    targets = [("the ring", ring())]
    if hidden:
        targets = [("the 5x5 grid", grid()), ("a 3-D mixture", _three_d_mixture())]
    for name, mix in targets:
        b = 8
        x = mix.sample(b, generator=g) + 1.5 * torch.randn(b, mix.d, generator=g, dtype=torch.float64)
        yield name, mix, x, _sigmas(b, 0.05, 5.0, g)


@graded(off_limits=("dmcmc_edu.targets.mixture:GaussianMixture.denoise",
                    "dmcmc_edu.targets.mixture:GaussianMixture.__call__"))
def check_tweedie_denoiser(tweedie_denoiser, hidden: bool = False) -> str:
    """Check ``tweedie_denoiser(mixture, x, sigma) -> x + sigma^2 * mixture.score(x, sigma)`` (sigma of shape [B])."""
    __tracebackhide__ = True  # IPython leaves this frame (the reference's code) out of the student's traceback
    for name, mix, x, sigma in _tweedie_cases(hidden, seed=4):
        want = mix.denoise(x, sigma)  # the posterior mean, computed without the score
        score = mix.score(x, sigma)
        s = sigma[:, None]
        got = call_student(tweedie_denoiser, "tweedie_denoiser", mix, x.clone(), sigma.clone())
        compare("tweedie_denoiser(mixture, x, sigma)", got, want, where=_where(sigma, f"on {name}"),
                rtol=1e-5, atol=1e-7,
                mistakes={TWEEDIE_SIGMA: x + s * score, TWEEDIE_SIGN: x - s**2 * score},
                hint="Tweedie: D(x, sigma) = x + sigma^2 * score(x, sigma); is each row using its own sigma[i]?")
    return ok("tweedie_denoiser gives the exact posterior mean E[x0 | x_sigma = x]")


@graded(off_limits=("dmcmc_edu.core.contract:score_from_denoiser",
                    "dmcmc_edu.targets.mixture:GaussianMixture.score"))
def check_score_from_denoiser(score_from_denoiser, hidden: bool = False) -> str:
    """Check ``score_from_denoiser(denoiser, x, sigma) -> (denoiser(x, sigma) - x) / sigma^2`` (sigma of shape [B])."""
    __tracebackhide__ = True  # IPython leaves this frame (the reference's code) out of the student's traceback
    for name, mix, x, sigma in _tweedie_cases(hidden, seed=5):
        denoiser = lambda y, s, mix=mix: mix.denoise(y, s)  # only D(x, sigma), not the mixture's other methods
        want = mix.score(x, sigma)
        d = mix.denoise(x, sigma)
        s = sigma[:, None]
        got = call_student(score_from_denoiser, "score_from_denoiser", denoiser, x.clone(), sigma.clone())
        compare("score_from_denoiser(denoiser, x, sigma)", got, want, where=_where(sigma, f"on {name}"),
                rtol=1e-5, atol=1e-7,
                mistakes={SCORE_SIGN: (x - d) / s**2, SCORE_SIGMA: (d - x) / s},
                hint="solve Tweedie's formula D = x + sigma^2 * score for the score; each row has its own sigma[i]")
    return ok("score_from_denoiser gives the exact score of the noised mixture")


# ----------------------------------------------------------------------------- the closing picture


def plot_denoiser_field(tweedie_denoiser, mixture: GaussianMixture | None = None, sigmas=(0.3, 1.0, 3.0),
                        n_grid: int = 11, seed: int = 0):
    """Arrows from grid points x to the student's ``D(x, sigma)`` (red dots), one panel per sigma, over samples.

    Returns the matplotlib figure.  Small sigma: the arrows end on the nearest mode; large sigma: near the
    mixture's mean, because the posterior over the clean point is wide.
    """
    mix = ring() if mixture is None else mixture
    pts = mix.sample(600, generator=_gen(seed))
    lim = float(pts.abs().max()) * 1.4
    u = torch.linspace(-lim, lim, n_grid, dtype=torch.float64)
    xx, yy = torch.meshgrid(u, u, indexing="xy")
    x = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)
    fig, axes = plt.subplots(1, len(sigmas), figsize=(4 * len(sigmas), 4), squeeze=False)
    for ax, sig in zip(axes[0], sigmas):
        d = tweedie_denoiser(mix, x, torch.full((x.shape[0],), float(sig), dtype=torch.float64))
        d = torch.as_tensor(d, dtype=torch.float64).detach()
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.3, color="tab:gray")
        ax.quiver(x[:, 0], x[:, 1], d[:, 0] - x[:, 0], d[:, 1] - x[:, 1], angles="xy", scale_units="xy", scale=1,
                  width=0.003, alpha=0.5, color="tab:blue")
        ax.scatter(d[:, 0], d[:, 1], s=6, color="tab:red", zorder=3)
        ax.set_title(f"x -> D(x, sigma) at sigma = {sig:g}")
        ax.set_aspect("equal")
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    fig.tight_layout()
    return fig
