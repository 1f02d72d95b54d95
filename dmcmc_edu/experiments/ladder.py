"""The toy rungs measured: NFE-quality curves of the six integrators with and without DLG, and the controls.

``python -m dmcmc_edu ladder --target ring --out DIR`` runs :func:`run_ladder`.
Every *point* of the sweep is one sampler with one setting that produces
``n`` outputs; it records its seed, its settings, its counted NFE ledger and
every metric of :mod:`dmcmc_edu.evaluation.metrics` (plus the chain metrics for DLG).
The kinds of points:

``noise``
    an integrator of the paper from ``sigma_max`` (vanilla sampling), over a
    range of step counts; KAR1/KAR2 also with the paper's extra Tweedie step
    after the last Euler step to 0 (``final_tweedie="always"``).
``schedule`` (control i)
    the same integrator from ``sigma_max`` with a re-allocated schedule: one
    probability-flow Euler (DDIM) step from ``sigma_max`` straight down to
    ``sigma_mid``, then the integrator's own schedule from ``sigma_mid``.  It
    spends one evaluation where vanilla sampling spends many at high sigma,
    which is what DLG saves too -- without any chain.
``restart`` (control ii)
    restart without MCMC: a coarse sample (KAR1 with ``coarse_steps`` steps
    from ``sigma_max``), noise added up to a fixed small ``sigma_restart``,
    then the integrator from there.  Independent outputs, no classifier.
``dlg``
    :class:`~dmcmc_edu.core.sampler.DMCMCSampler` with the integrator denoising
    each chain state from its own sigma, over a small grid of (sigma-update,
    x-update, eta, eta_rel, n_skip, steps, outputs per chain, initialisation).
    Chains are refreshed from noise after ``outputs_per_chain`` outputs (a new
    generation of chains, initialised as the paper does); the full ledger
    counts every initialisation.

NFE on the x-axis is the **full ledger** per output (initialisation and
burn-in amortised, classifier evaluations counted as one evaluation each);
the paper's accounting is stored beside it.  ``nfe_per_independent`` divides
the full NFE per output by the measured effective-sample-size ratio of the
output component labels (1 for independent outputs).

The exact mixture oracle is evaluated through :class:`~dmcmc_edu.targets.mixture.SpectralMixture`, which
gives the same values as :class:`~dmcmc_edu.targets.mixture.GaussianMixture` (tested
to 1e-9) from each component's eigenbasis and is 10-100x faster on the
sweeps' batches.
"""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

import torch

from dmcmc_edu.targets.mixture import SpectralMixture  # noqa: F401  (re-exported: the ladder's oracle)

__all__ = ["SpectralMixture"]


class _WithPosterior:
    """A denoiser (e.g. a learned net) with the analytic mixture's ``sigma_log_posterior`` attached.

    Used when the ladder runs on a learned model with the ``exact`` sigma-update: the x-update and the denoising use
    the learned model, the sigma-update the mixture's exact posterior (noted in every such point).
    """

    def __init__(self, model, oracle):
        self.model = model
        self.oracle = oracle

    def __call__(self, x, sigma):
        return self.model(x, sigma)

    def sigma_log_posterior(self, x, grid, log_prior=None):
        return self.oracle.sigma_log_posterior(x, grid, log_prior=log_prior)


# ----------------------------------------------------------------------------- the points of a sweep

#: the kinds of points, in plotting order
KINDS = ("noise", "schedule", "restart", "dlg")


def point_id(settings: dict) -> str:
    """A stable, readable identifier of a point: its settings as sorted JSON."""
    return json.dumps(settings, sort_keys=True, separators=(",", ":"))


def point_seed(base_seed: int, pid: str) -> int:
    """The seed of a point: a hash of its id and the sweep's base seed (recorded with the point)."""
    import zlib

    return (zlib.crc32(pid.encode()) + 1000003 * int(base_seed)) % (2**31 - 1)


class LadderContext:
    """Everything a sweep shares: the target, the model, the exact reference set and its noise floors."""

    def __init__(self, mixture, *, n: int, seed: int = 0, model=None, classifier=None, learned: bool = False,
                 n_levels: int = 200, floors=None, ref_values=None, floor_repeats=(40, 10)):
        self.mix = mixture
        self.oracle = SpectralMixture(mixture)
        self.model = self.oracle if model is None else model
        self.learned = learned
        self.n, self.seed, self.d = int(n), int(seed), mixture.d
        self.sigma_min, self.sigma_max = mixture.default_sigma_min(), mixture.default_sigma_max()
        self.tau_min, lam_max = mixture.eigenvalue_range()
        #: data diameter: the largest distance between means + 6 widest standard deviations (Song & Ermon 2020)
        mu = mixture.means.double()
        self.diameter = float(torch.cdist(mu, mu).max()) + 6 * math.sqrt(lam_max)
        self.n_levels = n_levels
        self.classifier = classifier
        g = torch.Generator().manual_seed(10_000 + self.seed)
        self.reference = mixture.sample(self.n, g)  # W2 and MMD of every point are measured against this set
        from dmcmc_edu.evaluation import metrics

        self.ref_values = ref_values if ref_values is not None else metrics.reference_values(mixture, generator=g)
        #: one MMD kernel for every point: the median heuristic on two exact sets (kept with the floors)
        if floors is not None and floors.get("mmd_bandwidth"):
            self.mmd_bandwidth = float(floors["mmd_bandwidth"])
        else:
            self.mmd_bandwidth = metrics.median_bandwidth(self.reference, mixture.sample(self.n, g))
        if floors is None:
            floors = metrics.noise_floors(mixture, self.n, self.reference, self.ref_values, repeats=floor_repeats[0],
                                          w2_repeats=floor_repeats[1], generator=g, mmd_bandwidth=self.mmd_bandwidth)
        self.floors = floors


def _tweedie_if_needed(D, x, info, sigma_min, final_tweedie="auto"):
    from dmcmc_edu.core.tweedie import tweedie

    if final_tweedie == "always" or (final_tweedie == "auto" and info.sigma_end > 0):
        return tweedie(D, x, sigma_min), True
    return x, False


