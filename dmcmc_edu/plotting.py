"""Plotting helpers for 2D mixtures, samples, trajectories, chains and NFE curves (matplotlib).

Every function draws on a given ``ax`` (or creates one) and returns it, so
notebooks compose figures without re-implementing anything.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.collections import PathCollection
from matplotlib.lines import Line2D
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

__all__ = ["density_grid", "plot_density", "plot_score_field", "plot_samples", "plot_trajectories",
           "plot_sigma_traces", "plot_metric_vs_nfe", "nfe_axes", "save_figure", "label_plane",
           "plot_density_with_colorbar", "plot_score_field_with_colorbar", "count_outside", "annotate_outside",
           "dodge_markers", "note_outside"]


def _ax(ax):
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    return ax


def _lim(mix, pad=1.5):
    m = mix.means.cpu().numpy()
    r = float(np.abs(m).max()) + pad
    return (-r, r)


def _grid_points(lim, n: int):
    """An n x n grid over ``lim`` x ``lim``: the coordinate arrays X, Y [n, n] and the points [n * n, 2]."""
    lo, hi = lim
    xs = torch.linspace(lo, hi, n, dtype=torch.float64)
    X, Y = torch.meshgrid(xs, xs, indexing="xy")
    return X, Y, torch.stack([X.reshape(-1), Y.reshape(-1)], 1)


def density_grid(mix, sigma: float, lim=None, n: int = 200):
    """Evaluate p_sigma on an n x n grid of a 2D mixture; returns (X, Y, density)."""
    if mix.d != 2:
        raise ValueError(f"density plots need a 2D mixture, got d={mix.d}")
    X, Y, pts = _grid_points(lim or _lim(mix), n)
    dens = mix.log_prob(pts, float(sigma)).exp().reshape(n, n)
    return X.numpy(), Y.numpy(), dens.numpy()


def plot_density(mix, sigma: float, ax=None, lim=None, cmap="viridis", title=True):
    """Filled contour plot of the noised density p_sigma of a 2D mixture."""
    ax = _ax(ax)
    X, Y, D = density_grid(mix, sigma, lim)
    ax.contourf(X, Y, D, levels=30, cmap=cmap)
    ax.set_aspect("equal")
    if title:
        ax.set_title(f"$p_\\sigma$, $\\sigma$ = {sigma:g}")
    return ax


def plot_score_field(mix, sigma: float, ax=None, lim=None, n: int = 20, color="white"):
    """Quiver plot of the score field grad log p_sigma (arrows normalised, colour = log magnitude)."""
    ax = _ax(ax)
    X, Y, pts = _grid_points(lim or _lim(mix), n)
    s = mix.score(pts, float(sigma))
    norm = s.norm(dim=1, keepdim=True).clamp(min=1e-12)
    u = (s / norm).reshape(n, n, 2).numpy()
    ax.quiver(X.numpy(), Y.numpy(), u[..., 0], u[..., 1], np.log(norm.reshape(n, n).numpy()), cmap="magma",
              scale=30, width=0.004)
    ax.set_aspect("equal")
    return ax


def plot_samples(x, ax=None, mix=None, title=None, s=2, alpha=0.4, color="C0", lim=None):
    """Scatter of 2D samples, optionally over the clean density's contour lines."""
    ax = _ax(ax)
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if mix is not None:
        X, Y, D = density_grid(mix, 0.0, lim, n=150)
        ax.contour(X, Y, D, levels=6, colors="0.6", linewidths=0.5)
        ax.set_xlim(*(lim or _lim(mix)))
        ax.set_ylim(*(lim or _lim(mix)))
    ax.scatter(x[:, 0], x[:, 1], s=s, alpha=alpha, color=color, linewidths=0)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def plot_trajectories(path, ax=None, color="C3", n_max=30, lw=0.6):
    """Lines through the states of 2D trajectories; ``path`` is [T, B, 2]."""
    ax = _ax(ax)
    p = path.detach().cpu().numpy() if isinstance(path, torch.Tensor) else np.asarray(path)
    for b in range(min(p.shape[1], n_max)):
        ax.plot(p[:, b, 0], p[:, b, 1], color=color, lw=lw, alpha=0.7)
        ax.plot(p[-1, b, 0], p[-1, b, 1], "o", color=color, ms=2)
    return ax


def plot_sigma_traces(trace, ax=None, n_chains=5, log=True):
    """Sigma of a few chains over Gibbs steps; ``trace`` is [steps, C]."""
    ax = _ax(ax)
    t = trace.detach().cpu().numpy() if isinstance(trace, torch.Tensor) else np.asarray(trace)
    for c in range(min(n_chains, t.shape[1])):
        ax.plot(t[:, c], lw=0.8)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("Gibbs step")
    ax.set_ylabel(r"$\sigma$")
    return ax


