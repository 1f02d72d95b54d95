"""Checks of assignment A2, *Integrators* (``notebooks/assignments/source/a2_integrators``).

The student writes four functions; each check runs one of them on generated cases and compares it with the
library (:mod:`dmcmc_edu.core.integrators` is the reference for the integrators):

* ``exact_flow(x, sigma_start, sigma_end, mean, tau)`` -- the probability-flow ODE of N(mean, tau I) in closed form;
* ``pf_euler(D, x, sigma_start, sigma_min, steps) -> (x, nfe)`` -- probability-flow Euler on geometric levels;
* ``kar1(D, x, sigma_start, sigma_min, steps) -> (x, nfe)`` -- Heun (Karras et al. 2022, Alg. 1) on Karras levels,
  an Euler step on the last interval to sigma = 0;
* ``convergence_order(steps, errors)`` -- the order p of ``error ~ C steps^-p`` from a least-squares fit.

The denoiser handed to a student's integrator records every call, so a check can say *where* an integrator went
wrong (a call at sigma = 0, a first call at another sample's sigma_start or at the next level) and compare the NFE
the student reports with the evaluations it really made.  The NFE must be *counted* by a
:class:`~dmcmc_edu.core.contract.CountingDenoiser` wrapped around that denoiser: while the student's integrator runs,
the check observes which values the wrappers around its denoiser report (their ``.nfe``), and these observations are
part of the record the grader judges; a number computed by a formula (``2 * steps - 1``) scores nothing even when it
is right.  The library's integrators (and this module's references) are switched off while the student's function
runs (:func:`~dmcmc_edu.grading.feedback.switched_off`).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch

from dmcmc_edu.core.contract import CountingDenoiser
from dmcmc_edu.core.integrators import kar1 as reference_kar1
from dmcmc_edu.core.integrators import pf_euler as reference_pf_euler
from dmcmc_edu.core.schedules import geometric_sigmas, karras_sigmas
from dmcmc_edu.grading.feedback import (
    RecordError,
    as_array,
    call_student,
    compare,
    fail,
    graded,
    hidden_seed,
    ok,
    plain,
)
from dmcmc_edu.plotting import finish_figure
from dmcmc_edu.targets import GaussianMixture, grid, ring

__all__ = ["RecordingDenoiser", "reference_exact_flow", "reference_order", "check_exact_flow", "check_pf_euler",
           "check_kar1", "check_convergence_order", "gaussian_target", "measure_orders", "plot_orders"]


class RecordingDenoiser:
    """A denoiser that remembers the noise levels of every call it gets (and forwards the rest to ``model``).

    ``sigmas`` holds one ``[rows]`` tensor per call, ``rows`` the number of rows evaluated in all; ``nfe`` is
    ``rows / n_samples`` (evaluations per sample, as :class:`~dmcmc_edu.core.contract.CountingDenoiser` counts).
    While :func:`observing_counters` is on (the student's integrator runs), ``counters`` holds every
    ``CountingDenoiser`` wrapped around this denoiser (directly or through other wrappers) and ``nfe_reads`` every
    value one of them reported as its ``.nfe``; what they counted is recorded after the call (:meth:`_record_state`).
    """

    def __init__(self, model, n_samples: int):
        self.model, self.n_samples = model, n_samples
        self.sigmas: list[torch.Tensor] = []
        self.rows = 0
        self.nfe_reads: list[float] = []
        self.counters: list[CountingDenoiser] = []

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if not isinstance(sigma, torch.Tensor) or sigma.ndim != 1 or sigma.shape[0] != x.shape[0]:
            shape = tuple(sigma.shape) if isinstance(sigma, torch.Tensor) else type(sigma).__name__
            fail(f"D(x, sigma) was called with sigma of shape {shape} for x of shape {tuple(x.shape)}; "
                 "the contract is one level per sample, sigma of shape [B]")
        self.sigmas.append(sigma.detach().clone())
        self.rows += int(x.shape[0])
        return self.model(x, sigma)

    @property
    def nfe(self) -> float:
        return self.rows / self.n_samples

    def _record_state(self) -> dict:
        """What a check reads after the integrator ran (recorded in the kernel, see :func:`~.feedback.graded`)."""
        return {"sigmas": list(self.sigmas), "rows": self.rows, "nfe_reads": self.counted()}

    def counted(self) -> list[float]:
        """The numbers the wrappers around this denoiser counted: each ``.nfe`` they reported, then each one's NFE
        per sample and its number of calls as they stand (after a record is restored: the recorded numbers)."""
        counted = [float(v) for v in self.nfe_reads]
        for c in self.counters:
            counted += [c.rows / c.n_samples if c.n_samples else float(c.calls), float(c.calls)]
        return counted

    def _restore_state(self, state) -> None:
        """Set what :meth:`_record_state` recorded (when the grader judges a record): 1-D tensors and a count."""
        sigmas, rows, reads = ((state.get("sigmas"), state.get("rows"), state.get("nfe_reads"))
                               if isinstance(state, dict) else (None, None, None))
        if not isinstance(sigmas, list) or not all(isinstance(s, torch.Tensor) and s.ndim == 1 for s in sigmas) \
                or not isinstance(rows, int) or rows < 0 or not isinstance(reads, list) \
                or not all(isinstance(v, float) for v in reads):
            raise RecordError("the recorded calls of D are malformed")
        self.sigmas, self.rows, self.nfe_reads, self.counters = list(sigmas), rows, list(reads), []

    def __getattr__(self, name):
        if name == "model":
            raise AttributeError(name)
        return getattr(self.model, name)


@contextmanager
def observing_counters(rec: RecordingDenoiser):
    """Within the block, every :class:`CountingDenoiser` made around ``rec`` (directly or through other wrappers) is
    listed in ``rec.counters`` and every ``.nfe`` it reports appended to ``rec.nfe_reads``; the class is restored
    after."""
    original = CountingDenoiser.__dict__["nfe"]
    original_init = CountingDenoiser.__init__

    def wraps_rec(counter) -> bool:
        model, depth = counter, 0
        while depth < 8 and isinstance(model, CountingDenoiser):
            model, depth = model.__dict__.get("model"), depth + 1
            if model is rec:
                return True
        return False

    def init(self, model, n_samples=None):
        original_init(self, model, n_samples)
        if wraps_rec(self):
            rec.counters.append(self)

    def nfe(self):
        value = original.fget(self)
        if wraps_rec(self):
            rec.nfe_reads.append(float(value))
        return value

    CountingDenoiser.nfe = property(nfe, doc=original.__doc__)
    CountingDenoiser.__init__ = init
    try:
        yield rec
    finally:
        CountingDenoiser.nfe = original
        CountingDenoiser.__init__ = original_init


@dataclass
class _Case:
    mixture: GaussianMixture
    x: torch.Tensor
    sigma_start: torch.Tensor
    sigma_min: float
    steps: int


def _noisy_start(mixture: GaussianMixture, sigma_start: list[float], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples of the mixture noised to their own level ``sigma_start[b]`` (float64)."""
    g = torch.Generator().manual_seed(seed)
    s0 = torch.tensor(sigma_start, dtype=torch.float64)
    x0 = mixture.sample(len(sigma_start), g)
    return x0 + s0[:, None] * torch.randn(x0.shape, generator=g, dtype=torch.float64), s0


def _cases(hidden: bool) -> list[_Case]:
    """Integrator cases: per-sample starts that differ, and a single step with a sample starting at sigma_min; the
    hidden ones use other targets, seeds (from the grader's secret) and step counts."""
    if not hidden:
        x, s0 = _noisy_start(ring(), [2.5, 0.3, 10.0, 1.0, 20.0, 5.0], seed=1)
        x1, s1 = _noisy_start(ring(), [0.01, 3.0, 0.5], seed=2)  # the boundaries: one step, a start at sigma_min
        return [_Case(ring(), x, s0, 0.01, 5), _Case(ring(), x1, s1, 0.01, 1)]
    x, s0 = _noisy_start(grid(side=3), [7.0, 0.5, 1.5, 30.0, 0.05, 3.0, 12.0], seed=hidden_seed(11))
    x2, s2 = _noisy_start(ring(n_modes=5), [4.0, 0.8, 15.0], seed=hidden_seed(12))
    return [_Case(grid(side=3), x, s0, 0.02, 8), _Case(ring(n_modes=5), x2, s2, 0.005, 1),
            _Case(ring(n_modes=5), x2, s2, 0.005, 3)]


def _unpack(result, name: str) -> tuple:
    """A student's integrator must return ``(x, nfe)``."""
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        fail(f"{name} should return a pair (x, nfe); it returned a {type(result).__name__}")
    return result[0], result[1]


def _run_integrator(student_fn, name: str, case) -> tuple:
    """The student's integrator on ``case`` with a recording denoiser: ``(recorder, x returned, nfe returned)``."""
    rec = RecordingDenoiser(case.mixture, case.x.shape[0])
    with observing_counters(rec):
        result = call_student(student_fn, name, rec, case.x.clone(), case.sigma_start.clone(), case.sigma_min,
                              case.steps)
    return (rec, *_unpack(result, name))


def _levels(s: torch.Tensor) -> str:
    return "[" + ", ".join(f"{v:.3g}" for v in s.tolist()) + "]"


def _check_calls(rec: RecordingDenoiser, case: _Case, name: str, where: str, levels: torch.Tensor,
                 heun_last: bool = False) -> None:
    """What the recorded calls say: each sample's first call at its own start, and no evaluation at sigma = 0.

    ``levels`` is the schedule ``[B, N + 1]``; a mistake is named only when the calls are exactly what it gives
    (the first call at one shared level, or at each sample's next level; with ``heun_last``, 2N calls whose last
    one alone is at 0: Heun's correction on the step to 0); otherwise the message says where the calls differ.
    """
    if not rec.sigmas:
        fail(f"{where}: {name} never called D(x, sigma); the steps need the denoiser")
    first = rec.sigmas[0]
    if first.shape[0] == case.x.shape[0] and not torch.allclose(first, case.sigma_start, rtol=1e-9, atol=0):
        b = int(torch.argmax(((first - case.sigma_start).abs() > 1e-9 * case.sigma_start).to(torch.int8)))
        said = (f"{where}: the first evaluation of D for sample {b} was at sigma = {first[b].item():.4g}, but that "
                f"sample starts at sigma_start[{b}] = {case.sigma_start[b].item():.4g}")
        if levels.shape[1] > 1 and torch.allclose(first, levels[:, 1], rtol=1e-9, atol=0):
            fail(f"{said}: each sample was evaluated at its next level s_1 = {levels[b, 1].item():.4g}, which is "
                 "what D evaluated at the level each step ends on, s_(i+1), instead of the one it starts from, s_i, "
                 "gives")
        for level in (case.sigma_start.max(), case.sigma_start[0]):
            if torch.allclose(first, torch.full_like(first, float(level)), rtol=1e-9, atol=0):
                fail(f"{said}: every sample was evaluated at {float(level):.4g}, which is what a single "
                     "sigma_start shared by all samples gives; each sample runs its own schedule from its own "
                     "sigma_start")
        fail(f"{said}: the first step evaluates D at the level each sample starts from")
    zero = [k for k, s in enumerate(rec.sigmas) if bool((s == 0).any())]
    if zero:
        n = len(rec.sigmas)
        if heun_last and zero == [n - 1] and n == 2 * case.steps:
            fail(f"{where}: {name} evaluated D at sigma = 0 in its last call, which is what Heun's correction on "
                 "the last step (to sigma = 0) gives: d = (x - D(x, 0)) / 0 is undefined there, so the last step "
                 "must be a plain Euler step")
        fail(f"{where}: {name} evaluated D at sigma = 0 (call {zero[0] + 1} of {n}); D is defined for sigma > 0 "
             "only -- which levels do your steps evaluate D at?")


def _euler_on_levels(model, x: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Euler steps of dx/dsigma = (x - D(x, sigma)) / sigma along per-sample ``levels`` ``[B, N + 1]``."""
    for i in range(levels.shape[1] - 1):
        s, s_next = levels[:, i], levels[:, i + 1]
        x = x + ((s_next - s) / s)[:, None] * (x - model(x, s))
    return x


def _log_euler(model, x: torch.Tensor, levels: torch.Tensor, steps: int, at_next: bool = False) -> torch.Tensor:
    """``steps`` probability-flow Euler steps in log sigma along ``levels`` ``[B, >= steps + 1]``, D evaluated at
    the level each step starts from (or, ``at_next``, the one it ends on)."""
    for i in range(steps):
        s, s_next = levels[:, i], levels[:, i + 1]
        x = x + torch.log(s / s_next)[:, None] * (model(x, s_next if at_next else s) - x)
    return x


def _heun(model, x: torch.Tensor, levels: torch.Tensor, steps: int, last_euler: bool = True) -> torch.Tensor:
    """``steps`` Heun steps along ``levels`` ``[B, >= steps + 1]``, the last one an Euler step if ``last_euler``."""
    for i in range(steps):
        t, t_next = levels[:, i], levels[:, i + 1]
        d = (x - model(x, t)) / t[:, None]
        x_next = x + (t_next - t)[:, None] * d
        if i < steps - 1 or not last_euler:
            x_next = x + (t_next - t)[:, None] * (d + (x_next - model(x_next, t_next)) / t_next[:, None]) / 2
        x = x_next
    return x


def _shared(case: _Case, integrator) -> dict:
    """What ``integrator`` gives when every sample starts at one shared level (the largest, or the first one)."""
    out = {}
    for label, level in (("here the largest", case.sigma_start.max()), ("here the first one", case.sigma_start[0])):
        shared = torch.full_like(case.sigma_start, float(level))
        out[f"a single sigma_start shared by all samples ({label})"] = integrator(
            case.mixture, case.x, shared, case.sigma_min, case.steps)[0]
    return out


COUNT_BY_WRAPPER = ("NFE must be counted by the wrapper, never by a formula: D = CountingDenoiser(D, n_samples=B) "
                    "at the start, call that D everywhere, and return D.nfe")


def _check_nfe(nfe, rec: RecordingDenoiser, needed: float, name: str, where: str, what_needed: str) -> None:
    """The evaluations the integrator made (counted by ``rec``) against what it needs, then the NFE it reported,
    which must be a number a CountingDenoiser around ``rec`` counted (``rec.nfe_reads``: its ``.nfe``, its calls)."""
    counted = rec.nfe
    if abs(counted - needed) > 1e-9:
        fail(f"{where}: {name} evaluated D {counted:g} times per sample, but it needs {needed:g} ({what_needed}); "
             "does it evaluate D twice at the same point instead of reusing the value?")
    compare(f"the NFE {name} returned", nfe, counted, where=where, rtol=0, atol=1e-9,
            mistakes={"counting one evaluation too many (NFE off by one)": counted + 1,
                      "counting one evaluation too few (NFE off by one)": counted - 1},
            hint="wrap D in CountingDenoiser(D, n_samples=B) and return its .nfe, the evaluations per sample")
    value = float(as_array(nfe, f"the NFE {name} returned").reshape(-1)[0])
    counted = rec.counted()
    if not any(abs(value - c) <= 1e-9 for c in counted):
        seen = (f"the CountingDenoiser around D counted {plain(counted[-1])}" if counted else
                "no CountingDenoiser was wrapped around D")
        fail(f"{where}: {name} returned nfe = {plain(value)}, but {seen}: {COUNT_BY_WRAPPER}")


# --------------------------------------------------------------------------- exact_flow


def reference_exact_flow(x, sigma_start, sigma_end, mean, tau):
    """x(sigma_end) = mean + sqrt((tau + sigma_end^2) / (tau + sigma_start^2)) (x - mean), per sample."""
    ratio = (tau + sigma_end**2) / (tau + sigma_start**2)
    return mean + ratio.sqrt()[:, None] * (x - mean)


@graded(off_limits=("dmcmc_edu.grading.a2_integrators:reference_exact_flow",))
def check_exact_flow(exact_flow, hidden: bool = False) -> str:
    """``exact_flow(x, sigma_start, sigma_end, mean, tau)`` against the closed form (checked against RK45 in tests)."""
    g = torch.Generator().manual_seed(hidden_seed(23) if hidden else 3)
    d, B = (3, 6) if hidden else (2, 5)
    tau = 0.3 if hidden else 0.5
    mean = torch.randn(d, generator=g, dtype=torch.float64)
    s0 = torch.tensor([8.0, 0.4, 2.0, 20.0, 1.0, 0.1][:B], dtype=torch.float64)
    s1 = s0 * torch.tensor([0.5, 0.1, 0.0, 0.01, 0.3, 0.9][:B], dtype=torch.float64)
    x = mean + torch.randn(B, d, generator=g, dtype=torch.float64) * (tau + s0[:, None] ** 2).sqrt()
    got = call_student(exact_flow, "exact_flow", x.clone(), s0.clone(), s1.clone(), mean.clone(), tau)
    want = reference_exact_flow(x, s0, s1, mean, tau)
    ratio = ((tau + s1**2) / (tau + s0**2))[:, None]
    compare("exact_flow(x, sigma_start, sigma_end, mean, tau)", got, want,
            where=f"for N(mean, {tau} I) from sigma_start = {_levels(s0)} to sigma_end = {_levels(s1)}",
            rtol=1e-6, atol=1e-9,
            mistakes={"the variance ratio without its square root": mean + ratio * (x - mean),
                      "the ratio sigma_end / sigma_start (tau left out)": mean + (s1 / s0)[:, None] * (x - mean),
                      "scaling x instead of x - mean": ratio.sqrt() * x,
                      "tau + sigma instead of tau + sigma^2":
                          mean + ((tau + s1) / (tau + s0)).sqrt()[:, None] * (x - mean)},
            hint="p_sigma is N(mean, (tau + sigma^2) I): along the flow, (x - mean) / std(p_sigma) stays constant")
    return ok("exact_flow follows the probability-flow ODE of a Gaussian exactly")


# --------------------------------------------------------------------------- pf_euler


@graded(off_limits=("dmcmc_edu.core.integrators:pf_euler", "dmcmc_edu.core.integrators:_ve_sde_loop"))
def check_pf_euler(pf_euler, hidden: bool = False) -> str:
    """``pf_euler(D, x, sigma_start, sigma_min, steps)`` against :func:`dmcmc_edu.core.integrators.pf_euler`."""
    for case in _cases(hidden):
        where = f"pf_euler from sigma_start = {_levels(case.sigma_start)} to sigma_min = {case.sigma_min} " \
                f"in {case.steps} step(s)"
        rec, x_out, nfe = _run_integrator(pf_euler, "pf_euler", case)
        levels = geometric_sigmas(case.sigma_start, case.sigma_min, case.steps)
        _check_calls(rec, case, "pf_euler", where, levels)
        want, _ = reference_pf_euler(case.mixture, case.x, case.sigma_start, case.sigma_min, case.steps)
        more = geometric_sigmas(case.sigma_start, case.sigma_min, case.steps + 1)
        mistakes = {"an Euler step in sigma, (s_next - s) (x - D) / s, instead of one in log sigma":
                    _euler_on_levels(case.mixture, case.x, levels),
                    "the last step left out (steps - 1 steps, ending one level above sigma_min)":
                    _log_euler(case.mixture, case.x, levels, case.steps - 1),
                    "the levels of steps + 1 steps (geometric_sigmas(sigma_start, sigma_min, steps + 1)), so that "
                    "the last step ends one level above sigma_min":
                    _log_euler(case.mixture, case.x, more, case.steps),
                    "D evaluated at the level each step ends on, s_(i+1), instead of the one it starts from, s_i":
                    _log_euler(case.mixture, case.x, levels, case.steps, at_next=True)}
        mistakes.update(_shared(case, reference_pf_euler))
        compare("the x returned by pf_euler", x_out, want, where=where, rtol=1e-6, atol=1e-8, mistakes=mistakes,
                hint="compare your levels and your update with the formula above the cell: which step is the "
                     "first to differ?")
        _check_nfe(nfe, rec, float(case.steps), "pf_euler", where, "one per step; no Tweedie step here")
    return ok("pf_euler matches the library's probability-flow Euler, per-sample starts and NFE included")


# --------------------------------------------------------------------------- kar1


@graded(off_limits=("dmcmc_edu.core.integrators:kar1", "dmcmc_edu.core.integrators:kar2",
                    "dmcmc_edu.core.integrators:_heun_step"))
def check_kar1(kar1, hidden: bool = False) -> str:
    """``kar1(D, x, sigma_start, sigma_min, steps)`` against :func:`dmcmc_edu.core.integrators.kar1`."""
    for case in _cases(hidden):
        where = f"kar1 from sigma_start = {_levels(case.sigma_start)} (sigma_min = {case.sigma_min}) " \
                f"in {case.steps} step(s)"
        rec, x_out, nfe = _run_integrator(kar1, "kar1", case)
        levels = karras_sigmas(case.sigma_start, case.sigma_min, case.steps)
        _check_calls(rec, case, "kar1", where, levels, heun_last=True)
        want, _ = reference_kar1(case.mixture, case.x, case.sigma_start, case.sigma_min, case.steps)
        more = karras_sigmas(case.sigma_start, case.sigma_min, case.steps + 1)
        mistakes = {"Euler steps instead of Heun's (no second-order correction)":
                    _euler_on_levels(case.mixture, case.x, levels),
                    "the final step (the Euler step from sigma_min to 0) never taken: steps - 1 Heun steps, ending "
                    "at sigma_min": _heun(case.mixture, case.x, levels, case.steps - 1, last_euler=False),
                    "the levels of steps + 1 steps (karras_sigmas(sigma_start, sigma_min, steps + 1)), so that the "
                    "last step ends at sigma_min instead of 0": _heun(case.mixture, case.x, more, case.steps)}
        mistakes.update(_shared(case, reference_kar1))
        compare("the x returned by kar1", x_out, want, where=where, rtol=1e-6, atol=1e-8, mistakes=mistakes,
                hint="compare your levels, your steps and your last step with the formulas above the cell: which "
                     "step is the first to differ?")
        _check_nfe(nfe, rec, 2.0 * case.steps - 1, "kar1", where,
                   "2 * steps - 1: two per Heun step, one for the last Euler step")
    return ok("kar1 matches the library's KAR1 (Heun), per-sample starts and NFE included")


# --------------------------------------------------------------------------- convergence_order


def reference_order(steps, errors) -> float:
    """p of error ~ C steps^-p: minus the least-squares slope of log(error) against log(steps)."""
    return -float(np.polyfit(np.log(np.asarray(steps, dtype=float)), np.log(np.asarray(errors, dtype=float)), 1)[0])


@graded(off_limits=("dmcmc_edu.grading.a2_integrators:reference_order",))
def check_convergence_order(convergence_order, hidden: bool = False) -> str:
    """``convergence_order(steps, errors)`` on synthetic errors C N^-p with a little multiplicative scatter."""
    cases = [(1.7, 0.8, 5)] if not hidden else [(2.2, 3.0, hidden_seed(15)), (0.9, 0.05, hidden_seed(16))]
    for p, c, seed in cases:
        g = torch.Generator().manual_seed(seed)
        steps = torch.tensor([4, 8, 16, 32, 64], dtype=torch.float64)
        errors = c * steps**-p * torch.exp(0.1 * torch.randn(5, generator=g, dtype=torch.float64))
        got = call_student(convergence_order, "convergence_order", steps.clone(), errors.clone())
        want = reference_order(steps, errors)
        ln_s, ln_e = np.log(steps.numpy()), np.log(errors.numpy())
        two_point = -(ln_e[-1] - ln_e[0]) / (ln_s[-1] - ln_s[0])
        mistakes = {"returning the slope itself, with the wrong sign (error ~ N^-p falls, so p = -slope)": -want,
                    "mixing log bases (log10 of the errors, natural log of the steps)": want / math.log(10),
                    "mixing log bases (natural log of the errors, log10 of the steps)": want * math.log(10),
                    "mixing log bases (log2 of the errors, natural log of the steps)": want / math.log(2),
                    "mixing log bases (natural log of the errors, log2 of the steps)": want * math.log(2),
                    "the slope between the first and last points only (fit all points by least squares)": two_point}
        steps_txt = ", ".join(f"{int(s)}" for s in steps.tolist())
        errs_txt = ", ".join(f"{e:.3g}" for e in errors.tolist())
        got = as_array(got, "convergence_order")
        if got.size != 1:
            fail(f"convergence_order returned {got.size} numbers (shape {got.shape}); "
                 "it should return one, the order p")
        compare("convergence_order(steps, errors)", got.reshape(()), want,
                where=f"for steps = [{steps_txt}] and errors = [{errs_txt}]", rtol=1e-6, atol=1e-9,
                mistakes=mistakes, hint="fit a straight line to (log steps, log error) by least squares; "
                                        "the order is minus its slope")
    return ok("convergence_order fits the slope of log error against log steps")


# --------------------------------------------------------------------------- the measurement at the end


def gaussian_target(tau: float = 0.5, mean=(1.0, -2.0)) -> GaussianMixture:
    """N(mean, tau I) as a 1-component mixture: a denoiser whose probability-flow ODE has a closed form."""
    mu = torch.tensor([list(mean)], dtype=torch.float64)
    return GaussianMixture([1.0], mu, tau * torch.eye(mu.shape[1], dtype=torch.float64)[None])


def measure_orders(exact_flow, pf_euler, kar1, convergence_order, step_counts=(8, 16, 32, 64),
                   sigma_start=(5.0, 2.0, 0.7, 3.0), tau: float = 0.5, seed: int = 0) -> dict:
    """Errors of the student's integrators against the student's exact flow on N(mean, tau I), and their orders.

    16 samples start at the levels ``sigma_start`` (repeated); pf_euler runs to sigma_min = 0.01 and is compared
    with the flow at 0.01, kar1 runs to 0 (sigma_min = 0.001) and is compared with the flow at 0.  The error is the
    mean Euclidean distance.  Prints the setting, the orders beside the theory's (1 for Euler, 2 for Heun) and
    returns ``{name: (steps, errors, order)}``.
    """
    target = gaussian_target(tau)
    mean = target.means[0]
    g = torch.Generator().manual_seed(seed)
    s0 = torch.tensor(list(sigma_start), dtype=torch.float64).repeat(16 // len(sigma_start) or 1)
    x = mean + torch.randn(s0.shape[0], 2, generator=g, dtype=torch.float64) * (tau + s0[:, None] ** 2).sqrt()
    steps = torch.tensor(step_counts, dtype=torch.float64)
    print(f"{s0.shape[0]} samples of N(({mean[0]:g}, {mean[1]:g}), {tau:g} I) noised at starting levels from "
          f"{s0.min():g} to {s0.max():g}, N = {', '.join(str(int(n)) for n in step_counts)} steps")
    out = {}
    runs = (("probability-flow Euler", pf_euler, 0.01, 0.01, 1), ("KAR1 (Heun)", kar1, 1e-3, 0.0, 2))
    for name, fn, sigma_min, end, theory in runs:
        exact = exact_flow(x.clone(), s0.clone(), torch.full_like(s0, end), mean.clone(), tau)
        errors = torch.tensor([float((fn(target, x.clone(), s0.clone(), sigma_min, int(n))[0] - exact)
                                     .norm(dim=1).mean()) for n in step_counts], dtype=torch.float64)
        order = float(convergence_order(steps.clone(), errors.clone()))
        print(f"{name}: measured order {order:.2f} (the theory's: {theory})")
        out[name] = (steps, errors, order)
    return out


def plot_orders(results: dict):
    """Log-log plot of error against steps for each integrator of :func:`measure_orders`, with slopes -1 and -2."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for (name, (steps, errors, order)), marker in zip(results.items(), "os"):
        ax.loglog(steps.numpy(), errors.numpy(), marker=marker, label=f"{name} (order {order:.2f})")
    n = np.asarray(next(iter(results.values()))[0].numpy())
    for p, style in ((1, ":"), (2, "--")):
        anchor = min(float(e[1][0]) for e in results.values())
        ax.loglog(n, anchor * (n / n[0]) ** -p, "k" + style, lw=1, label=f"slope -{p}")
    return finish_figure(ax, "steps N", "mean error against the exact flow", "Order of convergence on a Gaussian")