def _run_noise(ctx, s, gen):
    """Vanilla sampling from sigma_max (optionally with the paper's extra Tweedie step)."""
    from dmcmc_edu.core.integrators import sample_from_noise

    ft = {"auto": None, "always": True}[s.get("final_tweedie", "auto")]
    x, info = sample_from_noise(ctx.model, (ctx.n, ctx.d), integrator=s["integrator"], steps=s["steps"],
                                sigma_max=ctx.sigma_max, sigma_min=ctx.sigma_min, generator=gen, final_tweedie=ft,
                                tweedie_sigma=ctx.sigma_min, **s.get("options", {}))
    return x, {"full": info.nfe, "paper": info.nfe, "parts": {"integrator_and_tweedie": info.nfe}}, None


def _run_schedule(ctx, s, gen):
    """Control (i): one DDIM step sigma_max -> sigma_mid, then the integrator's own schedule from sigma_mid."""
    from dmcmc_edu.core.contract import CountingDenoiser
    from dmcmc_edu.core.integrators import get_integrator
    from dmcmc_edu.core.random import normal

    D = CountingDenoiser(ctx.model, n_samples=ctx.n)
    x = normal((ctx.n, ctx.d), gen, torch.float64, "cpu") * ctx.sigma_max
    smid = float(s["sigma_mid"])
    den = D(x, torch.full((ctx.n,), ctx.sigma_max, dtype=torch.float64))
    x = den + (smid / ctx.sigma_max) * (x - den)  # probability-flow Euler in its exact-for-a-point-mass (DDIM) form
    first = D.nfe
    x, info = get_integrator(s["integrator"])(D, x, smid, ctx.sigma_min, s["steps"], generator=gen,
                                             **s.get("options", {}))
    x, _ = _tweedie_if_needed(D, x, info, ctx.sigma_min)
    parts = {"ddim_step": first, "integrator_and_tweedie": D.nfe - first}
    return x, {"full": D.nfe, "paper": D.nfe, "parts": parts}, None


def _run_restart(ctx, s, gen):
    """Control (ii): coarse KAR1 sample, noise up to sigma_restart, the integrator from there; no chain."""
    from dmcmc_edu.core.contract import CountingDenoiser
    from dmcmc_edu.core.integrators import get_integrator, kar1
    from dmcmc_edu.core.random import normal

    D = CountingDenoiser(ctx.model, n_samples=ctx.n)
    x = normal((ctx.n, ctx.d), gen, torch.float64, "cpu") * ctx.sigma_max
    x, _ = kar1(D, x, ctx.sigma_max, ctx.sigma_min, s["coarse_steps"])
    coarse = D.nfe
    sr = float(s["sigma_restart"])
    x = x + sr * normal(x.shape, gen, x.dtype, x.device)
    x, info = get_integrator(s["integrator"])(D, x, sr, ctx.sigma_min, s["steps"], generator=gen,
                                             **s.get("options", {}))
    x, _ = _tweedie_if_needed(D, x, info, ctx.sigma_min)
    return x, {"full": D.nfe, "paper": D.nfe, "parts": {"coarse": coarse, "restart_and_tweedie": D.nfe - coarse}}, None


def _run_dlg(ctx, s, seed):
    """DLG through :class:`~dmcmc_edu.core.sampler.DMCMCSampler`: n outputs from n / outputs_per_chain chains."""
    from dmcmc_edu.core.sampler import DMCMCConfig, DMCMCSampler

    T = int(s["outputs_per_chain"])
    if ctx.n % T:
        raise ValueError(f"outputs_per_chain {T} must divide n = {ctx.n}")
    C = ctx.n // T
    keys = ("eta", "eta_rel", "n_skip", "integrator", "steps", "integrator_options", "steps_per_decade",
            "sigma_update", "x_update",
            "init_steps", "init_kick", "burn_in", "final_tweedie", "tweedie_sigma")
    kw = {k: s[k] for k in keys if k in s}
    cfg = DMCMCConfig(sigma_min=ctx.sigma_min, sigma_max=ctx.sigma_max, n_levels=ctx.n_levels, n_chains=C,
                      outputs_per_chain=T, seed=seed, **kw)
    model = ctx.model
    if cfg.sigma_update == "exact" and not hasattr(model, "sigma_log_posterior"):
        model = _WithPosterior(model, ctx.oracle)
    if cfg.x_update == "mala" and not hasattr(model, "log_prob"):
        raise ValueError("MALA needs a log-density; a learned model has none (use ula)")
    clf = ctx.classifier if cfg.sigma_update.startswith("classifier") else None
    if cfg.sigma_update.startswith("classifier") and clf is None:
        raise ValueError(f"sigma_update {cfg.sigma_update!r} needs a trained classifier")
    beta = float(s.get("prior_tilt", 0.0))
    log_prior = -beta * torch.log(cfg.grid()) if beta else None
    res = DMCMCSampler(model, cfg, data_shape=(ctx.d,), classifier=clf, log_prior=log_prior, keep_trace=False).run()
    led = res.ledger.per_output()
    ledger = {"full": led["full"], "paper": led["paper"], "score_evals": led["score_evals"], "parts": led["parts"],
              "totals_in_rows": res.ledger.to_dict()["totals_in_rows"]}
    return res.samples, ledger, res


RUNNERS = {"noise": _run_noise, "schedule": _run_schedule, "restart": _run_restart}