def plot_metric_vs_nfe(rows, metric: str, ax=None, group: str = "method", floor=None, logx=True):
    """Lines of ``metric`` against ``nfe`` for each value of ``group`` in a list of result dicts."""
    ax = _ax(ax)
    groups = sorted({r[group] for r in rows})
    for gname in groups:
        pts = sorted((r["nfe"], r[metric]) for r in rows if r[group] == gname)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=gname, ms=3)
    nfe_axes(ax, floor, floor_label="exact samples", floor_color="k", floor_style="--", floor_width=0.8, logx=logx,
             logy=False)
    ax.set_xlabel("NFE per sample")
    ax.set_ylabel(metric)
    ax.legend(fontsize=7)
    return ax


def nfe_axes(ax, floor=None, *, floor_label: str = "noise floor", floor_color="0.4", floor_style: str = ":",
             floor_width: float = 1.0, logx: bool = True, logy: bool = True, plain_ticks: bool = False):
    """Finish axes that show a quality metric against NFE: the floor as a horizontal line, log scales.

    ``floor`` (if not None) is drawn as a line labelled ``floor_label`` -- what
    exact samples (or real images) score, below which a sampler cannot be told
    apart from them.  ``plain_ticks`` labels the log axes with plain numbers at
    1, 2 and 5 per decade instead of powers of ten.  Returns ``ax``.
    """
    if floor is not None:
        ax.axhline(floor, color=floor_color, ls=floor_style, lw=floor_width, label=floor_label)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if plain_ticks:
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(ScalarFormatter())
            axis.set_minor_formatter(NullFormatter())
    return ax


def finish_figure(ax, xlabel: str, ylabel: str, title: str, legend_fontsize: float = 8):
    """Label ``ax`` (axes and title), add its legend and tighten its figure's layout; returns the figure."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=legend_fontsize)
    ax.figure.tight_layout()
    return ax.figure


def save_figure(fig, path) -> None:
    """Save a figure (PNG, 130 dpi, tight) creating parent folders."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, bbox_inches="tight")


def label_plane(ax, names=("$x_1$", "$x_2$")):
    """Label the two axes of a 2D picture (samples, densities, paths) with the coordinate names; returns ``ax``."""
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    return ax


def plot_density_with_colorbar(mix, sigma: float, ax=None, lim=None, cmap="viridis", title=True,
                               label=r"density $p_\sigma(x)$", n: int = 200):
    """:func:`plot_density` (on an ``n`` x ``n`` grid) with a colour bar for the density and the axes labelled."""
    ax = _ax(ax)
    X, Y, D = density_grid(mix, sigma, lim, n=n)
    filled = ax.contourf(X, Y, D, levels=30, cmap=cmap)
    ax.figure.colorbar(filled, ax=ax, label=label, shrink=0.8)
    ax.set_aspect("equal")
    if title:
        ax.set_title(f"$p_\\sigma$, $\\sigma$ = {sigma:g}")
    return label_plane(ax)


def plot_score_field_with_colorbar(mix, sigma: float, ax=None, lim=None, n: int = 20,
                                   label=r"$\ln\,|\nabla_x \log p_\sigma(x)|$"):
    """:func:`plot_score_field` with a colour bar for the arrows' colour (the log of the score's magnitude)."""
    ax = plot_score_field(mix, sigma, ax=ax, lim=lim, n=n)
    ax.figure.colorbar(ax.collections[-1], ax=ax, label=label, shrink=0.8)
    return label_plane(ax)


def count_outside(ax, x) -> int:
    """How many rows of the 2D points ``x`` [N, 2] lie outside the current x/y limits of ``ax``."""
    p = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    (x0, x1), (y0, y1) = sorted(ax.get_xlim()), sorted(ax.get_ylim())
    inside = (p[:, 0] >= x0) & (p[:, 0] <= x1) & (p[:, 1] >= y0) & (p[:, 1] <= y1)
    return int((~inside).sum())


def annotate_outside(ax, x, what: str = "samples") -> int:
    """Write "k of N <what> outside the frame" in the panel when points of ``x`` fall outside it; returns k."""
    k = count_outside(ax, x)
    if k:
        ax.text(0.02, 0.02, f"{k} of {len(x)} {what}\noutside the frame", transform=ax.transAxes, fontsize=7,
                va="bottom", ha="left", bbox=dict(boxstyle="round", fc="white", ec="0.6", alpha=0.85))
    return k


def _marker_points(artist):
    """``(data xy [n, 2], transform, radii [n] in points)`` of the markers ``artist`` draws (a Line2D with markers
    or a scatter); ``transform`` is None when it draws none."""
    if isinstance(artist, Line2D):
        if artist.get_marker() in (None, "None", "", " ") or not artist.get_visible():
            return np.zeros((0, 2)), None, np.zeros(0)
        xy = np.column_stack([np.asarray(artist.get_xdata(), float), np.asarray(artist.get_ydata(), float)])
        return xy, artist.get_transform(), np.full(len(xy), artist.get_markersize() / 2.0)
    if isinstance(artist, PathCollection):
        xy = np.asarray(artist.get_offsets(), float).reshape(-1, 2)
        sizes = np.asarray(artist.get_sizes(), float)
        sizes = np.resize(sizes if sizes.size else np.array([36.0]), len(xy))  # area in points^2, cycled
        return xy, artist.get_offset_transform(), np.sqrt(sizes) / 2.0
    return np.zeros((0, 2)), None, np.zeros(0)


