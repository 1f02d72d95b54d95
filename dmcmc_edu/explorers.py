"""Live explorers for JupyterLab (ipywidgets): DLG on a 2-D mixture, and the integrators from any sigma_start.

Each explorer has a pure part that tests and notebooks call without widgets, and a thin widget part:

* **DLG explorer** -- :func:`compute_dlg` runs :class:`~dmcmc_edu.core.sampler.DMCMCSampler` with the chosen
  settings and records the chains; :func:`draw_dlg` draws the chains in (x, sigma), the outputs and their mode
  weights; :func:`dlg_report` prints mode TV, ESS, W2 and the NFE per output by both ledgers;
  :func:`dlg_explorer` puts sliders in front of them.
* **Integrator explorer** -- :func:`compute_integrator` runs one integrator of the registry from exact samples of
  p_sigma_start; :func:`draw_integrator` draws the trajectories in the plane and in (|x|, sigma);
  :func:`integrator_report` prints the counted NFE and W2 beside its noise floor; :func:`integrator_explorer`.

Every run is small and seeded from :class:`ExplorerSettings`, so one update takes well under a second on one core
and the same settings always give the same numbers.  This module needs the ``explorers`` extra (``ipywidgets``).
"""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass, field

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse

from dmcmc_edu.core.contract import CountingDenoiser
from dmcmc_edu.core.integrators import PAPER_INTEGRATORS
from dmcmc_edu.core.random import normal
from dmcmc_edu.core.sampler import DMCMCSampler
from dmcmc_edu.core.sigma_updates import SIGMA_UPDATES
from dmcmc_edu.core.tweedie import finish_with_tweedie
from dmcmc_edu.evaluation.diagnostics import chain_report
from dmcmc_edu.evaluation.metrics import mode_weight_tv, mode_weights, spread, w2, w2_noise_floor
from dmcmc_edu.registry import get_integrator, integrator_table
from dmcmc_edu.targets import ExactLevelClassifier, dlg_config, load_target

__all__ = ["ExplorerSettings", "DLGRun", "IntegratorRun", "compute_dlg", "draw_dlg", "dlg_report",
           "compute_integrator", "draw_integrator", "integrator_report", "figure_png", "Explorer", "dlg_explorer",
           "integrator_explorer", "DLG_DEFAULTS", "INTEGRATOR_DEFAULTS"]

# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class ExplorerSettings:
    """What stays fixed while the sliders move: the target, the sizes and the seeds.

    ``n_chains`` DLG chains (outputs = ``n_chains x outputs_per_chain``); ``n_samples`` integrator runs, of which
    ``n_paths`` are drawn; ``seed`` seeds the runs, ``reference_seed`` the exact samples that W2, mode TV and the
    noise floors compare against; ``lim`` the half-width of the drawn square; ``dpi`` of the widgets' images.
    """

    target: object = "ring"
    n_chains: int = 64
    n_samples: int = 512
    n_paths: int = 24
    seed: int = 0
    reference_seed: int = 1
    lim: float = 6.0
    dpi: int = 80

    def __post_init__(self):
        for name, lo in (("n_chains", 2), ("n_samples", 2), ("n_paths", 1), ("seed", 0), ("reference_seed", 0),
                         ("dpi", 20)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ValueError(f"ExplorerSettings.{name} must be an integer >= {lo}, got {v!r}")
        if not (isinstance(self.lim, (int, float)) and math.isfinite(self.lim) and self.lim > 0):
            raise ValueError(f"ExplorerSettings.lim must be a finite number > 0, got {self.lim!r}")

    def mixture(self):
        """The target as a :class:`~dmcmc_edu.targets.GaussianMixture` (a preset name, a JSON file or a mixture)."""
        mix = _load(self.target) if isinstance(self.target, str) else load_target(self.target)
        if mix.d != 2:
            raise ValueError(f"the explorers draw 2-D targets, got d={mix.d}")
        return mix


@functools.lru_cache(maxsize=8)
def _load(name: str):
    return load_target(name)


@functools.lru_cache(maxsize=32)
def _reference(mix, n: int, seed: int):
    """``n`` exact samples (the reference of W2 and mode TV), their mode TV and the W2 noise floor for size ``n``."""
    g = torch.Generator().manual_seed(seed)
    ref = mix.sample(n, g)
    exact_tv = mode_weight_tv(mix, mix.sample(n, g))
    return ref, exact_tv, w2_noise_floor(mix, n, g, repeats=3)


#: the DLG explorer's starting values (the toolkit's ring defaults of :func:`~dmcmc_edu.targets.dlg_config`, and
#: 4 outputs per chain so that the ESS has something to measure)
DLG_DEFAULTS = dict(eta=0.005, eta_rel=1.0, n_skip=1, sigma_update="exact", x_update="mala", steps=8,
                    outputs_per_chain=4)
#: the integrator explorer's starting values
INTEGRATOR_DEFAULTS = dict(integrator="kar1", steps=8, sigma_start=None)  # None: the target's sigma_max


# ----------------------------------------------------------------------------- DLG: compute, draw, report


@dataclass
class DLGRun:
    """One recorded DLG run.

    ``xs`` [R, C, 2] / ``xs_sigma`` [R, C]: the chain states after the initialisation, after every burn-in step and
    at the end of every output round; ``sigma_trace`` [S, C]: every chain's sigma after each of the S Gibbs steps
    (initial state first); ``n_burn``: Gibbs steps before the first output round.
    """

    settings: dict
    samples: torch.Tensor
    chosen_sigma: torch.Tensor
    xs: torch.Tensor
    xs_sigma: torch.Tensor
    sigma_trace: torch.Tensor
    n_burn: int
    nfe: dict
    metrics: dict
    weights: torch.Tensor = field(repr=False, default=None)
    target_weights: torch.Tensor = field(repr=False, default=None)
    error: str | None = None


def _dlg_sampler(mix, s: ExplorerSettings, c: dict) -> DMCMCSampler:
    cfg = dlg_config(mix, n_outputs=s.n_chains * c["outputs_per_chain"], outputs_per_chain=c["outputs_per_chain"],
                     eta=float(c["eta"]), eta_rel=float(c["eta_rel"]), n_skip=int(c["n_skip"]),
                     sigma_update=c["sigma_update"], x_update=c["x_update"], steps=int(c["steps"]), seed=s.seed)
    classifier = ExactLevelClassifier(mix, cfg.grid()) if c["sigma_update"].startswith("classifier") else None
    return DMCMCSampler(mix, cfg, data_shape=(mix.d,), classifier=classifier)


def _record_chains(sampler: DMCMCSampler):
    """Run a sampler round by round, keeping the chain states; returns ``(result, xs, xs_sigma, sigma_trace)``."""
    sampler.init_chains()
    xs, xsig = [sampler.state.x.clone()], [sampler.state.sigma.clone()]
    n_burn = sum(int(n) for n, _ in sampler.config.burn_in)
    for _ in range(n_burn):  # one Gibbs step at a time: the same draws as burn_in() in one go
        sampler.burn_in(max_steps=1)
        xs.append(sampler.state.x.clone())
        xsig.append(sampler.state.sigma.clone())
    burn_sig = list(xsig)
    outs, sigs = [], []
    for _ in range(sampler.config.outputs_per_chain):
        o, s0 = sampler.next_round()
        outs.append(o)
        sigs.append(s0)
        xs.append(sampler.state.x.clone())
        xsig.append(sampler.state.sigma.clone())
    trace = torch.stack(burn_sig + list(sampler.trace))
    return torch.cat(outs), torch.cat(sigs), torch.stack(xs), torch.stack(xsig), trace, n_burn


def compute_dlg(settings: ExplorerSettings | None = None, **controls) -> DLGRun:
    """Run DLG with ``controls`` (keys of :data:`DLG_DEFAULTS`) on ``settings``; no widgets.

    ``sigma_update`` is one of ``exact``, ``classifier-argmax``, ``classifier-sample``; the classifier variants use
    :class:`~dmcmc_edu.targets.ExactLevelClassifier` (the exact posterior, so nothing is trained; its evaluations
    count in the full ledger).  Chains that diverge (too large a step) give a run whose ``error`` says so.
    """
    s = settings or ExplorerSettings()
    unknown = set(controls) - set(DLG_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown DLG explorer setting(s) {sorted(unknown)}; known: {', '.join(DLG_DEFAULTS)}")
    c = {**DLG_DEFAULTS, **controls}
    if c["sigma_update"] not in SIGMA_UPDATES:
        raise ValueError(f"unknown sigma-update {c['sigma_update']!r}; known: {', '.join(SIGMA_UPDATES)}")
    mix = s.mixture()
    try:
        sampler = _dlg_sampler(mix, s, c)
        out, chosen, xs, xsig, trace, n_burn = _record_chains(sampler)
    except FloatingPointError as err:  # the chains diverged (too large a step): say so instead of a traceback
        empty = torch.zeros(0, mix.d, dtype=torch.float64)
        return DLGRun(c, empty, empty[:, 0], empty[None], empty[None, :, 0], empty[None, :, 0], 0, {}, {},
                      error=str(err))
    ref, exact_tv, floor = _reference(mix, len(out), s.reference_seed)
    per = sampler.ledger.per_output()
    rep = chain_report(_as_result(out, chosen, s.n_chains, c["outputs_per_chain"]), mix)
    metrics = {"n_outputs": len(out), "n_chains": s.n_chains, "mode_tv": mode_weight_tv(mix, out),
               "mode_tv_exact": exact_tv, "w2": w2(out, ref), "w2_floor": floor, "ess_component": rep["ess_component"],
               "ess_sigma": rep["ess_sigma"], "mode_switch_rate": rep["mode_switch_rate"],
               "sigma_max": float(sampler.grid[0]), "sigma_min": float(sampler.grid[-1]), "spread": spread(mix, out),
               "picked_sigma_median": float(chosen.median()), "picked_sigma_q90": float(chosen.quantile(0.9))}
    nfe = {"paper": per["paper"], "full": per["full"], **per["parts"]}
    return DLGRun(c, out, chosen, xs, xsig, trace, n_burn, nfe, metrics, mode_weights(mix, out),
                  mix.weights.to(torch.float64).cpu())


@dataclass
class _Result:  # what chain_report reads of a DMCMCResult
    samples: torch.Tensor
    chosen_sigma: torch.Tensor
    chain: torch.Tensor


def _as_result(out, chosen, n_chains: int, rounds: int) -> _Result:
    return _Result(out, chosen, torch.arange(n_chains).repeat(rounds))


def _outside(points: np.ndarray, lim: float) -> int:
    return int((np.abs(points) > lim).any(axis=-1).sum())


def _plane(ax, mix, lim: float, title: str) -> None:
    """Square axes over the plane with each mode of the target drawn as its 2-standard-deviation ellipse."""
    for w, h, ang, mu in _ellipses(mix):
        ax.add_patch(Ellipse(mu, w, h, angle=ang, fill=False, color="0.55", lw=0.8))
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_title(title, fontsize=9)


@functools.lru_cache(maxsize=8)
def _ellipses(mix) -> list:
    """(width, height, angle in degrees, centre) of each component's 2-standard-deviation ellipse."""
    out, covs = [], mix.covariances.to(torch.float64).cpu().numpy()
    for k in range(mix.K):
        lam, vec = np.linalg.eigh(covs[k])
        ang = math.degrees(math.atan2(vec[1, -1], vec[0, -1]))
        out.append((4 * math.sqrt(lam[-1]), 4 * math.sqrt(lam[0]), ang, tuple(mix.means[k].tolist())))
    return out


def _note_outside(ax, n_out: int, n_all: int, what: str) -> None:
    if n_out:
        ax.text(0.02, 0.02, f"{n_out} of {n_all} {what} outside the axes", transform=ax.transAxes, fontsize=7,
                color="C3", va="bottom")


def _draw_chain_plane(ax, cax, run: DLGRun, mix, s: ExplorerSettings, norm) -> None:
    xs, sig = run.xs.numpy(), run.xs_sigma.numpy()
    _plane(ax, mix, s.lim, "chain states in the plane\n(after init, each burn-in step, each round)")
    for c in range(min(3, xs.shape[1])):
        ax.plot(xs[:, c, 0], xs[:, c, 1], color="0.3", lw=0.6, alpha=0.8)
    sc = ax.scatter(xs[..., 0].ravel(), xs[..., 1].ravel(), c=sig.ravel(), s=5, cmap="viridis", norm=norm,
                    linewidths=0)
    ax.figure.colorbar(sc, cax=cax, label=r"$\sigma$ of the state (log scale)")
    _note_outside(ax, _outside(xs.reshape(-1, 2), s.lim), xs.shape[0] * xs.shape[1], "states")


def _draw_sigma_traces(ax, run: DLGRun, n_show: int = 6) -> None:
    t = run.sigma_trace.numpy()
    ax.axvspan(0, run.n_burn, color="0.9", label="initialisation + burn-in")
    for c in range(min(n_show, t.shape[1])):
        ax.plot(np.arange(t.shape[0]), t[:, c], lw=0.9)
    ax.set_yscale("log")
    ax.set_ylim(run.metrics["sigma_min"] * 0.8, run.metrics["sigma_max"] * 1.25)
    ax.set_xlabel("Gibbs step")
    ax.set_ylabel(r"$\sigma$")
    ax.set_title(f"noise level $\\sigma$ of {min(n_show, t.shape[1])} chains", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")


def _draw_weights(ax, run: DLGRun) -> None:
    k = np.arange(len(run.target_weights))
    ax.bar(k, run.weights.numpy(), color="C0", alpha=0.7, label="DLG outputs")
    ax.plot(k, run.target_weights.numpy(), "k_", ms=14, mew=2, label="target")
    ax.set_xticks(k)
    ax.set_xlabel("mode k")
    ax.set_ylabel("fraction of outputs")
    ax.set_title(f"mode weights (TV {run.metrics['mode_tv']:.3f})", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")


def draw_dlg(run: DLGRun, settings: ExplorerSettings | None = None) -> Figure:
    """Four panels: chain states in the plane coloured by sigma, sigma traces, the outputs, their mode weights."""
    s = settings or ExplorerSettings()
    mix = s.mixture()
    fig = Figure(figsize=(15, 3.9))
    # the plane's square sits at the left of a wider column, which leaves room for its colourbar and label
    axes = fig.subplots(1, 4, gridspec_kw={"width_ratios": [1.4, 1.1, 1, 1]})
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.13, top=0.86, wspace=0.3)
    axes[0].set_anchor("W")
    cax = axes[0].inset_axes([1.04, 0.0, 0.05, 1.0])
    if run.error:
        for ax in (*axes, cax):
            ax.set_axis_off()
        axes[0].text(0, 0.5, "no run: " + run.error[:200], fontsize=9, color="C3", wrap=True)
        return fig
    norm = LogNorm(run.metrics["sigma_min"], run.metrics["sigma_max"])
    _draw_chain_plane(axes[0], cax, run, mix, s, norm)
    _draw_sigma_traces(axes[1], run)
    _plane(axes[2], mix, s.lim, f"{run.metrics['n_outputs']} outputs (denoised)")
    o = run.samples.numpy()
    axes[2].scatter(o[:, 0], o[:, 1], s=4, color="C3", alpha=0.6, linewidths=0)
    _note_outside(axes[2], _outside(o, s.lim), len(o), "outputs")
    _draw_weights(axes[3], run)
    return fig


def dlg_report(run: DLGRun) -> str:
    """The run's numbers as plain sentences (rounded, so the text is the same on every run of the same settings)."""
    c = run.settings
    head = (f"DLG: eta {c['eta']:g}, eta_rel {c['eta_rel']:g}, n_skip {c['n_skip']}, sigma-update "
            f"{c['sigma_update']}, x-update {c['x_update']}, KAR1 {c['steps']} steps")
    if run.error:
        return head + "\nno outputs: " + run.error
    m, n = run.metrics, run.nfe
    switches = ("no mode switches to measure (one output per chain)" if math.isnan(m["mode_switch_rate"])
                else f"mode switches between consecutive outputs of a chain: {100 * m['mode_switch_rate']:.0f} %")
    return "\n".join([
        head + f"; {m['n_chains']} chains x {c['outputs_per_chain']} outputs = {m['n_outputs']} outputs",
        f"NFE per output, paper's ledger: {n['paper']:.1f} (Gibbs {n['gibbs']:.1f} + denoising {n['denoise']:.1f}"
        f" + Tweedie {n['tweedie']:.1f})",
        f"NFE per output, full ledger:    {n['full']:.1f} (+ initialisation and burn-in {n['init_amortised']:.1f}"
        f" + classifier {n['classifier'] + n['classifier_init_amortised']:.1f})",
        f"mode TV {m['mode_tv']:.3f} (exact samples of the same size: {m['mode_tv_exact']:.3f}); "
        f"W2 {m['w2']:.3f} (noise floor {m['w2_floor']:.3f})",
        f"spread {m['spread']:.2f} (1 = exact); denoising started from sigma: median {m['picked_sigma_median']:.3g}, "
        f"90 % below {m['picked_sigma_q90']:.3g}",
        f"ESS of the output's mode: {m['ess_component']:.0f} of {m['n_outputs']}; of log sigma: {m['ess_sigma']:.0f}"
        f"; {switches}",
    ])


# ----------------------------------------------------------------------------- integrators: compute, draw, report


@dataclass
class IntegratorRun:
    """One integrator run from exact samples of p_sigma_start: ``paths`` [S+1, n, 2] with their levels
    ``path_sigma`` [S+1, n] (the start first), the ``outputs`` [n, 2] after the final Tweedie step (if any), the
    counted ``nfe`` per sample and the metrics."""

    settings: dict
    start: torch.Tensor
    paths: torch.Tensor
    path_sigma: torch.Tensor
    outputs: torch.Tensor
    nfe: float
    tweedie: bool
    metrics: dict
    reference: torch.Tensor = field(repr=False, default=None)


def compute_integrator(settings: ExplorerSettings | None = None, **controls) -> IntegratorRun:
    """Run an integrator (keys of :data:`INTEGRATOR_DEFAULTS`) from ``x = x0 + sigma_start z``, x0 exact samples.

    That start is what a perfect DLG chain at ``sigma_start`` hands the integrator; at the target's sigma_max it
    is vanilla sampling from noise (the data's offset is negligible there).  Ends like the sampler: the Tweedie
    step at sigma_min after integrators that stop above 0.  NFE is counted by a
    :class:`~dmcmc_edu.core.contract.CountingDenoiser`.
    """
    s = settings or ExplorerSettings()
    unknown = set(controls) - set(INTEGRATOR_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown integrator explorer setting(s) {sorted(unknown)}; "
                         f"known: {', '.join(INTEGRATOR_DEFAULTS)}")
    c = {**INTEGRATOR_DEFAULTS, **controls}
    mix = s.mixture()
    sig_max, sig_min = mix.default_sigma_max(), mix.default_sigma_min()
    c["sigma_start"] = sig_max if c["sigma_start"] is None else float(c["sigma_start"])
    if not sig_min < c["sigma_start"] <= sig_max * (1 + 1e-9):
        raise ValueError(f"sigma_start must lie in ({sig_min:g}, {sig_max:g}], got {c['sigma_start']!r}")
    fn = get_integrator(c["integrator"])
    g = torch.Generator().manual_seed(s.seed)
    x0 = mix.sample(s.n_samples, g)
    start = x0 + c["sigma_start"] * normal(x0.shape, g, x0.dtype, x0.device)
    path, levels = [start.clone()], [torch.full((s.n_samples,), c["sigma_start"], dtype=torch.float64)]

    def record(d):
        path.append(d["x"].detach().clone())
        levels.append(torch.as_tensor(d["sigma"], dtype=torch.float64).expand(s.n_samples).clone())

    counter = CountingDenoiser(mix, n_samples=s.n_samples)
    out, info = fn(counter, start, c["sigma_start"], sig_min, int(c["steps"]), generator=g, callback=record)
    out, applied = finish_with_tweedie(counter, out, info.sigma_end, sig_min, "auto")
    ref, exact_tv, floor = _reference(mix, s.n_samples, s.reference_seed)
    metrics = {"n": s.n_samples, "w2": w2(out, ref), "w2_floor": floor, "mode_tv": mode_weight_tv(mix, out),
               "mode_tv_exact": exact_tv, "spread": spread(mix, out), "sigma_min": sig_min, "sigma_max": sig_max,
               "solver_steps": info.steps}
    return IntegratorRun(c, start, torch.stack(path), torch.stack(levels), out, float(counter.nfe), applied, metrics,
                         ref)


def draw_integrator(run: IntegratorRun, settings: ExplorerSettings | None = None) -> Figure:
    """Three panels: trajectories in the plane, the distance from the origin against sigma, outputs vs exact."""
    s = settings or ExplorerSettings()
    mix = s.mixture()
    fig = Figure(figsize=(13.5, 4.1))
    ax1, ax2, ax3 = fig.subplots(1, 3)
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.13, top=0.91, wspace=0.3)
    p = run.paths[:, : s.n_paths].numpy()
    _plane(ax1, mix, s.lim, f"{p.shape[1]} trajectories in the plane")
    for b in range(p.shape[1]):
        ax1.plot(p[:, b, 0], p[:, b, 1], ".-", color="C0", lw=0.7, ms=2.5, alpha=0.7)
    ax1.plot(p[0, :, 0], p[0, :, 1], "o", color="0.5", ms=3, label=r"start ($\sigma_{start}$)")
    ax1.plot(p[-1, :, 0], p[-1, :, 1], "o", color="C3", ms=3, label="end of the integrator")
    ax1.legend(fontsize=7, loc="upper right")
    _note_outside(ax1, _outside(p[0], s.lim), p.shape[1], "start points")
    r, lv = np.linalg.norm(p, axis=-1), run.path_sigma[:, : s.n_paths].numpy()
    radius = float(mix.means.norm(dim=1).max())
    for b in range(p.shape[1]):
        ax2.plot(lv[:, b], r[:, b], ".-", color="C0", lw=0.7, ms=2.5, alpha=0.7)
    ax2.axhline(radius, color="k", ls="--", lw=0.8, label=f"ring radius {radius:g}")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlim(run.settings["sigma_start"] * 1.5, run.metrics["sigma_min"] / 1.5)  # time runs left to right
    ax2.set_xlabel(r"$\sigma$ along the path (decreasing)")
    ax2.set_ylabel("distance from the origin |x|")
    ax2.set_title("trajectories in (|x|, $\\sigma$)", fontsize=9)
    ax2.legend(fontsize=7, loc="lower left")
    m, o = run.metrics, run.outputs.numpy()
    _plane(ax3, mix, s.lim, f"outputs: W2 {m['w2']:.3f} (noise floor {m['w2_floor']:.3f})")
    ax3.scatter(run.reference[:, 0], run.reference[:, 1], s=4, color="0.5", alpha=0.5, linewidths=0,
                label="exact samples")
    ax3.scatter(o[:, 0], o[:, 1], s=4, color="C3", alpha=0.7, linewidths=0, label=f"{len(o)} outputs")
    ax3.legend(fontsize=7, loc="upper right", markerscale=2)
    _note_outside(ax3, _outside(o, s.lim), len(o), "outputs")
    return fig


def integrator_report(run: IntegratorRun) -> str:
    """The run's numbers as plain sentences (rounded)."""
    c, m = run.settings, run.metrics
    steps = f"{c['steps']} steps" if c["integrator"] != "rk45" else f"adaptive ({m['solver_steps']} accepted steps)"
    return "\n".join([
        f"{c['integrator']}, {steps}, from sigma_start {c['sigma_start']:.3g} (exact samples of p_sigma_start) "
        f"to sigma_min {m['sigma_min']:g}" + ("; then the Tweedie step" if run.tweedie else ""),
        f"NFE per sample (counted): {run.nfe:g}",
        f"W2 to {m['n']} exact samples: {m['w2']:.3f} (noise floor {m['w2_floor']:.3f}: W2 between two exact sets "
        f"of {m['n']})",
        f"mode TV {m['mode_tv']:.3f} (exact samples of the same size: {m['mode_tv_exact']:.3f}); "
        f"spread {m['spread']:.2f} (1 = exact)",
    ])


# ----------------------------------------------------------------------------- widgets


def figure_png(fig: Figure, dpi: int = 80) -> bytes:
    """PNG bytes of a figure (for an ``ipywidgets.Image``)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


class Explorer(widgets.VBox):
    """A column of controls, the figure (an ``Image``) and the numbers (``<pre>`` text); :meth:`update` redraws.

    ``controls`` maps setting names to their widgets; ``compute``/``draw``/``report`` are the pure parts.
    """

    def __init__(self, controls: dict, compute, draw, report, settings: ExplorerSettings, title: str, kind: str):
        self.controls, self.settings, self.kind = controls, settings, kind
        self._compute, self._draw, self._report = compute, draw, report
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.numbers = widgets.HTML()
        self.last_run = None
        rows = [widgets.HBox(list(controls.values())[i:i + 3]) for i in range(0, len(controls), 3)]
        super().__init__([widgets.HTML(f"<b>{title}</b>"), *rows, self.image, self.numbers])
        self.add_class("dmcmc-explorer")
        for w in controls.values():
            w.observe(lambda _change: self.update(), names="value")
        self.update()

    def __repr__(self) -> str:  # what a viewer without widgets shows in place of the explorer
        return f"{self.kind} explorer (a live widget: run the notebook in JupyterLab to use it)"

    def values(self) -> dict:
        """The controls' current values, by setting name."""
        return {k: w.value for k, w in self.controls.items()}

    def update(self) -> None:
        """Recompute with the controls' values, redraw the image and the numbers.

        An error of the run is shown in place of the numbers (a widget callback's traceback would go to the log).
        """
        try:
            run = self._compute(self.settings, **self.values())
            png = figure_png(self._draw(run, self.settings), self.settings.dpi)
        except (ValueError, FloatingPointError, RuntimeError) as err:
            self._show(f"error: {err}")
            return
        self.last_run = run
        self.image.value = png
        self._show(self._report(run))

    def _show(self, text: str) -> None:
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        self.numbers.value = f"<pre class='dmcmc-numbers'>{text}</pre>"


def _slider(description: str, options, value):
    opts = [(f"{v:g}", v) if isinstance(v, (int, float)) else v for v in options]
    return widgets.SelectionSlider(options=opts, value=value, description=description, continuous_update=False,
                                   style={"description_width": "initial"}, layout=widgets.Layout(width="330px"))


def _dropdown(description: str, options, value):
    return widgets.Dropdown(options=list(options), value=value, description=description,
                            style={"description_width": "initial"}, layout=widgets.Layout(width="330px"))


def dlg_explorer(settings: ExplorerSettings | None = None, **start) -> Explorer:
    """The DLG explorer: sliders for eta, eta_rel, n_skip, denoising steps and outputs per chain, menus for the
    sigma-update and the x-update; shows :func:`draw_dlg` and :func:`dlg_report` (``start`` overrides the
    starting values of :data:`DLG_DEFAULTS`)."""
    s = settings or ExplorerSettings()
    v = {**DLG_DEFAULTS, **start}
    controls = {
        "eta": _slider("eta (step size)", sorted({1e-4, 3e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, v["eta"]}),
                       v["eta"]),
        "eta_rel": _slider("eta_rel (x sigma^2)", sorted({0.0, 0.1, 0.3, 1.0, 2.0, v["eta_rel"]}), v["eta_rel"]),
        "n_skip": _slider("n_skip (Gibbs steps per output)", sorted({1, 2, 3, 5, 10, v["n_skip"]}), v["n_skip"]),
        "sigma_update": _dropdown("sigma-update", SIGMA_UPDATES, v["sigma_update"]),
        "x_update": _dropdown("x-update", ["ula", "mala"], v["x_update"]),
        "steps": _slider("denoising steps (KAR1)", sorted({1, 2, 3, 4, 6, 8, 12, 16, v["steps"]}), v["steps"]),
        "outputs_per_chain": _slider("outputs per chain", sorted({1, 2, 4, 6, 8, v["outputs_per_chain"]}),
                                     v["outputs_per_chain"]),
    }
    return Explorer(controls, compute_dlg, draw_dlg, dlg_report, s,
                    f"Denoising Langevin Gibbs on the {_name(s)}: {s.n_chains} chains, seed {s.seed}", "DLG")


def integrator_explorer(settings: ExplorerSettings | None = None, **start) -> Explorer:
    """The integrator explorer: a menu of every registered integrator (the paper's six first), sliders for the
    steps and sigma_start; shows :func:`draw_integrator` and :func:`integrator_report`."""
    s = settings or ExplorerSettings()
    mix = s.mixture()
    v = {**INTEGRATOR_DEFAULTS, **start}
    sig_max = mix.default_sigma_max()
    v["sigma_start"] = sig_max if v["sigma_start"] is None else float(v["sigma_start"])
    names = list(PAPER_INTEGRATORS) + [k for k in integrator_table() if k not in PAPER_INTEGRATORS]
    starts = sorted({0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 40.0, sig_max, v["sigma_start"]})
    controls = {
        "integrator": _dropdown("integrator", names, v["integrator"]),
        "steps": _slider("steps", sorted({1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128, v["steps"]}), v["steps"]),
        "sigma_start": _slider("sigma_start", [(f"{x:.3g}", x) for x in starts if x > mix.default_sigma_min()],
                               v["sigma_start"]),
    }
    return Explorer(controls, compute_integrator, draw_integrator, integrator_report, s,
                    f"Integrators on the {_name(s)}: {s.n_samples} samples, seed {s.seed}", "Integrator")


def _name(s: ExplorerSettings) -> str:
    return s.target if isinstance(s.target, str) else getattr(s.target, "name", "target")