def run_point(ctx: LadderContext, settings: dict) -> dict:
    """Run one point and measure it: returns the result row (settings, seed, ledger, metrics, chain metrics)."""
    from dmcmc_edu.evaluation import metrics

    pid = point_id(settings)
    seed = point_seed(ctx.seed, pid)
    t0 = time.perf_counter()
    row = {"id": pid, "kind": settings["kind"], "integrator": settings["integrator"], "settings": settings,
           "seed": seed, "n": ctx.n, "tags": list(settings.get("tags", []))}
    try:
        if settings["kind"] == "dlg":
            x, ledger, res = _run_dlg(ctx, settings, seed)
            chain = metrics.chain_metrics(ctx.mix, res.samples, res.chosen_sigma, res.samples.shape[0] //
                                          int(settings["outputs_per_chain"]))
            sig = res.chosen_sigma.double()
            chain["chosen_sigma_median"] = float(sig.median())
            chain["chosen_sigma_q90"] = float(sig.quantile(0.9))
        else:
            x, ledger, _ = RUNNERS[settings["kind"]](ctx, settings, torch.Generator().manual_seed(seed))
            chain = None
    except (FloatingPointError, ValueError, RuntimeError, torch.linalg.LinAlgError) as err:
        row.update(error=f"{type(err).__name__}: {err}", seconds=time.perf_counter() - t0)
        return row
    x = x.detach().to(torch.float64)
    if not torch.isfinite(x).all():
        row.update(error="non-finite outputs", seconds=time.perf_counter() - t0)
        return row
    m = metrics.evaluate(ctx.mix, x, ctx.reference, ctx.ref_values, mmd_bandwidth=ctx.mmd_bandwidth)
    ess = chain["ess_ratio"] if chain else 1.0
    row.update(ledger=ledger, nfe=ledger["full"], nfe_paper=ledger["paper"], ess_ratio=ess,
               nfe_per_independent=ledger["full"] / max(ess, 1e-9), metrics=m,
               within_floor=metrics.within_floors(m, ctx.floors), chain=chain,
               seconds=time.perf_counter() - t0)
    return row


# ----------------------------------------------------------------------------- what a sweep runs

_KAR = ("kar1", "kar2")
_GEOM = ("pf_euler", "reverse_diffusion", "euler_maruyama")


