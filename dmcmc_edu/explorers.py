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
import time
from dataclasses import dataclass, field

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse
from matplotlib.ticker import FuncFormatter

from dmcmc_edu.core.contract import CountingDenoiser
from dmcmc_edu.core.integrators import PAPER_INTEGRATORS
from dmcmc_edu.core.random import normal
from dmcmc_edu.core.sampler import DMCMCSampler
from dmcmc_edu.core.sigma_updates import SIGMA_UPDATES
from dmcmc_edu.core.tweedie import finish_with_tweedie
from dmcmc_edu.evaluation.diagnostics import chain_report
from dmcmc_edu.evaluation.metrics import mode_weight_tv, mode_weights, spread, w2, w2_noise_floor
from dmcmc_edu.registry import get_integrator, integrator_table
from dmcmc_edu.targets import ExactLevelClassifier, GaussianMixture, SpectralMixture, dlg_config, load_target

__all__ = ["ExplorerSettings", "DLGRun", "IntegratorRun", "compute_dlg", "draw_dlg", "dlg_report",
           "DLGFigure", "IntegratorFigure", "compute_integrator", "draw_integrator", "integrator_report", "figure_png",
           "Explorer",
           "dlg_explorer", "integrator_explorer", "DLG_DEFAULTS", "INTEGRATOR_DEFAULTS"]

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
    # a plain mixture is evaluated in its components' eigenbases: the same model to rounding, and the exact
    # sigma-posterior over the whole grid (the heaviest part of a redraw) about 3x faster than the generic
    # per-level evaluation; a subclass (methods of its own) is used as given
    model = SpectralMixture(mix) if type(mix) is GaussianMixture else mix
    classifier = ExactLevelClassifier(model, cfg.grid()) if c["sigma_update"].startswith("classifier") else None
    return DMCMCSampler(model, cfg, data_shape=(mix.d,), classifier=classifier)


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


#: font sizes of the explorers' figures (points; the images are drawn at ``ExplorerSettings.dpi`` and shown at about
#: their pixel width, 1,160 px at the default 80 dpi: a notebook's output width on a laptop screen)
FONT = {"title": 11, "label": 10.5, "tick": 9.5, "legend": 9, "note": 9}


#: tick labels of the log axes as plain numbers (0.01, 0.1, 1, 10): readable, and cheap to draw again
_PLAIN = FuncFormatter(lambda v, _pos: f"{v:g}")


def _style(ax) -> None:
    ax.tick_params(labelsize=FONT["tick"])
    ax.xaxis.label.set_size(FONT["label"])
    ax.yaxis.label.set_size(FONT["label"])


def _plane(ax, mix, lim: float, title: str) -> None:
    """Square axes over the plane with each mode of the target drawn as its 2-standard-deviation ellipse."""
    for w, h, ang, mu in _ellipses(mix):
        ax.add_patch(Ellipse(mu, w, h, angle=ang, fill=False, color="0.55", lw=0.8))
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_title(title, fontsize=FONT["title"])
    _style(ax)


@functools.lru_cache(maxsize=8)
def _ellipses(mix) -> list:
    """(width, height, angle in degrees, centre) of each component's 2-standard-deviation ellipse."""
    out, covs = [], mix.covariances.to(torch.float64).cpu().numpy()
    for k in range(mix.K):
        lam, vec = np.linalg.eigh(covs[k])
        ang = math.degrees(math.atan2(vec[1, -1], vec[0, -1]))
        out.append((4 * math.sqrt(lam[-1]), 4 * math.sqrt(lam[0]), ang, tuple(mix.means[k].tolist())))
    return out


def _note(ax):
    """An empty note at the lower left of ``ax`` (set by :func:`_set_outside`)."""
    return ax.text(0.02, 0.02, "", transform=ax.transAxes, fontsize=FONT["note"], color="C3", va="bottom")


def _set_outside(note, n_out: int, n_all: int, what: str) -> None:
    note.set_text(f"{n_out} of {n_all} {what} outside the axes" if n_out else "")


def _note_outside(ax, n_out: int, n_all: int, what: str) -> None:
    _set_outside(_note(ax), n_out, n_all, what)