def _set_marker_x(artist, x):
    if isinstance(artist, Line2D):
        artist.set_xdata(x)
    else:
        xy = np.asarray(artist.get_offsets(), float).reshape(-1, 2).copy()
        xy[:, 0] = x
        artist.set_offsets(xy)


def dodge_markers(ax, artists=None, min_pt: float = 0.0, pad_pt: float = 0.5) -> int:
    """Spread markers that would overlap on the page side by side, horizontally; returns how many moved.

    ``artists``: the Line2D (with markers) and scatter collections of ``ax`` to consider (default: all of them).
    Two markers overlap when their centres are closer than the sum of their radii plus ``pad_pt`` (at least
    ``min_pt``), in points on the page -- on a log x axis a shift is a shift in log NFE.  Overlapping markers
    form a group, spread about its mean position so that neighbours are just clear of each other, in the order
    of their x, then of the artists, then of y.  Only where a marker is drawn moves: the data (and anything
    printed from them) are unchanged; lines through a moved marker bend to it.  Call after the axes' limits
    and the figure's layout are final.
    """
    if artists is None:
        artists = list(ax.lines) + list(ax.collections)
    ax.get_xlim(), ax.get_ylim()  # settle autoscaling so the transforms are final
    px = ax.figure.dpi / 72.0  # pixels per point
    pts, xys = [], []  # pts: (display x, display y, radius in pixels, artist index, point index)
    for a_i, art in enumerate(artists):
        xy, tr, radii = _marker_points(art)
        xys.append((xy, tr))
        if tr is None or not len(xy):
            continue
        ok = np.isfinite(xy).all(axis=1)
        if ax.get_xscale() == "log":
            ok &= xy[:, 0] > 0
        if ax.get_yscale() == "log" and tr.contains_branch_seperately(ax.transData)[1]:
            ok &= xy[:, 1] > 0
        with np.errstate(all="ignore"):
            disp = tr.transform(np.where(ok[:, None], xy, 1.0))
        for j in np.flatnonzero(ok & np.isfinite(disp).all(axis=1)):
            pts.append((disp[j, 0], disp[j, 1], radii[j] * px, a_i, j))
    if len(pts) < 2:
        return 0

    def gap(i, k):
        return max(min_pt * px, pts[i][2] + pts[k][2] + pad_pt * px)

    parent = list(range(len(pts)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    widest = 2 * max(p[2] for p in pts) + max(min_pt, pad_pt) * px
    order = sorted(range(len(pts)), key=lambda i: pts[i][0])
    for u, i in enumerate(order):  # join markers that overlap (a sweep over x)
        for k in order[u + 1:]:
            if pts[k][0] - pts[i][0] >= widest:
                break
            if (pts[k][0] - pts[i][0]) ** 2 + (pts[k][1] - pts[i][1]) ** 2 < gap(i, k) ** 2:
                parent[find(k)] = find(i)
    groups: dict = {}
    for i in range(len(pts)):
        groups.setdefault(find(i), []).append(i)
    new_x: dict = {}
    for members in groups.values():
        if len(members) < 2:
            continue
        members.sort(key=lambda i: (round(pts[i][0], 1), pts[i][3], pts[i][1]))
        offsets = [0.0]
        for prev, cur in zip(members, members[1:]):
            offsets.append(offsets[-1] + gap(prev, cur))
        shift = float(np.mean([pts[i][0] for i in members])) - (offsets[0] + offsets[-1]) / 2
        for i, off in zip(members, offsets):
            _, dy, _, a_i, j = pts[i]
            new_x.setdefault(a_i, {})[j] = xys[a_i][1].inverted().transform([(shift + off, dy)])[0, 0]
    for a_i, changes in new_x.items():
        x = np.array(xys[a_i][0][:, 0], float)
        for j, v in changes.items():
            x[j] = v
        _set_marker_x(artists[a_i], x)
    return sum(len(c) for c in new_x.values())


def note_outside(ax, values, top=None, zeros: bool = False) -> str:
    """Write in the panel how many ``values`` it cannot show: above ``top`` (and the largest of them), and, with
    ``zeros``, how many are 0 or below (a log axis has no place for them; the caller draws them on the bottom
    edge).  Returns the note ("" when every value is shown, and then nothing is written)."""
    lines = []
    above = [v for v in values if top is not None and v > top]
    if above:
        lines.append(f"{len(above)} above the axes\n(up to {max(above):.3g})")
    low = [v for v in values if zeros and v <= 0]
    if low:
        lines.append(f"{len(low)} point{'s' if len(low) > 1 else ''} at 0,\ndrawn on the axis (\u25bd)")
    note = "\n".join(lines)
    if note:
        ax.text(0.97, 0.97, note, transform=ax.transAxes, ha="right", va="top", fontsize=7, color="0.3")
    return note