def _noise_steps(integrator: str, fast: bool):
    """Step settings from sigma_max, NFE about 5 to 1000: ``[(steps, options)]``."""
    if integrator == "rk45":
        tols = (1e-2, 1e-4) if fast else (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
        return [(1, {"rtol": t, "atol": t}) for t in tols]
    if integrator in _KAR:  # NFE = 2 steps - 1
        return [(s, {}) for s in ((4, 12) if fast else (2, 3, 4, 5, 6, 8, 10, 12, 16, 25, 50, 100, 250, 500))]
    return [(s, {}) for s in ((16, 64) if fast else (4, 8, 16, 32, 64, 128, 256, 512, 999))]  # NFE = steps + 1


def _short_steps(integrator: str, fast: bool):
    """Short runs from a small or moderate sigma (controls and DLG denoising): ``[(steps, options)]``."""
    if integrator == "rk45":
        return [(1, {"rtol": t, "atol": t}) for t in ((1e-2,) if fast else (1e-1, 1e-2, 1e-3))]
    if integrator in _KAR:
        return [(s, {}) for s in ((3,) if fast else (2, 3, 5, 8))]
    return [(s, {}) for s in ((8,) if fast else (4, 8, 16, 32))]


def _control_steps(integrator: str, fast: bool):
    """Step settings of the controls' integrator run (from sigma_mid or sigma_restart): ``[(steps, options)]``."""
    if fast:
        return _short_steps(integrator, fast)
    if integrator == "rk45":
        return [(1, {"rtol": t, "atol": t}) for t in (1e-1, 1e-2, 1e-3, 1e-4)]
    if integrator in _KAR:
        return [(s, {}) for s in (2, 3, 5, 8, 12, 16)]
    return [(s, {}) for s in (4, 8, 16, 32, 64)]


def paper_eta(ctx) -> float:
    """The toy's stand-in for the paper's absolute Langevin step: half the finest component variance.

    (The paper's eta = 0.8 belongs to CelebA-HQ pixels; ULA with an absolute step is stable below 4 tau_min.)
    """
    return 0.5 * ctx.tau_min


def dlg_settings(ctx, integrator: str, fast: bool) -> list[dict]:
    """The DLG grid for one integrator: the paper's settings and the remedies (see the module docstring)."""
    eta_small = 0.08 * ctx.tau_min  # DMCMCConfig.for_target's eta
    eta_rel = (2.0 / ctx.d) ** (1.0 / 3.0)  # ... and its sigma-adapted part
    ula_eta_rel = 0.5 * eta_rel  # unadjusted steps need more caution at large sigma
    mala = "ula" if ctx.learned else "mala"
    short = _short_steps(integrator, fast)
    s_lo, o_lo = short[0]
    s_mid, o_mid = short[1] if len(short) > 1 else short[0]
    if integrator == "rk45":
        paper_steps, paper_opts = 1, {}  # rk45 at its default tolerance 1e-5
    else:
        paper_steps, paper_opts = (19 if integrator in _KAR else 20), {}
    base = dict(kind="dlg", integrator=integrator)
    paper = dict(base, sigma_update="classifier-argmax", x_update="ula", eta=paper_eta(ctx), eta_rel=0.0,
                 init_steps=19, init_kick=0.5, burn_in=[[10, None]], final_tweedie="always",
                 tweedie_sigma=ctx.sigma_min, outputs_per_chain=20, tags=["paper"])
    remedy = dict(base, sigma_update="exact", x_update=mala, eta=eta_small, eta_rel=eta_rel, n_skip=1,
                  init_steps=19, init_kick=0.5, burn_in=[[10, None]], final_tweedie="auto")
    out = []
    # the mixing remedy: MALA steps of the component variance (eta = tau_min) plus eta_rel sigma^2, exact sigma-update,
    # and more denoising steps for states picked at large sigma (steps_per_decade; not for the adaptive RK45)
    spd = {} if integrator == "rk45" else {"steps_per_decade": 3.0 if integrator in _KAR else 6.0}
    mix_remedy = dict(remedy, eta=ctx.tau_min, steps=s_lo, integrator_options=o_lo, tags=["remedy"], **spd)
    if fast:
        out.append(dict(mix_remedy, outputs_per_chain=5))
        if integrator == "kar2":
            out.append(dict(paper, n_skip=1, steps=s_lo, integrator_options=o_lo))
        if integrator == "kar1" and ctx.classifier is not None:
            out.append(dict(mix_remedy, sigma_update="classifier-sample", x_update="ula", eta_rel=ula_eta_rel,
                            outputs_per_chain=5))
        return out
    # the paper: ULA with an absolute step, classifier argmax, persistent chains, extra Tweedie step
    out.append(dict(paper, n_skip=10, steps=paper_steps, integrator_options=paper_opts))
    out.append(dict(paper, n_skip=1, steps=s_lo, integrator_options=o_lo))
    out.append(dict(paper, n_skip=1, steps=s_mid, integrator_options=o_mid))
    # one remedy at a time on top of the paper: sampled sigma-update; sigma-adapted steps; fewer outputs per chain
    out.append(dict(paper, sigma_update="classifier-sample", n_skip=1, steps=s_mid, integrator_options=o_mid,
                    tags=["remedy"]))
    out.append(dict(paper, eta_rel=ula_eta_rel, n_skip=1, steps=s_mid, integrator_options=o_mid, tags=["remedy"]))
    out.append(dict(paper, outputs_per_chain=2, n_skip=1, steps=s_mid, integrator_options=o_mid, tags=["remedy"]))
    # DMCMCConfig.for_target's small steps (eta = 0.08 tau_min): exact, but chains barely move at small sigma
    for T in (2, 20):
        for st, op in (short[0], short[-1]):
            out.append(dict(remedy, steps=st, integrator_options=op, outputs_per_chain=T, tags=["remedy"]))
    # the mixing remedy over the number of outputs per chain (= periodic refresh from noise every T outputs)
    for T in (1, 2, 5, 10, 20):
        out.append(dict(mix_remedy, outputs_per_chain=T))
    if spd:
        out.append(dict(mix_remedy, outputs_per_chain=5, steps_per_decade=spd["steps_per_decade"] * 2 / 3))
    out.append(dict(mix_remedy, outputs_per_chain=5, n_skip=2))
    # chains held at small sigma by a tilted prior pi_i ∝ sigma_i^-0.5 (their sigma marginal is the prior)
    for T in (5, 20):
        out.append(dict(mix_remedy, outputs_per_chain=T, prior_tilt=0.5, init_kick=0.05))
    # the classifier in place of the exact posterior (ULA: a network has no log-density)
    for upd in ("classifier-sample", "classifier-argmax"):
        out.append(dict(mix_remedy, sigma_update=upd, x_update="ula", eta_rel=ula_eta_rel, outputs_per_chain=5))
    # a cheap initialisation (8-step KAR2, 5 burn-in steps) amortised over 10 outputs
    out.append(dict(mix_remedy, outputs_per_chain=10, init_steps=8, burn_in=[[5, None]]))
    return out


def build_plan(ctx, fast: bool = False, integrators=None) -> list[dict]:
    """Every point of a sweep, as settings dicts (see the module docstring).

    The controls' levels are fractions of the data diameter (:attr:`LadderContext.diameter`): sigma_mid in
    {0.2, 0.4} diameters (on the ring about 2 and 4: modes 3 apart, component std 0.25), sigma_restart in
    {0.025, 0.1} diameters (0.24 and 0.95 on the ring) after a coarse 8-step KAR1 sample.
    """
    from dmcmc_edu.core.integrators import PAPER_INTEGRATORS

    plan = []
    for name in integrators or PAPER_INTEGRATORS:
        for st, op in _noise_steps(name, fast):
            plan.append(dict(kind="noise", integrator=name, steps=st, options=op))
        if name in _KAR:  # the paper's extra Tweedie step after a run that already ends with one
            for st in ((4,) if fast else (4, 8, 16, 50)):
                plan.append(dict(kind="noise", integrator=name, steps=st, options={}, final_tweedie="always",
                                 tags=["extra_tweedie"]))
        for smid in ((0.2,) if fast else (0.2, 0.4)):
            for st, op in _control_steps(name, fast):
                plan.append(dict(kind="schedule", integrator=name, sigma_mid=round(smid * ctx.diameter, 4), steps=st,
                                 options=op, tags=["control"]))
        for cs in ((6,) if fast else (8,)):
            for sr in ((0.05,) if fast else (0.025, 0.1)):
                for st, op in _control_steps(name, fast)[: (1 if fast else 4)]:
                    plan.append(dict(kind="restart", integrator=name, coarse_steps=cs,
                                     sigma_restart=round(sr * ctx.diameter, 4), steps=st, options=op,
                                     tags=["control"]))
        plan.extend(dlg_settings(ctx, name, fast))
    return plan


# ----------------------------------------------------------------------------- the driver


def _clean(v):
    """JSON-safe copy: NaN/inf -> None, tensors and numpy scalars -> Python numbers."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, torch.Tensor):
        return _clean(v.tolist())
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def target_stem(target: str, learned: bool = False, fast: bool = False) -> str:
    """File stem of a sweep's outputs: the preset name or the JSON file's stem, plus _learned / _fast."""
    name = Path(target).stem if str(target).lower().endswith(".json") else str(target)
    return name + ("_learned" if learned else "") + ("_fast" if fast else "")


def train_classifier(mixture, grid, *, steps: int, seed: int = 0, batch_size: int = 256, progress: bool = False):
    """The ladder's MLP noise-level classifier (the paper's training, cosine rate); returns (classifier, KL)."""
    from dmcmc_edu.models.classifier import MLPClassifier, NoiseLevelClassifier, kl_to_exact, train_noise_level_classifier

    torch.manual_seed(seed)  # network initialisation
    clf = NoiseLevelClassifier(MLPClassifier(mixture.d, len(grid)), grid,
                               config={"steps": steps, "seed": seed, "batch_size": batch_size})
    train_noise_level_classifier(clf, mixture.sample, steps=steps, batch_size=batch_size, lr_schedule="cosine",
                                 generator=torch.Generator().manual_seed(seed), progress=progress)
    kl = kl_to_exact(clf, mixture, n=2000, generator=torch.Generator().manual_seed(seed + 1))
    return clf, float(kl["kl"])


def _load_or_train_classifier(mix, grid, path: Path, steps: int, seed: int, progress: bool):
    from dmcmc_edu.models.classifier import NoiseLevelClassifier, kl_to_exact

    if path.exists():
        clf = NoiseLevelClassifier.load(path)
        if torch.allclose(clf.grid.double(), grid.double(), rtol=1e-9) and clf.config.get("steps") == steps:
            kl = kl_to_exact(clf, mix, n=2000, generator=torch.Generator().manual_seed(seed + 1))
            return clf, float(kl["kl"]), "loaded"
    clf, kl = train_classifier(mix, grid, steps=steps, seed=seed, progress=progress)
    from dmcmc_edu.runs import atomic_write

    atomic_write(path, lambda tmp: clf.save(tmp))
    return clf, kl, "trained"


def _have_pot() -> bool:
    from dmcmc_edu.evaluation.metrics import _have_pot as have

    return have()


def _versions() -> dict:
    import platform

    import numpy as np

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}


def run_ladder(target="ring", out="runs/ladder", *, fast: bool = False, learned: bool = False, n: int | None = None,
               seed: int = 0, progress: bool = True, plot: bool = True, integrators=None, command: str | None = None,
               classifier_steps: int | None = None, workers: int = 1) -> dict:
    """Run (or resume) a sweep and write ``OUT/<stem>.json``, ``.csv``, ``_fig3.png`` and ``_findings.{json,md}``.

    ``stem`` is the target's name plus ``_learned`` / ``_fast``.  Points already in the JSON file are skipped
    (resume); a file made with other sweep settings is refused.  ``workers > 1`` runs points in that many
    forked processes (one torch thread each); every point is seeded by its id, so the results do not depend on
    the number of workers.  Returns the result dict.
    """
    from tqdm import tqdm

    from dmcmc_edu.targets import mixture as mixture_mod
    from dmcmc_edu.runs import atomic_write
    from dmcmc_edu.core.schedules import noise_level_grid

    torch.set_num_threads(1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = target_stem(target, learned, fast)
    mix = mixture_mod.load_target(target)
    n = n or (500 if fast else 2000)
    sweep = {"target": str(target), "n": n, "seed": seed, "fast": fast, "learned": learned,
             "integrators": list(integrators) if integrators else None}
    path = out / f"{stem}.json"
    saved = None
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("meta", {}).get("sweep") != sweep:
            raise ValueError(f"{path} holds a sweep with other settings ({saved.get('meta', {}).get('sweep')}); "
                             f"this call asks for {sweep}: choose another --out")
    t_start = time.perf_counter()
    smin, smax = mix.default_sigma_min(), mix.default_sigma_max()
    n_levels = 200
    grid = noise_level_grid(smin, smax, n_levels)
    csteps = classifier_steps or (300 if fast else 3000)
    clf, kl, how = _load_or_train_classifier(mix, grid, out / f"{target_stem(target, fast=fast)}_classifier.pt",
                                             csteps, seed, progress)
    model, learned_info = None, None
    if learned:
        from dmcmc_edu.models.learned import load_or_train_denoiser

        model, learned_info = load_or_train_denoiser(mix, out / f"{target_stem(target, fast=fast)}_denoiser.pt",
                                                     fast=fast, seed=seed, progress=progress)
    floors = saved["meta"]["floors"] if saved else None
    ref_values = saved["meta"]["ref_values"] if saved else None
    ctx = LadderContext(mix, n=n, seed=seed, model=model, classifier=clf, learned=learned, n_levels=n_levels,
                        floors=floors, ref_values=ref_values, floor_repeats=(20, 5) if fast else (40, 10))
    meta = {"format": "dmcmc_edu.experiments.ladder/1", "sweep": sweep, "stem": stem, "command": command,
            "target": mix.to_dict() | {"spec": str(target)}, "d": mix.d, "K": mix.K,
            "sigma_min": smin, "sigma_max": smax, "n_levels": n_levels, "tau_min": ctx.tau_min,
            "paper_eta": paper_eta(ctx), "floors": ctx.floors, "ref_values": ctx.ref_values,
            "w2_solver": "pot" if _have_pot() else "scipy", "workers": workers,
            "classifier": {"arch": "mlp", "steps": csteps, "kl_to_exact": kl, "source": how},
            "learned": learned_info, "versions": _versions(),
            "notes": _NOTES + ([_LEARNED_NOTE] if learned else [])}
    points = saved["points"] if saved else []
    done = {p["id"] for p in points}
    plan = build_plan(ctx, fast=fast, integrators=integrators)
    todo = [p for p in plan if point_id(p) not in done]

    def save():
        doc = {"meta": meta, "points": points}
        atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(_clean(doc), indent=1)))

    save()
    bar = tqdm(total=len(todo), desc=f"ladder {stem}", disable=not progress)
    for row in _run_points(ctx, todo, workers):
        points.append(_clean(row))
        bar.update(1)
        bar.set_postfix_str(f"{row['kind']} {row['integrator']}")
        save()
    bar.close()
    order = {point_id(p): i for i, p in enumerate(plan)}
    points.sort(key=lambda p: order.get(p["id"], len(order)))
    meta["seconds_this_call"] = time.perf_counter() - t_start
    save()
    doc = {"meta": meta, "points": points}
    write_csv(points, out / f"{stem}.csv")
    findings = analyse(doc)
    atomic_write(out / f"{stem}_findings.json",
                 lambda tmp: Path(tmp).write_text(json.dumps(_clean(findings), indent=1)))
    atomic_write(out / f"{stem}_findings.md", lambda tmp: Path(tmp).write_text(findings_markdown(findings, meta)))
    if plot:
        plot_ladder(doc, out / f"{stem}_fig3.png")
    return doc


_WORKER_CTX = None


def _worker_run(settings):
    torch.set_num_threads(1)
    return run_point(_WORKER_CTX, settings)


def _run_points(ctx, todo, workers: int):
    """Yield the result rows of ``todo``, in order with one worker, as they finish with several (fork)."""
    global _WORKER_CTX
    if workers <= 1 or len(todo) <= 1:
        for s in todo:
            yield run_point(ctx, s)
        return
    import multiprocessing as mp

    _WORKER_CTX = ctx
    with mp.get_context("fork").Pool(workers) as pool:
        yield from pool.imap_unordered(_worker_run, todo)
    _WORKER_CTX = None


_NOTES = [
    "nfe = the full ledger per output (initialisation and burn-in amortised, classifier evaluations counted as one "
    "evaluation each); nfe_paper = the paper's accounting (Gibbs steps + integrator + Tweedie).",
    "nfe_per_independent = nfe / ess_ratio, ess_ratio = the smaller effective-sample-size ratio of the output "
    "component labels and of the output positions (1 for independent outputs).",
    "metrics against one exact reference set of n samples; floors: mean + 3 sd over exact sets of the same size "
    "(an exact sampler passes all seven about 95 % of the time).",
    "'exact' sigma-update: draws from the analytic mixture's p(sigma | x) (an oracle; no evaluation counted).",
]
_LEARNED_NOTE = ("learned model: every score/denoiser evaluation uses the trained MLP; the 'exact' sigma-update "
                 "still uses the analytic mixture's posterior, and MALA is not available (no log-density).")


# ----------------------------------------------------------------------------- tables, findings, figures


def point_label(s: dict) -> str:
    """A short readable description of a point's settings."""
    opt = s.get("options") or s.get("integrator_options") or {}
    st = f"rtol={opt['rtol']:g}" if "rtol" in opt else f"{s.get('steps')} st"
    if s["kind"] == "noise":
        return f"{s['integrator']} {st}" + (" +tweedie" if s.get("final_tweedie") == "always" else "")
    if s["kind"] == "schedule":
        return f"{s['integrator']} DDIM->{s['sigma_mid']:g}, {st}"
    if s["kind"] == "restart":
        return f"{s['integrator']} KAR1 {s['coarse_steps']} st, restart {s['sigma_restart']:g}, {st}"
    upd = {"exact": "exact", "classifier-argmax": "argmax", "classifier-sample": "cls-sample"}[s["sigma_update"]]
    parts = [s["integrator"], upd, s["x_update"], f"eta={s['eta']:.3g}"]
    if s.get("eta_rel"):
        parts.append(f"eta_rel={s['eta_rel']:.2g}")
    if s.get("steps_per_decade"):
        st += f" (+{s['steps_per_decade']:g}/decade)"
    parts += [f"skip={s.get('n_skip', 1)}", st, f"T={s['outputs_per_chain']}"]
    if s.get("prior_tilt"):
        parts.append(f"tilt={s['prior_tilt']:g}")
    if s.get("init_steps", 19) != 19:
        parts.append(f"init={s['init_steps']}")
    if s.get("final_tweedie") == "always":
        parts.append("+tweedie")
    return " ".join(parts)