class DLGFigure:
    """The DLG explorer's figure, built once; :meth:`update` moves its artists to a new :class:`DLGRun`.

    Four panels: the chain states in the plane coloured by sigma (three chains' paths drawn), the sigma traces of
    six chains, the outputs, their mode weights against the target's.  What does not depend on the run (the axes,
    the target's ellipses, the colourbar, the labels) is drawn once; an update only sets the data of the scatters,
    lines and bars and the titles, which makes a redraw several times cheaper than a new figure (no axes, ticks
    or text layouts to build).  A run with an ``error`` hides the panels and shows the error.
    """

    N_PATHS, N_TRACES = 3, 6

    def __init__(self, settings: ExplorerSettings | None = None):
        s = self.settings = settings or ExplorerSettings()
        mix = self.mix = s.mixture()
        fig = self.figure = Figure(figsize=(14.5, 4.0))
        # the plane's square sits at the left of a wider column, which leaves room for its colourbar and label
        axes = self.axes = fig.subplots(1, 4, gridspec_kw={"width_ratios": [1.4, 1.1, 1, 1]})
        fig.subplots_adjust(left=0.045, right=0.99, bottom=0.14, top=0.85, wspace=0.36)
        ax0, ax1, ax2, ax3 = axes
        ax0.set_anchor("W")
        cax = self.cax = ax0.inset_axes([1.04, 0.0, 0.05, 1.0])
        _plane(ax0, mix, s.lim, "chain states in the plane\n(after init, each burn-in step, each round)")
        empty = np.zeros((0, 2))
        self.paths = [ax0.plot([], [], color="0.3", lw=0.6, alpha=0.8)[0] for _ in range(self.N_PATHS)]
        self.norm = LogNorm(0.01, 80.0)
        self.states = ax0.scatter(empty[:, 0], empty[:, 1], c=np.zeros(0), s=6, cmap="viridis", norm=self.norm,
                                  linewidths=0)
        self.colorbar = fig.colorbar(self.states, cax=cax)
        self.colorbar.set_label(r"$\sigma$ of the state", size=FONT["label"], labelpad=1)
        cax.tick_params(labelsize=FONT["tick"])
        self.colorbar.formatter = _PLAIN  # plain "0.1" labels: no mathtext to lay out on every redraw
        self.states_note = _note(ax0)

        self.burn = ax1.axvspan(0, 1, color="0.9", label="initialisation + burn-in")
        self.traces = [ax1.plot([], [], lw=1.0, color=f"C{c}")[0] for c in range(self.N_TRACES)]
        ax1.set_yscale("log")
        ax1.yaxis.set_major_formatter(_PLAIN)
        ax1.set_xlabel("Gibbs step")
        ax1.set_ylabel(r"$\sigma$")
        ax1.set_title(r"noise level $\sigma$ of the chains", fontsize=FONT["title"])
        ax1.legend(fontsize=FONT["legend"], loc="upper right")
        _style(ax1)

        _plane(ax2, mix, s.lim, "outputs (denoised)")
        self.outputs = ax2.scatter(empty[:, 0], empty[:, 1], s=5, color="C3", alpha=0.6, linewidths=0)
        self.outputs_note = _note(ax2)

        k = np.arange(mix.K)
        self.bars = ax3.bar(k, np.zeros(mix.K), color="C0", alpha=0.7, label="DLG outputs")
        self.target = ax3.plot(k, mix.weights.to(torch.float64).cpu().numpy(), "k_", ms=14, mew=2,
                               label="target")[0]
        ax3.set_xticks(k)
        ax3.set_xlabel("mode k")
        ax3.set_ylabel("fraction of outputs")
        ax3.set_title("mode weights", fontsize=FONT["title"])
        ax3.legend(fontsize=FONT["legend"], loc="upper left")
        _style(ax3)
        self.error = fig.text(0.02, 0.5, "", fontsize=FONT["title"], color="C3", wrap=True, visible=False)

    def update(self, run: DLGRun) -> Figure:
        """Show ``run`` (the same figure, its artists updated); returns the figure."""
        s, ok = self.settings, not run.error
        for ax in (*self.axes, self.cax):
            ax.set_visible(ok)
        self.error.set_visible(not ok)
        if not ok:
            self.error.set_text("no run: " + run.error[:200])
            return self.figure
        m = run.metrics
        self.norm.vmin, self.norm.vmax = m["sigma_min"], m["sigma_max"]  # the colourbar follows the norm
        xs, sig = run.xs.numpy(), run.xs_sigma.numpy()
        for c, line in enumerate(self.paths):
            line.set_data(xs[:, c, 0], xs[:, c, 1]) if c < xs.shape[1] else line.set_data([], [])
        self.states.set_offsets(xs.reshape(-1, 2))
        self.states.set_array(sig.ravel())
        _set_outside(self.states_note, _outside(xs.reshape(-1, 2), s.lim), xs.shape[0] * xs.shape[1], "states")

        t = run.sigma_trace.numpy()
        steps = np.arange(t.shape[0])
        for c, line in enumerate(self.traces):
            line.set_data(steps, t[:, c]) if c < t.shape[1] else line.set_data([], [])
        self.burn.set_x(0)
        self.burn.set_width(run.n_burn)
        ax1 = self.axes[1]
        ax1.set_xlim(-0.05 * max(1, t.shape[0] - 1), 1.05 * max(1, t.shape[0] - 1))
        ax1.set_ylim(m["sigma_min"] * 0.8, m["sigma_max"] * 1.25)
        ax1.set_title(f"noise level $\\sigma$ of {min(self.N_TRACES, t.shape[1])} chains", fontsize=FONT["title"])

        o = run.samples.numpy()
        self.outputs.set_offsets(o)
        self.axes[2].set_title(f"{m['n_outputs']} outputs (denoised)", fontsize=FONT["title"])
        _set_outside(self.outputs_note, _outside(o, s.lim), len(o), "outputs")

        w = run.weights.numpy()
        for bar, h in zip(self.bars, w):
            bar.set_height(h)
        self.target.set_ydata(run.target_weights.numpy())
        self.axes[3].set_ylim(0, 1.12 * max(float(w.max()), float(run.target_weights.max())))
        self.axes[3].set_title(f"mode weights (TV {m['mode_tv']:.3f})", fontsize=FONT["title"])
        return self.figure


