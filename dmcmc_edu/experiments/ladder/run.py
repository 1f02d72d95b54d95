"""Running a ladder sweep: the shared context, one runner per kind of point, and the resumable driver.

:func:`run_point` runs one settings dict of :mod:`.plan` and measures its
outputs; :func:`run_ladder` runs (or resumes) a whole sweep, in one process or
in several forked workers, saving the result file after every point, and then
writes the tables, findings and figure of :mod:`.report`.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from tqdm import tqdm

from dmcmc_edu.core.contract import CountingDenoiser
from dmcmc_edu.core.integrators import kar1, sample_from_noise
from dmcmc_edu.core.random import normal
from dmcmc_edu.core.sampler import DMCMCConfig, DMCMCSampler
from dmcmc_edu.core.schedules import noise_level_grid
from dmcmc_edu.core.tweedie import finish_with_tweedie
from dmcmc_edu.evaluation import metrics
from dmcmc_edu.evaluation.calibration import kl_to_exact
from dmcmc_edu.experiments.ladder.plan import build_plan, paper_eta, point_id, point_seed
from dmcmc_edu.experiments.ladder.report import analyse, findings_markdown, plot_ladder, write_csv
from dmcmc_edu.models.classifier import MLPClassifier, NoiseLevelClassifier
from dmcmc_edu.registry import get_integrator, integrator_table
from dmcmc_edu.runs import (
    RunDirectory,
    RunRefused,
    atomic_write,
    fingerprint,
    refuse_other_settings,
    target_sha256,
    versions,
    write_json,
)
from dmcmc_edu.targets import SpectralMixture, load_target
from dmcmc_edu.training.classifier import train_noise_level_classifier
from dmcmc_edu.training.denoiser import load_or_train_denoiser

__all__ = ["LadderContext", "RUNNERS", "run_point", "run_ladder", "refloor_sweep", "sweep_floors", "target_stem",
           "train_classifier"]


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


def sweep_floors(mixture, n: int, mmd_bandwidth: float, ref_values: dict, *,
                 repeats: int = metrics.EXACT_FLOOR_REPEATS, path=None) -> dict:
    """The noise floors a sweep of size ``n`` reads its points against: :func:`metrics.exact_floors` (the 0.995
    quantile of ``repeats`` pairs of fresh exact sets, scored with the sweep's MMD kernel and population values).

    With ``path`` they are computed once and kept there (``{"settings", "seconds", "floors"}``); a file made for
    another target, size, kernel or count is refused in one line (:class:`~dmcmc_edu.runs.RunRefused`), never
    replaced.  Every sweep of a folder, and every replicate over seeds, therefore reads the same floors.
    """
    want = {"target_sha256": target_sha256(mixture.to_dict()), "n": int(n), "repeats": int(repeats), "seed": 777,
            "quantile": metrics.FLOOR_QUANTILE, "mmd_bandwidth": float(mmd_bandwidth)}
    if path is not None:
        saved = refuse_other_settings(path, want)
        if saved is not None:
            return saved["floors"]
    t0 = time.perf_counter()
    floors = metrics.exact_floors(mixture, int(n), repeats=int(repeats), mmd_bandwidth=float(mmd_bandwidth),
                                  ref_values=ref_values)
    if path is not None:
        write_json(path, _clean({"settings": want, "seconds": time.perf_counter() - t0, "floors": floors}), indent=1)
    return floors


class LadderContext:
    """Everything a sweep shares: the target, the model, the exact reference set and its noise floors."""

    def __init__(self, mixture, *, n: int, seed: int = 0, model=None, classifier=None, learned: bool = False,
                 n_levels: int = 200, floors=None, ref_values=None, floor_repeats: int = metrics.EXACT_FLOOR_REPEATS,
                 floors_file=None):
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
        # the stream of seed 0 gives the population values, the MMD kernel and the floors of every replicate;
        # a replicate (seed > 0) changes only the reference set, so its metrics are read on the same scale
        g = torch.Generator().manual_seed(10_000)
        reference0 = mixture.sample(self.n, g)
        #: W2 and MMD of every point are measured against this set
        self.reference = reference0 if not self.seed else mixture.sample(
            self.n, torch.Generator().manual_seed(10_000 + self.seed))
        self.ref_values = ref_values if ref_values is not None else metrics.reference_values(mixture, generator=g)
        #: one MMD kernel for every point: the median heuristic on two exact sets (kept with the floors)
        if floors is not None and floors.get("mmd_bandwidth"):
            self.mmd_bandwidth = float(floors["mmd_bandwidth"])
        else:
            self.mmd_bandwidth = metrics.median_bandwidth(reference0, mixture.sample(self.n, g))
        if floors is None:  # the exact floors of (target, n): the same numbers for every sweep of this size
            floors = sweep_floors(mixture, self.n, self.mmd_bandwidth, self.ref_values, repeats=floor_repeats,
                                  path=floors_file)
        self.floors = floors


# ----------------------------------------------------------------------------- one runner per kind of point


def _run_noise(ctx, s, gen):
    """Vanilla sampling from sigma_max (optionally with the paper's extra Tweedie step)."""
    ft = {"auto": None, "always": True}[s.get("final_tweedie", "auto")]
    x, info = sample_from_noise(ctx.model, (ctx.n, ctx.d), integrator=get_integrator(s["integrator"]), steps=s["steps"],
                                sigma_max=ctx.sigma_max, sigma_min=ctx.sigma_min, generator=gen, final_tweedie=ft,
                                tweedie_sigma=ctx.sigma_min, **s.get("options", {}))
    return x, {"full": info.nfe, "paper": info.nfe, "parts": {"integrator_and_tweedie": info.nfe}}, None


def _integrate_and_finish(ctx, D, x, sigma_start: float, s, gen):
    """The point's integrator from ``sigma_start`` down to sigma_min, then Tweedie's step if it ends above 0."""
    x, info = get_integrator(s["integrator"])(D, x, sigma_start, ctx.sigma_min, s["steps"], generator=gen,
                                             **s.get("options", {}))
    x, _ = finish_with_tweedie(D, x, info.sigma_end, ctx.sigma_min, "auto")
    return x


def _run_schedule(ctx, s, gen):
    """Control (i): one DDIM step sigma_max -> sigma_mid, then the integrator's own schedule from sigma_mid."""
    D = CountingDenoiser(ctx.model, n_samples=ctx.n)
    x = normal((ctx.n, ctx.d), gen, torch.float64, "cpu") * ctx.sigma_max
    smid = float(s["sigma_mid"])
    den = D(x, torch.full((ctx.n,), ctx.sigma_max, dtype=torch.float64))
    x = den + (smid / ctx.sigma_max) * (x - den)  # probability-flow Euler in its exact-for-a-point-mass (DDIM) form
    first = D.nfe
    x = _integrate_and_finish(ctx, D, x, smid, s, gen)
    parts = {"ddim_step": first, "integrator_and_tweedie": D.nfe - first}
    return x, {"full": D.nfe, "paper": D.nfe, "parts": parts}, None


def _run_restart(ctx, s, gen):
    """Control (ii): coarse KAR1 sample, noise up to sigma_restart, the integrator from there; no chain."""
    D = CountingDenoiser(ctx.model, n_samples=ctx.n)
    x = normal((ctx.n, ctx.d), gen, torch.float64, "cpu") * ctx.sigma_max
    x, _ = kar1(D, x, ctx.sigma_max, ctx.sigma_min, s["coarse_steps"])
    coarse = D.nfe
    sr = float(s["sigma_restart"])
    x = x + sr * normal(x.shape, gen, x.dtype, x.device)
    x = _integrate_and_finish(ctx, D, x, sr, s, gen)
    return x, {"full": D.nfe, "paper": D.nfe, "parts": {"coarse": coarse, "restart_and_tweedie": D.nfe - coarse}}, None


_DLG_KEYS = ("eta", "eta_rel", "n_skip", "integrator", "steps", "integrator_options", "steps_per_decade",
             "sigma_update", "x_update", "init_steps", "init_kick", "burn_in", "final_tweedie", "tweedie_sigma")


def _dlg_model_and_classifier(ctx, cfg):
    """The denoiser and classifier a DLG point needs, or a ValueError saying what is missing."""
    model = ctx.model
    if cfg.sigma_update == "exact" and not hasattr(model, "sigma_log_posterior"):
        model = _WithPosterior(model, ctx.oracle)
    if cfg.x_update == "mala" and not hasattr(model, "log_prob"):
        raise ValueError("MALA needs a log-density; a learned model has none (use ula)")
    clf = ctx.classifier if cfg.sigma_update.startswith("classifier") else None
    if cfg.sigma_update.startswith("classifier") and clf is None:
        raise ValueError(f"sigma_update {cfg.sigma_update!r} needs a trained classifier")
    return model, clf


def _run_dlg(ctx, s, seed):
    """DLG through :class:`~dmcmc_edu.core.sampler.DMCMCSampler`: n outputs from n / outputs_per_chain chains."""
    T = int(s["outputs_per_chain"])
    if ctx.n % T:
        raise ValueError(f"outputs_per_chain {T} must divide n = {ctx.n}")
    kw = {k: s[k] for k in _DLG_KEYS if k in s}
    cfg = DMCMCConfig(sigma_min=ctx.sigma_min, sigma_max=ctx.sigma_max, n_levels=ctx.n_levels, n_chains=ctx.n // T,
                      outputs_per_chain=T, seed=seed, **kw)
    model, clf = _dlg_model_and_classifier(ctx, cfg)
    beta = float(s.get("prior_tilt", 0.0))
    log_prior = -beta * torch.log(cfg.grid()) if beta else None
    res = DMCMCSampler(model, cfg, data_shape=(ctx.d,), classifier=clf, log_prior=log_prior, keep_trace=False,
                       integrators=integrator_table()).run()
    led = res.ledger.per_output()
    ledger = {"full": led["full"], "paper": led["paper"], "score_evals": led["score_evals"], "parts": led["parts"],
              "totals_in_rows": res.ledger.to_dict()["totals_in_rows"]}
    return res.samples, ledger, res


RUNNERS = {"noise": _run_noise, "schedule": _run_schedule, "restart": _run_restart}
"""The runners of the independent-output kinds: ``runner(ctx, settings, generator) -> (x, ledger, None)``."""


def _dlg_chain_metrics(ctx, settings, res) -> dict:
    chain = metrics.chain_metrics(ctx.mix, res.samples, res.chosen_sigma,
                                  res.samples.shape[0] // int(settings["outputs_per_chain"]))
    sig = res.chosen_sigma.double()
    chain["chosen_sigma_median"] = float(sig.median())
    chain["chosen_sigma_q90"] = float(sig.quantile(0.9))
    return chain


def run_point(ctx: LadderContext, settings: dict) -> dict:
    """Run one point and measure it: returns the result row (settings, seed, ledger, metrics, chain metrics).

    A point whose sampler fails, or whose outputs the metrics refuse (NaN or inf rows: a broken sample set has
    no score), is recorded with ``error`` (the reason) and without metrics; :mod:`.report` lists it as failed.
    """
    pid = point_id(settings)
    seed = point_seed(ctx.seed, pid)
    t0 = time.perf_counter()
    row = {"id": pid, "kind": settings["kind"], "integrator": settings["integrator"], "settings": settings,
           "seed": seed, "n": ctx.n, "tags": list(settings.get("tags", []))}
    try:
        if settings["kind"] == "dlg":
            x, ledger, res = _run_dlg(ctx, settings, seed)
            chain = _dlg_chain_metrics(ctx, settings, res)
        else:
            x, ledger, _ = RUNNERS[settings["kind"]](ctx, settings, torch.Generator().manual_seed(seed))
            chain = None
        m = metrics.evaluate(ctx.mix, x.detach().to(torch.float64), ctx.reference, ctx.ref_values,
                             mmd_bandwidth=ctx.mmd_bandwidth)
    except (FloatingPointError, ValueError, RuntimeError, torch.linalg.LinAlgError) as err:
        row.update(error=f"{type(err).__name__}: {err}", seconds=time.perf_counter() - t0)
        return row
    ess = chain["ess_ratio"] if chain else 1.0
    row.update(ledger=ledger, nfe=ledger["full"], nfe_paper=ledger["paper"], ess_ratio=ess,
               nfe_per_independent=ledger["full"] / max(ess, 1e-9), metrics=m,
               within_floor=metrics.within_floors(m, ctx.floors), chain=chain,
               seconds=time.perf_counter() - t0)
    return row


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


def target_stem(target: str, learned: bool = False, fast: bool = False, seed: int = 0) -> str:
    """File stem of a sweep's outputs: the preset name or the JSON file's stem, plus _learned / _fast / _seedS.

    Seed 0 (the default) adds nothing, so the files of the first replicate keep their names; a sweep with
    ``seed=S > 0`` is another replicate of the same plan (every point's seed and the reference set change, the
    classifier and the learned denoiser do not) and is written beside it as ``<stem>_seedS``.
    """
    name = Path(target).stem if str(target).lower().endswith(".json") else str(target)
    return name + ("_learned" if learned else "") + ("_fast" if fast else "") + (f"_seed{int(seed)}" if seed else "")


def train_classifier(mixture, grid, *, steps: int, seed: int = 0, batch_size: int = 256, progress: bool = False):
    """The ladder's MLP noise-level classifier (the paper's training, cosine rate); returns (classifier, KL).

    Its config records the target it was trained on (``target_sha256``, a content hash).
    """
    torch.manual_seed(seed)  # network initialisation
    clf = NoiseLevelClassifier(MLPClassifier(mixture.d, len(grid)), grid,
                               config={"steps": steps, "seed": seed, "batch_size": batch_size,
                                       "target_sha256": target_sha256(mixture.to_dict())})
    train_noise_level_classifier(clf, mixture.sample, steps=steps, batch_size=batch_size, lr_schedule="cosine",
                                 generator=torch.Generator().manual_seed(seed), progress=progress)
    kl = kl_to_exact(clf, mixture, n=2000, generator=torch.Generator().manual_seed(seed + 1))
    return clf, float(kl["kl"])


def _load_or_train_classifier(mix, grid, path: Path, steps: int, seed: int, progress: bool):
    """The classifier saved at ``path`` (it must be the one this sweep would train), else a newly trained one.

    The file is shared by the sweeps of one target in a folder (with and without ``--learned``); one trained
    for another grid, step count, seed or target is refused (:class:`~dmcmc_edu.runs.RunRefused`), never replaced.
    """
    if path.exists():
        clf = NoiseLevelClassifier.load(path)
        want = {"steps": steps, "seed": seed, "target_sha256": target_sha256(mix.to_dict())}
        diff = [f"{k}: {clf.config.get(k)!r} vs {v!r}" for k, v in want.items() if clf.config.get(k) != v]
        if clf.n_levels != len(grid) or not torch.allclose(clf.grid.double(), grid.double(), rtol=1e-9):
            diff.append("noise-level grid")
        if diff:
            raise RunRefused(f"{path} holds a classifier trained for another sweep ({'; '.join(diff)}, saved vs "
                             "now); it is not replaced -- choose another --out")
        kl = kl_to_exact(clf, mix, n=2000, generator=torch.Generator().manual_seed(seed + 1))
        return clf, float(kl["kl"]), "loaded"
    clf, kl = train_classifier(mix, grid, steps=steps, seed=seed, progress=progress)
    atomic_write(path, lambda tmp: clf.save(tmp))
    return clf, kl, "trained"


_NOTES = [
    "nfe = the full ledger per output (initialisation and burn-in amortised, classifier evaluations counted as one "
    "evaluation each); nfe_paper = the paper's accounting (Gibbs steps + integrator + Tweedie).",
    "nfe_per_independent = nfe / ess_ratio, ess_ratio = the smaller effective-sample-size ratio of the output "
    "component labels and of the output positions (1 for independent outputs).",
    "metrics against one exact reference set of n samples; floors: the 0.995 quantile of what pairs of fresh exact "
    "sets of the same size score (metrics.exact_floors, 200 pairs; 50 for --fast): one floor per target and n.",
    "'exact' sigma-update: draws from the analytic mixture's p(sigma | x) (an oracle; no evaluation counted).",
]
_LEARNED_NOTE = ("learned model: every score/denoiser evaluation uses the trained MLP; the 'exact' sigma-update "
                 "still uses the analytic mixture's posterior, and MALA is not available (no log-density).")


def _saved_sweep(path: Path, sweep: dict):
    """The result file of an earlier call with the same sweep settings (None if there is none)."""
    if not path.exists():
        return None
    saved = json.loads(path.read_text())
    if saved.get("meta", {}).get("sweep") != sweep:
        raise ValueError(f"{path} holds a sweep with other settings ({saved.get('meta', {}).get('sweep')}); "
                         f"this call asks for {sweep}: choose another --out")
    return saved


def _sweep_outputs(stem: str) -> tuple[str, ...]:
    """The result files of a sweep whose sha256 its record keeps (the figure is optional: ``--no-plot``)."""
    return f"{stem}.json", f"{stem}.csv", f"{stem}_findings.json", f"{stem}_findings.md"


def _sweep_run(out: Path, stem: str, target, mix, sweep: dict, classifier_steps: int) -> RunDirectory:
    """The sweep's run record ``OUT/<stem>.run.json``: a folder may hold several sweeps, each with its record.

    The fingerprint: the sweep's settings (the target by content, not by name), the classifier's training
    steps and the grid size; not the number of workers (results do not depend on it) nor ``--no-plot``.
    """
    settings = {k: v for k, v in sweep.items() if k != "target"} | {"classifier_steps": classifier_steps,
                                                                    "n_levels": 200}
    return RunDirectory(out, fingerprint("ladder", settings, target=mix.to_dict()), outputs=_sweep_outputs(stem),
                        record=f"{stem}.run.json", labels={"target": str(target)}, shared=True)


def _meta(ctx, mix, sweep, stem, command, target, workers, classifier, learned_info) -> dict:
    """The ``meta`` block of a result file: the sweep's settings, target, noise floors, classifier and versions."""
    return {"format": "dmcmc_edu.experiments.ladder/1", "sweep": sweep, "stem": stem, "command": command,
            "target": mix.to_dict() | {"spec": str(target)}, "d": mix.d, "K": mix.K,
            "sigma_min": ctx.sigma_min, "sigma_max": ctx.sigma_max, "n_levels": ctx.n_levels, "tau_min": ctx.tau_min,
            "paper_eta": paper_eta(ctx), "floors": ctx.floors, "ref_values": ctx.ref_values,
            "w2_solver": "pot" if metrics.have_pot() else "scipy", "workers": workers, "classifier": classifier,
            "learned": learned_info, "versions": versions(),
            "notes": _NOTES + ([_LEARNED_NOTE] if ctx.learned else [])}


def _write_reports(doc: dict, out: Path, stem: str, plot: bool) -> None:
    """The CSV table, the findings (JSON and Markdown) and, with ``plot``, the Fig. 3 figure of a finished sweep."""
    write_csv(doc["points"], out / f"{stem}.csv")
    findings = analyse(doc)
    write_json(out / f"{stem}_findings.json", _clean(findings), indent=1)
    atomic_write(out / f"{stem}_findings.md",
                 lambda tmp: Path(tmp).write_text(findings_markdown(findings, doc["meta"])))
    if plot:  # drawn here and written through atomic_write, like every other result file
        fig = plot_ladder(doc)
        atomic_write(out / f"{stem}_fig3.png", lambda tmp: fig.savefig(tmp, dpi=130, bbox_inches="tight",
                                                                       format="png"))
        plt.close(fig)


def refloor_sweep(out, stem: str, floors_file) -> dict:
    """A finished sweep read again against the exact floors of its target and size, without sampling anything.

    ``floors_file`` is a file of :func:`sweep_floors` (e.g. the one the sweeps over seeds use).  It must be for
    this sweep's target (by content), its n and its MMD kernel, else :class:`ValueError` in one line.  Every
    point's ``within_floor`` and the sweep's reports (CSV, findings, and the figure where there was one) are made
    again; ``meta["floors_before"]`` keeps the floors the sweep was first read with and ``meta["floors_file"]``
    names the new ones; the run record (where the sweep has one) is reopened and finished with the new outputs'
    hashes.  Returns the doc.
    """
    out = Path(out)
    path = out / f"{stem}.json"
    doc = json.loads(path.read_text())
    meta, saved = doc["meta"], json.loads(Path(floors_file).read_text())
    want, floors = saved["settings"], saved["floors"]
    mix = load_target(meta["sweep"]["target"])
    why = []
    if want["target_sha256"] != target_sha256(mix.to_dict()):
        why.append("another target")
    if int(want["n"]) != int(meta["sweep"]["n"]):
        why.append(f"n = {want['n']}, the sweep's is {meta['sweep']['n']}")
    if not math.isclose(float(want["mmd_bandwidth"]), float(meta["floors"]["mmd_bandwidth"]), rel_tol=1e-9):
        why.append(f"MMD bandwidth {want['mmd_bandwidth']:.6g}, the sweep's is {meta['floors']['mmd_bandwidth']:.6g}")
    if why:
        raise ValueError(f"{floors_file}: floors for {', '.join(why)}; they cannot be read against {path}")
    run = None  # a sweep made before run records (no <stem>.run.json) is read again without one
    if (out / f"{stem}.run.json").exists():
        run = _sweep_run(out, stem, meta["sweep"]["target"], mix, meta["sweep"], meta["classifier"]["steps"])
        if run.check() != "finished":
            raise RunRefused(f"{path}: the sweep is not finished; finish it before reading it against other floors")
        run.reopen()
    meta.setdefault("floors_before", meta["floors"])
    meta["floors"], meta["floors_file"] = floors, Path(floors_file).name
    meta["notes"] = [_NOTES[2] if n.startswith("metrics against one exact reference") else n for n in meta["notes"]]
    for p in doc["points"]:
        if p.get("metrics"):
            p["within_floor"] = metrics.within_floors(p["metrics"], floors)
    write_json(path, _clean(doc), indent=1)
    _write_reports(doc, out, stem, plot=(out / f"{stem}_fig3.png").exists())
    if run is not None:
        run.finish({"points": len(doc["points"]), "floors_file": Path(floors_file).name})
    return doc


def _sweep_points(ctx, todo, points, save, workers: int, desc: str, progress: bool) -> None:
    """Run the points of ``todo``, appending each row to ``points`` and saving after every one."""
    bar = tqdm(total=len(todo), desc=desc, disable=not progress)
    for row in _run_points(ctx, todo, workers):
        points.append(_clean(row))
        bar.update(1)
        bar.set_postfix_str(f"{row['kind']} {row['integrator']}")
        save()
    bar.close()


def run_ladder(target="ring", out="runs/ladder", *, fast: bool = False, learned: bool = False, n: int | None = None,
               seed: int = 0, progress: bool = True, plot: bool = True, integrators=None, command: str | None = None,
               classifier_steps: int | None = None, workers: int = 1) -> dict:
    """Run (or resume) a sweep and write ``OUT/<stem>.json``, ``.csv``, ``_fig3.png`` and ``_findings.{json,md}``.

    ``stem`` is the target's name plus ``_learned`` / ``_fast``.  Points already in the JSON file are skipped
    (resume); a file made with other sweep settings is refused.  ``workers > 1`` runs points in that many
    forked processes (one torch thread each); every point is seeded by its id, so the results do not depend on
    the number of workers.  Returns the result dict.
    """
    torch.set_num_threads(1)
    out = Path(out)
    stem, base = target_stem(target, learned, fast, seed), target_stem(target, fast=fast)
    mix = load_target(target)
    n = n or (500 if fast else 2000)
    sweep = {"target": str(target), "n": n, "seed": seed, "fast": fast, "learned": learned,
             "integrators": list(integrators) if integrators else None}
    path = out / f"{stem}.json"
    csteps = classifier_steps or (300 if fast else 3000)
    run = _sweep_run(out, stem, target, mix, sweep, csteps)
    if run.check() == "finished":  # this sweep is there, complete: read it back, write nothing
        return json.loads(path.read_text())
    run.start({"command": command, "sweep": sweep, "versions": versions()})
    saved = _saved_sweep(path, sweep)
    t_start = time.perf_counter()
    n_levels = 200
    grid = noise_level_grid(mix.default_sigma_min(), mix.default_sigma_max(), n_levels)
    # the classifier and the learned denoiser are trained once (seed 0) and shared by every replicate of a folder:
    # a replicate varies the sampling (point seeds, reference set), not the trained models
    clf, kl, how = _load_or_train_classifier(mix, grid, out / f"{base}_classifier.pt", csteps, 0, progress)
    model, learned_info = None, None
    if learned:
        model, learned_info = load_or_train_denoiser(mix, out / f"{base}_denoiser.pt", fast=fast, seed=0,
                                                     progress=progress)
    ctx = LadderContext(mix, n=n, seed=seed, model=model, classifier=clf, learned=learned, n_levels=n_levels,
                        floors=saved["meta"]["floors"] if saved else None,
                        ref_values=saved["meta"]["ref_values"] if saved else None,
                        floor_repeats=50 if fast else metrics.EXACT_FLOOR_REPEATS,
                        floors_file=out / f"{base}_floors_n{n}.json")
    meta = _meta(ctx, mix, sweep, stem, command, target, workers,
                 {"arch": "mlp", "steps": csteps, "kl_to_exact": kl, "source": how}, learned_info)
    points = saved["points"] if saved else []
    done = {p["id"] for p in points}
    plan = build_plan(ctx, fast=fast, integrators=integrators)
    doc = {"meta": meta, "points": points}

    def save():
        write_json(path, _clean(doc), indent=1)

    save()
    _sweep_points(ctx, [p for p in plan if point_id(p) not in done], points, save, workers, f"ladder {stem}", progress)
    order = {point_id(p): i for i, p in enumerate(plan)}
    points.sort(key=lambda p: order.get(p["id"], len(order)))
    meta["seconds_this_call"] = time.perf_counter() - t_start
    save()
    _write_reports(doc, out, stem, plot)
    run.finish({"points": len(points)})
    return doc


# ----------------------------------------------------------------------------- worker processes

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
    _WORKER_CTX = ctx
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield from pool.imap_unordered(_worker_run, todo)
    _WORKER_CTX = None