def write_csv(points: list[dict], path) -> None:
    """One row per point: kind, integrator, label, NFE (full, paper, per independent), metrics, floors, settings."""
    from dmcmc_edu.evaluation.metrics import FLOOR_METRICS
    from dmcmc_edu.runs import atomic_write

    mkeys = ["w2", "mmd2", "mode_tv", "spread", "on_manifold", "nll_mean", "nll_median"]
    ckeys = ["ess_ratio", "ess_component_ratio", "ess_position_ratio", "ess_sigma_ratio", "acf1_component",
             "acf1_sigma", "mode_switch_rate", "decorrelation", "chosen_sigma_median"]
    head = (["id", "kind", "integrator", "label", "seed", "n", "nfe", "nfe_paper", "nfe_per_independent"] + mkeys
            + [f"{k}_dev" for k, how in FLOOR_METRICS.items() if how == "abs_dev"] + ["all_within_floor"]
            + ckeys + ["seconds", "error", "settings"])

    def write(tmp):
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(head)
            for p in points:
                m, c = p.get("metrics") or {}, p.get("chain") or {}
                row = [p["id"], p["kind"], p["integrator"], point_label(p["settings"]), p["seed"], p["n"],
                       p.get("nfe"), p.get("nfe_paper"), p.get("nfe_per_independent")]
                row += [m.get(k) for k in mkeys]
                row += [m.get(f"{k}_dev") for k, how in FLOOR_METRICS.items() if how == "abs_dev"]
                row += [(p.get("within_floor") or {}).get("all")]
                row += [c.get(k) for k in ckeys] + [p.get("seconds"), p.get("error"),
                                                    json.dumps(p["settings"], sort_keys=True)]
                w.writerow(row)

    atomic_write(Path(path), write)