def draw_dlg(run: DLGRun, settings: ExplorerSettings | None = None) -> Figure:
    """Four panels: chain states in the plane coloured by sigma, sigma traces, the outputs, their mode weights.

    A new figure each call (:class:`DLGFigure`; the explorer keeps one and updates it).
    """
    return DLGFigure(settings).update(run)


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


class IntegratorFigure:
    """The integrator explorer's figure, built once; :meth:`update` moves its artists to a new
    :class:`IntegratorRun` (as :class:`DLGFigure`).

    Three panels: ``n_paths`` trajectories in the plane, their distance from the origin against sigma, the outputs
    against exact samples.
    """

    def __init__(self, settings: ExplorerSettings | None = None):
        s = self.settings = settings or ExplorerSettings()
        mix = s.mixture()
        fig = self.figure = Figure(figsize=(14.5, 4.3))
        ax1, ax2, ax3 = self.axes = fig.subplots(1, 3)
        fig.subplots_adjust(left=0.05, right=0.99, bottom=0.14, top=0.91, wspace=0.3)
        _plane(ax1, mix, s.lim, "trajectories in the plane")
        self.paths = [ax1.plot([], [], ".-", color="C0", lw=0.7, ms=2.5, alpha=0.7)[0] for _ in range(s.n_paths)]
        self.starts = ax1.plot([], [], "o", color="0.5", ms=3, label=r"start ($\sigma_{start}$)")[0]
        self.ends = ax1.plot([], [], "o", color="C3", ms=3, label="end of the integrator")[0]
        ax1.legend(fontsize=FONT["legend"], loc="upper right")
        self.start_note = _note(ax1)
        self.radii = [ax2.plot([], [], ".-", color="C0", lw=0.7, ms=2.5, alpha=0.7)[0] for _ in range(s.n_paths)]
        radius = float(mix.means.norm(dim=1).max())
        ax2.axhline(radius, color="k", ls="--", lw=0.8, label=f"ring radius {radius:g}")
        ax2.set_xscale("log")
        ax2.set_yscale("log")
        ax2.yaxis.set_major_formatter(_PLAIN)
        ax2.set_xlabel(r"$\sigma$ along the path (decreasing)")
        ax2.set_ylabel("distance from the origin |x|")
        ax2.set_title("trajectories in (|x|, $\\sigma$)", fontsize=FONT["title"])
        ax2.legend(fontsize=FONT["legend"], loc="lower left")
        _style(ax2)
        _plane(ax3, mix, s.lim, "outputs")
        self.reference = ax3.scatter(np.zeros(0), np.zeros(0), s=4, color="0.5", alpha=0.5, linewidths=0,
                                     label="exact samples")
        self.outputs = ax3.scatter(np.zeros(0), np.zeros(0), s=4, color="C3", alpha=0.7, linewidths=0,
                                   label=f"{s.n_samples} outputs")
        ax3.legend(fontsize=FONT["legend"], loc="upper right", markerscale=2)
        self.output_note = _note(ax3)

    def update(self, run: IntegratorRun) -> Figure:
        """Show ``run`` (the same figure, its artists updated); returns the figure."""
        s = self.settings
        ax1, ax2, ax3 = self.axes
        p = run.paths[:, : s.n_paths].numpy()
        ax1.set_title(f"{p.shape[1]} trajectories in the plane", fontsize=FONT["title"])
        r, lv = np.linalg.norm(p, axis=-1), run.path_sigma[:, : s.n_paths].numpy()
        for b, (line, rline) in enumerate(zip(self.paths, self.radii)):
            if b < p.shape[1]:
                line.set_data(p[:, b, 0], p[:, b, 1])
                rline.set_data(lv[:, b], r[:, b])
            else:
                line.set_data([], [])
                rline.set_data([], [])
        self.starts.set_data(p[0, :, 0], p[0, :, 1])
        self.ends.set_data(p[-1, :, 0], p[-1, :, 1])
        _set_outside(self.start_note, _outside(p[0], s.lim), p.shape[1], "start points")
        ax2.relim()
        ax2.autoscale_view(scalex=False)
        ax2.set_xlim(run.settings["sigma_start"] * 1.5, run.metrics["sigma_min"] / 1.5)  # time runs left to right
        m, o = run.metrics, run.outputs.numpy()
        ax3.set_title(f"outputs: W2 {m['w2']:.3f} (noise floor {m['w2_floor']:.3f})", fontsize=FONT["title"])
        self.reference.set_offsets(run.reference.numpy())
        self.outputs.set_offsets(o)
        _set_outside(self.output_note, _outside(o, s.lim), len(o), "outputs")
        return self.figure


