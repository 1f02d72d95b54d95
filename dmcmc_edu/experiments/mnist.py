"""The MNIST rung: its noise range, the shipped models, and the two ways of sampling digits.

The data and the weights folder are read by :mod:`dmcmc_edu.datasets`.

Noise range
-----------
:data:`SIGMA_MIN` ``= 0.01`` is the paper's CIFAR10 value: at 0.01 (2.6 grey
levels of 255) the noise is invisible.

:data:`SIGMA_MAX` follows technique 1 of Song & Ermon (2020, "Improved
techniques for training score-based generative models"): sigma_max should be
about the largest Euclidean distance between two training images, so that
the widest noise level mixes every pair of images and a chain started at
``sigma_max * z`` can reach every mode.  Measured with
:func:`dmcmc_edu.datasets.max_pairwise_distance` on the images in ``[0, 1]`` (784 dimensions),
exactly over all pairs: the largest distance is 16.00 over the first 10,000
training images and 16.88 over all 60,000 (median 10.2 over the pairs of one block;
the full computation takes about 3 minutes on one core).  We round up to
``SIGMA_MAX = 20``, a margin for test images and for chains that overshoot.
For comparison, the paper uses 50 for CIFAR10
(3072 dimensions).

The rung's helpers
------------------
:func:`load_shipped_models` (score U-Net, noise-level classifier, FID
feature network and reference statistics from ``dmcmc_edu/weights``),
:func:`vanilla_samples` and :func:`dlg_samples` / :func:`dlg_config` (the two
ways of sampling, NFE counted), :func:`plot_ladder` (FID against NFE, paper
Figure 3 style) and :func:`image_grid`.  Notebook 06 and
``bench/mnist_ladder.py`` are built from these calls.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from matplotlib.lines import Line2D
from torchvision.utils import make_grid
from tqdm import tqdm

from dmcmc_edu.core.integrators import PAPER_INTEGRATORS, sample_from_noise
from dmcmc_edu.core.sampler import DMCMCConfig, DMCMCSampler
from dmcmc_edu.datasets import WEIGHT_FILES, default_weights_dir
from dmcmc_edu.evaluation.mnist_fid import REFERENCE_NAME, load_feature_net, load_reference
from dmcmc_edu.models.classifier import NoiseLevelClassifier
from dmcmc_edu.models.unet import load_score_model
from dmcmc_edu.plotting import dodge_markers, nfe_axes
from dmcmc_edu.registry import get_integrator, integrator_table

__all__ = ["SIGMA_MIN", "SIGMA_MAX", "MAX_TRAIN_DISTANCE", "DLG_DEFAULTS", "LADDER_STYLE", "load_shipped_models",
           "vanilla_samples", "dlg_config", "dlg_samples", "plot_ladder", "plot_dlg_tuning", "nfe_to_reach",
           "image_grid"]

SIGMA_MIN = 0.01
"""Smallest noise level (the paper's CIFAR10 value; invisible on [0, 1] images)."""

SIGMA_MAX = 20.0
"""Largest noise level: about the largest pairwise distance of training images (see the module docstring)."""

MAX_TRAIN_DISTANCE = {"images": 60_000, "distance": 16.88}
"""The largest Euclidean distance between two MNIST training images in [0, 1] (784 dimensions), measured once with
:func:`dmcmc_edu.datasets.max_pairwise_distance` over all pairs (about 3 minutes on one core): the basis of
:data:`SIGMA_MAX`."""

# ----------------------------------------------------------------------------- the rung's models and samplers

def load_shipped_models(weights_dir=None, device="cpu") -> dict:
    """The shipped score model, noise-level classifier, FID feature network and reference statistics.

    Returns ``{"score", "classifier", "feature_net", "reference", "info"}``;
    ``info`` holds each network's JSON record (training, accuracy, calibration).
    """
    d = Path(weights_dir) if weights_dir is not None else default_weights_dir()
    missing = [name for name in WEIGHT_FILES.values() if not (d / name).exists()]
    if missing:
        raise FileNotFoundError(f"missing in {d}: {', '.join(missing)}; train them with bench/train_mnist_gpu.sh "
                                "or the train-score / train-mnist-classifier / train-mnist-features commands")
    score = load_score_model(d / WEIGHT_FILES["score"]).to(device)
    clf = NoiseLevelClassifier.load(d / WEIGHT_FILES["classifier"], map_location=device).eval()
    feat = load_feature_net(d / WEIGHT_FILES["features"])
    ref = load_reference(d / REFERENCE_NAME, d / WEIGHT_FILES["features"])
    info = {k: json.loads((d / v).with_suffix(".json").read_text()) for k, v in WEIGHT_FILES.items()}
    return {"score": score, "classifier": clf, "feature_net": feat, "reference": ref, "info": info}


@torch.no_grad()
def vanilla_samples(model, n: int, *, integrator: str = "kar1", steps: int = 10, sigma_min: float = SIGMA_MIN,
                    sigma_max: float = SIGMA_MAX, seed: int = 0, batch_size: int = 500, device="cpu",
                    dtype=torch.float64, **options):
    """``n`` images from noise at ``sigma_max`` with one integrator (``sample_from_noise``).

    Batches of ``batch_size``; batch ``k`` uses the generator seeded
    ``seed * 1_000_003 + k``.  Returns ``(images [n, 1, 28, 28] float32 on the CPU,
    clamped to [0, 1], info)`` with ``info["nfe"]`` the counted evaluations per sample.
    """
    outs, nfe = [], 0.0
    for k, s in enumerate(range(0, n, batch_size)):
        b = min(batch_size, n - s)
        g = torch.Generator().manual_seed(seed * 1_000_003 + k)
        x, info = sample_from_noise(model, (b, 1, 28, 28), integrator=get_integrator(integrator), steps=steps,
                                    sigma_max=sigma_max, sigma_min=sigma_min, generator=g, dtype=dtype, device=device,
                                    **options)
        outs.append(x.float().clamp(0, 1).cpu())
        nfe += info.nfe * b
    return torch.cat(outs), {"integrator": integrator, "steps": steps, "nfe": nfe / n, "n": n,
                             **{k: v for k, v in options.items() if isinstance(v, (int, float, str))}}


DLG_DEFAULTS = dict(sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, n_levels=1000, eta=1.0, eta_rel=0.0, n_skip=10,
                    integrator="kar1", steps=8, sigma_update="classifier-argmax", x_update="ula", init_steps=19,
                    init_kick=0.5, burn_in=[[10, None], [10, None]], final_tweedie="auto")
"""DLG settings of the MNIST rung: the paper's algorithm (ULA with an absolute step, classifier argmax, 37-NFE KAR2
initialisation, kick 0.5, 20 burn-in steps) with eta = 1.0 and n_skip = 10 -- close to the paper's CelebA-HQ setting
(eta 0.8, n_skip 10) -- and 8 KAR1 steps for the denoising run.

Chosen by ``bench/mnist_dlg_tuning.py`` (bench/results/mnist_tuning, 512 outputs, 16 per chain, KAR1): the absolute
step sets the level the argmax chains settle at (median sigma 0.5 / 0.9 / 1.8 / 2.6 / 3.6 for eta 0.01 / 0.2 / 0.5 /
1 / 2), and only chains at sigma >~ 1 change digit between outputs.  With eta = 0.01 and n_skip = 1 (the setting
of the first pilot runs, good with one output per chain: MNIST-FID 23.6, real-image floor 19.4) 16 outputs per
chain are near copies (the digit changes between consecutive outputs in 2 % of cases; FID 264).  With these
defaults it changes in 69 % (independent samples: ~90 %), FID 36.4 at 39.9 NFE per output by the full ledger (25 by
the paper's count).  Vanilla KAR1 reaches FID 28.7 with 9 NFE at the same sample size."""


def dlg_config(n_outputs: int, outputs_per_chain: int = 16, **overrides):
    """A ``DMCMCConfig``: :data:`DLG_DEFAULTS` with ``ceil(n_outputs / outputs_per_chain)`` chains, then ``overrides``.

    Outputs of one chain are correlated (a chain stays near one digit for many
    steps), so few outputs per chain keep the outputs close to independent;
    more outputs per chain amortise the initialisation and burn-in better.
    """
    kw = dict(DLG_DEFAULTS)
    kw.update(n_chains=-(-n_outputs // outputs_per_chain), outputs_per_chain=outputs_per_chain)
    kw.update(overrides)
    return DMCMCConfig(**kw)


@torch.no_grad()
def dlg_samples(model, classifier, config, *, device="cpu", keep_trace: bool = True, progress: bool = False,
                integrator_options: dict | None = None):
    """Run DLG (:class:`~dmcmc_edu.core.sampler.DMCMCSampler`) with a noise-level classifier.

    ``integrator_options`` are passed to the denoising integrator (e.g.
    ``{"rtol": 1e-3, "atol": 1e-3}`` for RK45).

    Returns ``(images [n, 1, 28, 28] float32 CPU clamped to [0, 1], result, info)``;
    ``result`` is the :class:`~dmcmc_edu.core.sampler.DMCMCResult` (chosen sigmas,
    sigma trace, ledger); ``info`` has the per-output NFE of the paper's and
    the full accounting and the ledger's parts.
    """
    classifier.reset_counts()
    if integrator_options:  # the config's own mechanism; the caller's config is left as it is
        config = dataclasses.replace(config, integrator_options={**config.integrator_options, **integrator_options})
    sampler = DMCMCSampler(model, config, data_shape=(1, 28, 28), classifier=classifier, device=device,
                           integrators=integrator_table(),
                           keep_trace=keep_trace)
    res = sampler.run(progress=tqdm if progress else None)
    led = res.ledger.per_output()
    info = {"nfe": led["full"], "nfe_paper": led["paper"], "nfe_score_evals": led["score_evals"],
            "parts": led["parts"], "n": int(res.samples.shape[0]), **(integrator_options or {}),
            "chosen_sigma_median": float(res.chosen_sigma.median()),
            "chosen_sigma_mean": float(res.chosen_sigma.mean())}
    return res.samples.float().clamp(0, 1).cpu(), res, info


LADDER_STYLE = {"vanilla": ("k", "o", "without DLG"), "dlg-argmax": ("C0", "s", "DLG, classifier argmax"),
                "dlg-sample": ("C3", "^", "DLG, classifier sample"),
                "dlg-argmax-1pc": ("C2", "D", "DLG, argmax, 1 output per chain")}


def _fid_nfe_axes(ax, floor: float | None) -> None:
    """Log-log FID-vs-NFE axes with plain tick labels (1, 2, 5 per decade) and the real-image floor dotted."""
    nfe_axes(ax, floor, floor_label="real images (same n)", floor_color="gray", plain_ticks=True)


def plot_ladder(points: list, floor: float | None = None, title: str | None = None, integrators=None):
    """Paper-Figure-3-style panels: MNIST-FID against NFE per integrator, without and with DLG.

    ``points``: dicts with ``variant`` (a key of :data:`LADDER_STYLE`),
    ``integrator``, ``nfe`` (full ledger), optionally ``nfe_paper``, and
    ``fid`` (as written by bench/mnist_ladder.py).  DLG is placed by the full
    ledger (filled markers, lines: every score and classifier evaluation, the
    amortised initialisation and burn-in included); small hollow markers, drawn
    behind and joined to their point by a dotted line, show the same points by
    the paper's accounting.  Markers that would hide each other are spread
    sideways (values unchanged).  ``floor``: FID of real images at the same n (dotted).
    Returns the figure.
    """
    names = list(integrators or [i for i in PAPER_INTEGRATORS if any(p["integrator"] == i for p in points)])
    cols = min(3, max(1, len(names)))
    rows = -(-len(names) // cols)
    # one scale for every panel: the integrators are compared with each other, and a panel whose points span less
    # than a decade (RK45) would otherwise get an axis of its own
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False, sharex=True, sharey=True)
    for ax, name in zip(axes.flat, names):
        for variant, (color, marker, label) in LADDER_STYLE.items():
            pts = sorted((p for p in points if p["integrator"] == name and p["variant"] == variant),
                         key=lambda p: p["nfe"])
            if not pts:
                continue
            ax.plot([p["nfe"] for p in pts], [p["fid"] for p in pts], color=color, marker=marker, ms=5, label=label,
                    zorder=3)
            if variant != "vanilla":  # the same points by the paper's count: smaller, behind, tied to their own
                for p in pts:
                    ax.plot([p["nfe_paper"], p["nfe"]], [p["fid"]] * 2, color=color, ls=":", lw=0.8, alpha=0.6,
                            zorder=1)
                ax.plot([p["nfe_paper"] for p in pts], [p["fid"] for p in pts], color=color, marker=marker, ms=3.5,
                        ls="none", mfc="white", mew=1.0, zorder=2)
        _fid_nfe_axes(ax, floor)
        ax.set_title(name)
        ax.set_xlabel("NFE per sample (full ledger)")
        ax.set_ylabel("MNIST-FID")
        ax.grid(alpha=0.3, which="both")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    handles, _ = axes.flat[0].get_legend_handles_labels()
    handles.append(Line2D([], [], color="gray", marker="s", ms=3.5, mfc="white", ls=":", lw=0.8,
                          label="DLG by the paper's count (dotted: same point)"))
    axes.flat[0].legend(handles=handles, fontsize=7, loc="upper right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if sum(dodge_markers(ax) for ax in list(axes.flat)[:len(names)]):  # no marker hidden under another
        right = max(ax.get_position().x1 for ax in axes.flat)  # level with the title, within the panels' width
        fig.text(right, 0.98, "markers at one spot are drawn side by side", ha="right", va="top", fontsize=7,
                 color="0.35")
    return fig


def nfe_to_reach(points: list, fid: float) -> dict:
    """The cheapest point of each (integrator, variant) whose MNIST-FID is at most ``fid``.

    ``points`` as written by bench/mnist_ladder.py.  Returns
    ``{integrator: {variant: {"nfe", "nfe_paper", "nfe_score_evals", "fid", "setting"} or None}}``
    where ``nfe`` is the full ledger (the counted NFE for vanilla runs),
    ``nfe_paper`` the paper's count and ``nfe_score_evals`` the full ledger
    without the classifier's evaluations (both equal to ``nfe`` for vanilla runs);
    ``None`` where no point of the sweep reaches ``fid``.  For DLG the
    cheapest point is chosen by the full ledger.
    """
    if not math.isfinite(fid):
        raise ValueError(f"fid must be finite, got {fid}")
    order = {name: k for k, name in enumerate(PAPER_INTEGRATORS)}
    points = sorted(points, key=lambda p: order.get(p["integrator"], len(order)))  # the paper's order first
    out: dict = {}
    for p in points:
        best = out.setdefault(p["integrator"], {}).setdefault(p["variant"], None)
        if p["fid"] <= fid and (best is None or p["nfe"] < best["nfe"]):
            out[p["integrator"]][p["variant"]] = {"nfe": p["nfe"], "nfe_paper": p.get("nfe_paper", p["nfe"]),
                                                  "nfe_score_evals": p.get("nfe_score_evals", p["nfe"]),
                                                  "fid": p["fid"], "setting": p.get("setting")}
    return out


def _tuning_fid_panel(a, van, dlg, colors, markers, sizes, floor) -> None:
    """MNIST-FID against the full NFE per output: vanilla KAR1 as a line, each DLG setting as a marker.

    Colour: eta; shape: n_skip; size: the denoising steps; filled: many outputs per chain, hollow: fewer (one).
    The legend, outside the axes, names each of these.
    """
    if van:
        a.plot([p["nfe"] for p in van], [p["fid"] for p in van], "k-o", ms=4, label="KAR1 from noise")
    per = sorted({p["perchain"] for p in dlg})
    for p in dlg:
        filled = p["perchain"] == per[-1]
        a.scatter(p["nfe"], p["fid"], marker=markers[p["nskip"]], s=sizes[p.get("steps")],
                  color=colors[p["eta"]] if filled else "none", edgecolor="k" if filled else colors[p["eta"]],
                  linewidth=0.4 if filled else 1.6, zorder=3)
    _fid_nfe_axes(a, floor)
    handles, _ = a.get_legend_handles_labels()
    blank = dict(color="w", markeredgecolor="k", ls="none")
    handles += [Line2D([], [], color=colors[e], marker="s", ls="none", label=f"DLG eta={e:g}") for e in colors]
    handles += [Line2D([], [], marker=markers[k], label=f"n_skip={k}", **blank) for k in markers]
    handles += [Line2D([], [], marker="o", markersize=sizes[n] ** 0.5, label=f"{n} denoising steps", **blank)
                for n in sizes if n is not None]
    handles += [Line2D([], [], marker="o", color="0.55", markeredgecolor="k", ls="none",
                       label=f"{per[-1]} output{'s' if per[-1] > 1 else ''} per chain (filled)")]
    handles += [Line2D([], [], marker="o", color="none", markeredgecolor="0.3", markeredgewidth=1.6, ls="none",
                       label=f"{c} output{'s' if c > 1 else ''} per chain (hollow)") for c in per[:-1]]
    a.set_xlabel("NFE per output (full ledger)")
    a.set_ylabel("MNIST-FID")
    a.grid(alpha=0.3, which="both")
    a.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def _tuning_switch_panel(b, dlg, colors, per) -> None:
    """The class-switch rate of consecutive outputs against n_skip, one line per eta and outputs per chain."""
    for e in colors:
        for c in per:
            by_skip: dict = {}  # the rate hardly depends on the denoising steps: average over them
            for p in dlg:
                if p["eta"] == e and p["perchain"] == c and p.get("class_switch_rate") is not None:
                    by_skip.setdefault(p["nskip"], []).append(p["class_switch_rate"])
            if by_skip:
                ks = sorted(by_skip)
                b.plot(ks, [sum(by_skip[k]) / len(by_skip[k]) for k in ks], "-o", color=colors[e],
                       ms=3 + 2 * per.index(c), label=f"eta={e:g}, {c}/chain")
    b.axhline(0.9, color="gray", ls=":", lw=1, label="independent samples (~0.9)")
    b.set_xscale("log")
    b.set_xlabel("n_skip (Gibbs steps between outputs)")
    b.set_ylabel("consecutive outputs: digit changes")
    b.set_ylim(0, 1)
    b.grid(alpha=0.3)
    b.legend(fontsize=7)


def plot_dlg_tuning(points: list, floor: float | None = None, title: str | None = None):
    """Two panels for a DLG settings sweep (as written by bench/mnist_dlg_tuning.py).

    Left: MNIST-FID against the **full** NFE per output, one colour per
    ``eta``, one marker per ``nskip``, marker size growing with the denoising
    ``steps``, filled for the most outputs per chain and hollow for fewer;
    vanilla KAR1 from noise as the black line, real images (same n) dotted;
    the legend (outside the axes) names each; settings drawn within a marker's
    width of each other are spread sideways (values unchanged).  Right: how different consecutive outputs of one
    chain are -- the class-switch rate (fraction whose predicted digit changes) against
    ``nskip``, one line per ``eta`` (and outputs per chain), averaged over
    points that differ only in the denoising steps.  Returns the figure.
    """
    van = sorted((p for p in points if p["kind"] == "vanilla"), key=lambda p: p["nfe"])
    dlg = [p for p in points if p["kind"] == "dlg"]
    etas = sorted({p["eta"] for p in dlg})
    skips = sorted({p["nskip"] for p in dlg})
    per = sorted({p["perchain"] for p in dlg})
    colors = {e: plt.cm.viridis(i / max(1, len(etas) - 1)) for i, e in enumerate(etas)}
    markers = dict(zip(skips, "osD^vP*X"))
    steps = sorted({p.get("steps") for p in dlg}, key=lambda n: (n is None, n))
    sizes = {n: 18 + 22 * i for i, n in enumerate(steps)}  # marker area (points^2) grows with the denoising steps
    fig, (a, b) = plt.subplots(1, 2, figsize=(14, 4.6), gridspec_kw=dict(width_ratios=(1.6, 1)))
    _tuning_fid_panel(a, van, dlg, colors, markers, sizes, floor)
    _tuning_switch_panel(b, dlg, colors, per)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    # settings that land on one spot (the same NFE, FIDs within a marker's width) are drawn side by side
    if dodge_markers(a):
        a.text(0.99, 0.01, "markers at the same spot are drawn side by side", transform=a.transAxes, ha="right",
               va="bottom", fontsize=7, color="0.35")
    return fig


def image_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2):
    """A ``[H, W]`` array tiling ``images`` ``[n, 1, 28, 28]`` (clamped to [0, 1]) for ``plt.imshow(cmap="gray")``."""
    g = make_grid(images.detach().float().clamp(0, 1).cpu(), nrow=nrow, padding=padding, pad_value=1.0)
    return g[0].numpy()