def _value(p, metric):
    from dmcmc_edu.evaluation.metrics import FLOOR_METRICS

    m = p["metrics"]
    v = m[metric] if FLOOR_METRICS[metric] == "value" else m.get(f"{metric}_dev")
    return float("nan") if v is None else v


def _passes(p, floors, targets=None):
    from dmcmc_edu.evaluation.metrics import FLOOR_METRICS

    for k in FLOOR_METRICS:
        thr = targets[k] if targets else floors[k]["threshold"]
        v = _value(p, k)
        if not (v == v and v <= thr):
            return False
    return True


def _failing(p, floors):
    from dmcmc_edu.evaluation.metrics import FLOOR_METRICS

    return [k for k in FLOOR_METRICS if not (_value(p, k) <= floors[k]["threshold"])]


def _first(points, key, ok):
    good = [p for p in points if ok(p)]
    return min(good, key=lambda p: p[key]) if good else None


def _brief(p, key="nfe_per_independent"):
    if p is None:
        return None
    return {"nfe_per_independent": p.get("nfe_per_independent"), "nfe": p.get("nfe"), "nfe_paper": p.get("nfe_paper"),
            "label": point_label(p["settings"]), "id": p["id"], "kind": p["kind"], "ess_ratio": p.get("ess_ratio")}


BUDGETS = (5, 10, 20, 50, 100, 200, 500, 1000)