def draw_integrator(run: IntegratorRun, settings: ExplorerSettings | None = None) -> Figure:
    """Three panels: trajectories in the plane, the distance from the origin against sigma, outputs vs exact.

    A new figure each call (:class:`IntegratorFigure`; the explorer keeps one and updates it).
    """
    return IntegratorFigure(settings).update(run)


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
    """PNG bytes of a figure (for an ``ipywidgets.Image``; fast zlib level 1: the bytes go to a local browser)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, pil_kwargs={"compress_level": 1})
    return buf.getvalue()


#: the explorers' stylesheet: a stale figure is greyed while the next one is computed
_CSS = ("<style>.dmcmc-explorer .dmcmc-stale {opacity: 0.45; filter: grayscale(60%);}"
        " .dmcmc-explorer .dmcmc-status {font-size: 0.9em; color: #555;}"
        " .dmcmc-explorer .dmcmc-status b {color: #b35900;}</style>")


class Explorer(widgets.VBox):
    """A column of controls, the figure (an ``Image``) and the numbers (``<pre>`` text); :meth:`update` redraws.

    ``controls`` maps setting names to their widgets; ``compute``/``draw``/``report`` are the pure parts.  With
    ``figure`` (an object whose ``update(run)`` returns a :class:`~matplotlib.figure.Figure`, e.g.
    :class:`DLGFigure`) every redraw updates that one figure instead of calling ``draw`` for a new one.  While an
    update computes, the image is greyed (CSS class ``dmcmc-stale``) and the status line says "updating..."; then
    it says how long the update took.  :attr:`last_timings` holds the seconds of the last update's phases
    (``compute``, ``draw``, ``png``, ``total``) and ``cached``.  The last ``cache_size`` updates are kept (run,
    image, numbers; the runs are seeded, so the same controls give the same run): going back to controls seen
    before redraws at once.
    """

    def __init__(self, controls: dict, compute, draw, report, settings: ExplorerSettings, title: str, kind: str,
                 figure=None, cache_size: int = 32):
        self.controls, self.settings, self.kind = controls, settings, kind
        self.cache_size, self._cache = int(cache_size), {}
        self._compute, self._draw, self._report, self._figure = compute, draw, report, figure
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.numbers = widgets.HTML()
        self.status = widgets.HTML()
        self.status.add_class("dmcmc-status")
        self.last_run, self.last_timings = None, {}
        rows = [widgets.HBox(list(controls.values())[i:i + 3]) for i in range(0, len(controls), 3)]
        super().__init__([widgets.HTML(_CSS + f"<b>{title}</b>"), *rows, self.status, self.image, self.numbers])
        self.add_class("dmcmc-explorer")
        for w in controls.values():
            w.observe(lambda _change: self.update(), names="value")
        self.update()

    def __repr__(self) -> str:  # what a viewer without widgets shows in place of the explorer
        return f"{self.kind} explorer (a live widget: run the notebook in JupyterLab to use it)"

    def values(self) -> dict:
        """The controls' current values, by setting name."""
        return {k: w.value for k, w in self.controls.items()}

    def render(self, run) -> Figure:
        """The figure of ``run``: the explorer's own figure updated, or a new one from ``draw``."""
        return self._figure.update(run) if self._figure is not None else self._draw(run, self.settings)

    def update(self) -> None:
        """Recompute with the controls' values, redraw the image and the numbers.

        The widget messages that grey the image and set "updating..." leave the kernel before the computation
        starts, so the browser shows them at once.  An error of the run is shown in place of the numbers (a
        widget callback's traceback would go to the log).
        """
        t0 = time.perf_counter()
        key = tuple(sorted(self.values().items()))
        if self.cache_size > 0 and key in self._cache:  # controls seen before: the same seeded run, image, numbers
            self.last_run, self.image.value, self.numbers.value = self._cache[key]
            self._cache[key] = self._cache.pop(key)  # most recently used last
            self.last_timings = {"compute": 0.0, "draw": 0.0, "png": 0.0, "total": time.perf_counter() - t0,
                                 "cached": True}
            self.status.value = "updated (seen before)"
            return
        self.image.add_class("dmcmc-stale")
        self.status.value = "<b>updating...</b>"
        try:
            run = self._compute(self.settings, **self.values())
            t1 = time.perf_counter()
            fig = self.render(run)
            t2 = time.perf_counter()
            png = figure_png(fig, self.settings.dpi)
        except (ValueError, FloatingPointError, RuntimeError) as err:
            self.image.remove_class("dmcmc-stale")
            self.status.value = ""
            self._show(f"error: {err}")
            return
        t3 = time.perf_counter()
        self.last_run = run
        self.image.value = png
        self._show(self._report(run))
        self.image.remove_class("dmcmc-stale")
        if self.cache_size > 0:
            self._cache[key] = (run, png, self.numbers.value)
            while len(self._cache) > self.cache_size:
                self._cache.pop(next(iter(self._cache)))
        self.last_timings = {"compute": t1 - t0, "draw": t2 - t1, "png": t3 - t2, "total": time.perf_counter() - t0,
                             "cached": False}
        self.status.value = f"updated in {self.last_timings['total']:.2f} s"

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
                    f"Denoising Langevin Gibbs on the {_name(s)}: {s.n_chains} chains, seed {s.seed}", "DLG",
                    figure=DLGFigure(s))


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
                    f"Integrators on the {_name(s)}: {s.n_samples} samples, seed {s.seed}", "Integrator",
                    figure=IntegratorFigure(s))


def _name(s: ExplorerSettings) -> str:
    return s.target if isinstance(s.target, str) else getattr(s.target, "name", "target")