def analyse(doc: dict) -> dict:
    """The key findings of a sweep (see the README in bench/results/toy).

    Per integrator: the reference quality is that of its from-noise run at the largest NFE; a point *reaches*
    it when every metric is within max(noise floor, reference value).  Reported: the smallest NFE per
    independent sample at which vanilla sampling, each control and DLG reach it; the same with the pure noise
    floors; the paper's DLG settings (NFE, failing metrics).  Per NFE budget: the best point of each kind
    (all metrics inside the floors first, then the fewest failing metrics, then the lowest W2).
    """
    from dmcmc_edu.evaluation.metrics import FLOOR_METRICS

    floors = doc["meta"]["floors"]
    pts = [p for p in doc["points"] if p.get("metrics")]
    names = sorted({p["integrator"] for p in pts}, key=lambda nm: ["kar1", "kar2", "pf_euler", "rk45",
                                                                    "reverse_diffusion", "euler_maruyama"].index(nm)
                   if nm in ("kar1", "kar2", "pf_euler", "rk45", "reverse_diffusion", "euler_maruyama") else 99)
    per = {}
    for name in names:
        mine = [p for p in pts if p["integrator"] == name]
        noise = [p for p in mine if p["kind"] == "noise" and "extra_tweedie" not in p.get("tags", [])]
        if not noise:
            continue
        ref = max(noise, key=lambda p: p["nfe"])
        targets = {k: max(floors[k]["threshold"], _value(ref, k)) for k in FLOOR_METRICS}
        reach = lambda p, t=targets: _passes(p, floors, t)  # noqa: E731
        floor_ok = lambda p: _passes(p, floors)  # noqa: E731
        groups = {"noise": noise, "schedule": [p for p in mine if p["kind"] == "schedule"],
                  "restart": [p for p in mine if p["kind"] == "restart"],
                  "dlg": [p for p in mine if p["kind"] == "dlg"]}
        groups["control"] = groups["schedule"] + groups["restart"]
        entry = {"reference": {"nfe": ref["nfe"], "label": point_label(ref["settings"]),
                               "within_floors": floor_ok(ref), "failing": _failing(ref, floors)},
                 "targets": targets, "reach": {}, "floors_reach": {}}
        for g, ps in groups.items():
            entry["reach"][g] = _brief(_first(ps, "nfe_per_independent", reach))
            entry["floors_reach"][g] = _brief(_first(ps, "nfe_per_independent", floor_ok))
        r = entry["reach"]

        def ratio(a, b):
            return a["nfe_per_independent"] / b["nfe_per_independent"] if a and b else None

        entry["speedup_dlg_vs_noise"] = ratio(r["noise"], r["dlg"])
        entry["speedup_dlg_vs_best_control"] = ratio(r["control"], r["dlg"])
        entry["speedup_control_vs_noise"] = ratio(r["noise"], r["control"])
        entry["paper_settings"] = [
            dict(_brief(p), failing=_failing(p, floors), reaches_reference=reach(p),
                 mode_tv=p["metrics"]["mode_tv"], w2=p["metrics"]["w2"])
            for p in groups["dlg"] if "paper" in p.get("tags", []) and p["settings"].get("outputs_per_chain") == 20
            and p["settings"]["sigma_update"] == "classifier-argmax" and not p["settings"].get("eta_rel")]
        kar_tw = [p for p in mine if "extra_tweedie" in p.get("tags", [])]
        if kar_tw:
            pairs = []
            for p in kar_tw:
                twin = [q for q in noise if q["settings"]["steps"] == p["settings"]["steps"]]
                if twin:
                    pairs.append({"steps": p["settings"]["steps"], "nfe": p["nfe"], "w2": p["metrics"]["w2"],
                                  "w2_without": twin[0]["metrics"]["w2"], "spread": p["metrics"]["spread"],
                                  "spread_without": twin[0]["metrics"]["spread"],
                                  "failing": _failing(p, floors), "failing_without": _failing(twin[0], floors)})
            entry["extra_tweedie"] = pairs
        per[name] = entry

    def rank(p):
        return (len(_failing(p, floors)), p["metrics"]["w2"])

    budgets = {}
    for b in BUDGETS:
        row = {}
        for kind in KINDS:
            cands = [p for p in pts if p["kind"] == kind and p["nfe_per_independent"] <= b
                     and "extra_tweedie" not in p.get("tags", [])]
            if cands:
                best = min(cands, key=rank)
                row[kind] = dict(_brief(best), failing=_failing(best, floors), w2=best["metrics"]["w2"],
                                 mode_tv=best["metrics"]["mode_tv"])
        budgets[str(b)] = row
    errors = [{"label": point_label(p["settings"]), "error": p["error"]} for p in doc["points"] if p.get("error")]
    return {"per_integrator": per, "best_at_budget": budgets, "errors": errors,
            "floors": {k: floors[k]["threshold"] for k in FLOOR_METRICS}}


def _fmt(v, nd=1):
    return "—" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))


def findings_markdown(f: dict, meta: dict) -> str:
    """The findings as Markdown tables."""
    lines = [f"# Ladder findings: {meta['stem']}", "",
             f"Target `{meta['sweep']['target']}` (d = {meta['d']}, K = {meta['K']}), n = {meta['sweep']['n']} "
             f"outputs per point, sigma in [{meta['sigma_min']:.3g}, {meta['sigma_max']:.3g}]; command: "
             f"`{meta.get('command')}`.", "",
             "NFE per independent sample (full ledger / ESS ratio) at which each sampler first reaches the "
             "integrator's own best quality from noise (every metric within max(noise floor, value at the "
             "largest NFE from noise)); in brackets: every metric inside the noise floors.", "",
             "| integrator | from noise | schedule ctrl | restart ctrl | DLG (best) | DLG vs noise | "
             "DLG vs best ctrl | paper DLG (full NFE; failing) |", "|---|---|---|---|---|---|---|---|"]
    for name, e in f["per_integrator"].items():
        r, fr = e["reach"], e["floors_reach"]

        def cell(g, r=r, fr=fr):
            a = _fmt(r[g]["nfe_per_independent"]) if r[g] else "—"
            b = _fmt(fr[g]["nfe_per_independent"]) if fr[g] else "—"
            return f"{a} [{b}]"

        paper = "; ".join(f"{p['nfe']:.0f}: {','.join(p['failing']) or 'none'}" for p in e["paper_settings"])
        lines.append(f"| {name} | {cell('noise')} | {cell('schedule')} | {cell('restart')} | {cell('dlg')} | "
                     f"{_fmt(e['speedup_dlg_vs_noise'], 2)}x | {_fmt(e['speedup_dlg_vs_best_control'], 2)}x | "
                     f"{paper or '—'} |")
    lines += ["", "Settings that first reach the reference:", ""]
    for name, e in f["per_integrator"].items():
        for g in ("noise", "control", "dlg"):
            if e["reach"][g]:
                lines.append(f"- {name}, {g}: {e['reach'][g]['label']} (NFE/output {e['reach'][g]['nfe']:.1f}, "
                             f"ESS ratio {e['reach'][g]['ess_ratio']:.2f})")
    lines += ["", "Best point of each kind within an NFE budget (per independent sample); failing metrics in "
              "brackets:", "", "| budget | " + " | ".join(KINDS) + " |", "|---|" + "---|" * len(KINDS)]
    for b, row in f["best_at_budget"].items():
        cells = []
        for kind in KINDS:
            p = row.get(kind)
            cells.append("—" if p is None else
                         f"{p['label']} ({p['nfe_per_independent']:.0f}) [{','.join(p['failing']) or 'all ok'}]")
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    if f["errors"]:
        lines += ["", f"{len(f['errors'])} point(s) failed (non-finite states): "
                  + "; ".join(e["label"] for e in f["errors"][:10])]
    return "\n".join(lines) + "\n"


def _envelope(pts, key, metric):
    """Lower envelope of (NFE, metric): points that beat every point of smaller NFE."""
    best, out = float("inf"), []
    for p in sorted(pts, key=lambda p: p[key]):
        v = p["metrics"][metric]
        if v < best:
            best = v
            out.append((p[key], v))
    return out


_STYLE = {"noise": dict(color="k", marker="o", label="from sigma_max"),
          "schedule": dict(color="C1", marker="s", label="control: schedule"),
          "restart": dict(color="C2", marker="^", label="control: restart"),
          "dlg": dict(color="C0", marker="D", label="DLG (full ledger, per output)")}


def plot_ladder(doc: dict, path=None):
    """The paper's Fig. 3 layout: W2 vs NFE per integrator (with/without DLG, controls), plus mode TV and spread."""
    import matplotlib.pyplot as plt

    from dmcmc_edu.plotting import save_figure

    floors = doc["meta"]["floors"]
    pts = [p for p in doc["points"] if p.get("metrics")]
    names = [nm for nm in ("kar1", "kar2", "pf_euler", "rk45", "reverse_diffusion", "euler_maruyama")
             if any(p["integrator"] == nm for p in pts)]
    fig, axes = plt.subplots(2, 4, figsize=(17, 8))
    for ax, name in zip(axes.flat, names):
        mine = [p for p in pts if p["integrator"] == name]
        for kind in KINDS:
            ps = [p for p in mine if p["kind"] == kind and "extra_tweedie" not in p.get("tags", [])]
            if not ps:
                continue
            st = _STYLE[kind]
            if kind == "noise":
                xy = sorted((p["nfe"], p["metrics"]["w2"]) for p in ps)
            else:
                xy = _envelope(ps, "nfe", "w2")
                ax.scatter([p["nfe"] for p in ps], [p["metrics"]["w2"] for p in ps], s=6, color=st["color"],
                           alpha=0.25)
            ax.plot(*zip(*xy), marker=st["marker"], ms=3, color=st["color"], label=st["label"])
            if kind == "dlg":
                xy = _envelope(ps, "nfe_per_independent", "w2")
                ax.plot(*zip(*xy), ls="--", color=st["color"], label="DLG per independent sample")
                paper = [p for p in ps if "paper" in p.get("tags", [])]
                if paper:
                    ax.scatter([p["nfe"] for p in paper], [p["metrics"]["w2"] for p in paper], marker="*", s=60,
                               color="C3", zorder=5, label="DLG, paper settings (full)")
                    ax.scatter([p["nfe_paper"] for p in paper], [p["metrics"]["w2"] for p in paper], marker="*",
                               s=60, facecolor="none", edgecolor="C3", zorder=5, label="... paper accounting")
        tw = [p for p in mine if "extra_tweedie" in p.get("tags", [])]
        if tw:
            ax.scatter([p["nfe"] for p in tw], [p["metrics"]["w2"] for p in tw], marker="x", color="C4", s=20,
                       label="+ extra Tweedie step")
        ax.axhline(floors["w2"]["threshold"], color="0.4", ls=":", lw=1, label="W2 noise floor")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel("NFE")
        ax.set_ylabel("W2 to exact samples")
    for ax, metric, title in ((axes.flat[6], "mode_tv", "mode-weight TV (best per NFE, all integrators)"),
                              (axes.flat[7], "spread", "|spread - 1| (best per NFE, all integrators)")):
        for kind in KINDS:
            ps = [p for p in pts if p["kind"] == kind and "extra_tweedie" not in p.get("tags", [])]
            if not ps:
                continue
            key = "nfe" if kind != "dlg" else "nfe_per_independent"
            vals = [dict(p, metrics=dict(p["metrics"], spread=p["metrics"]["spread_dev"]))
                    for p in ps] if metric == "spread" else ps
            xy = _envelope(vals, key, metric)
            lab = _STYLE[kind]["label"] if kind != "dlg" else "DLG (per independent sample)"
            ax.plot(*zip(*xy), marker=_STYLE[kind]["marker"], ms=3, color=_STYLE[kind]["color"], label=lab)
            if kind == "dlg":
                paper = [p for p in ps if "paper" in p.get("tags", [])]
                ax.scatter([p["nfe_per_independent"] for p in paper],
                           [p["metrics"]["mode_tv" if metric == "mode_tv" else "spread_dev"] for p in paper],
                           marker="*", s=50, color="C3", zorder=5, label="DLG, paper settings")
        ax.axhline(floors[metric]["threshold"], color="0.4", ls=":", lw=1, label="noise floor")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("NFE per independent sample")
    handles = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=5, fontsize=8, frameon=False)
    m = doc["meta"]
    fig.suptitle(f"{m['stem']}: d = {m['d']}, n = {m['sweep']['n']} outputs per point; NFE by the full ledger "
                 "(DLG envelopes: best W2 at or below each NFE)", fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    if path is not None:
        save_figure(fig, path)
        plt.close(fig)
    return fig
