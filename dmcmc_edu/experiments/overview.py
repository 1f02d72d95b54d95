"""The paper's claims beside this toolkit's measurements, for the overview notebook and the README.

Everything here reads stored results (``bench/results``) and the paper's numbers (:mod:`dmcmc_edu.paper`); it runs
nothing.  :func:`claims_vs_measured` gives one row per integrator of the paper:

* the paper's CIFAR10 FIDs without and with DLG (``FID@NFE``, NFE as the paper counts it);
* on the ring and on the 64-d mixture (``bench/results/seeds``, 8 replicates of each sweep): the median NFE per
  *independent* sample, by the full ledger, with its 95% interval, at which sampling from noise, the best control
  (schedule-only or restart) and DLG reach the integrator's own best quality from noise in at least 7 of 8 seeds,
  and the verdict DLG vs sampling from noise (the NFE ratio with its interval, or "no measurable difference");
* on MNIST (``bench/results/mnist_n2000``): the best MNIST-FID from noise and the best with DLG, each with its NFE;
  where those points were re-run over seeds (``bench/results/mnist_seeds``, :func:`mnist_verdicts`), the mean FID
  over the seeds and the verdict with its interval.
"""
from __future__ import annotations

import datetime
import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import matplotlib.ticker as ticker
import numpy as np

from dmcmc_edu.evaluation.uncertainty import CONFIDENCE
from dmcmc_edu.paper import PAPER_FID
from dmcmc_edu.plotting import dodge_markers

__all__ = ["INTEGRATOR_NAMES", "claims_vs_measured", "markdown_table", "plot_paper_claims", "toy_reach",
           "toy_reach_seeds", "short_verdict", "mnist_best", "mnist_verdicts", "modern_solvers_answer",
           "modern_seeds_block", "SOLVER_NAMES", "COURSE",
           "READING_RULE", "reading_minutes", "run_seconds", "course_map"]

SOLVER_NAMES = {"dpmpp_2m": "DPM-Solver++(2M)", "dpmpp_2m_sde": "DPM-Solver++(2M) SDE", "unipc": "UniPC",
                "restart": "Restart"}
"""The four modern solvers of ``dmcmc_edu.solvers``: registry name -> printed name."""

INTEGRATOR_NAMES = {"kar1": "KAR1", "kar2": "KAR2", "pf_euler": "Probability flow", "rk45": "RK45",
                    "reverse_diffusion": "Reverse diffusion", "euler_maruyama": "Euler-Maruyama"}
"""The paper's six integrators: registry name -> the name in the paper's tables."""


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"stored results missing: {path} (made by the command in {path.parent}/README.md)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def toy_reach(findings_file: str | Path) -> dict[str, dict[str, float | None]]:
    """NFE per independent sample (full ledger) at which each kind first reaches the integrator's best from noise.

    Returns ``{integrator: {"noise": ..., "control": ..., "dlg": ..., "speedup": noise / dlg}}``; ``None`` where
    that kind never reached it in the sweep.  ``control`` is the cheaper of the schedule-only and restart controls.
    """
    data = _read_json(Path(findings_file))
    out = {}
    for name, entry in data["per_integrator"].items():
        nfe = {kind: (None if entry["reach"].get(kind) is None else float(entry["reach"][kind]["nfe_per_independent"]))
               for kind in ("noise", "schedule", "restart", "dlg")}
        controls = [v for v in (nfe["schedule"], nfe["restart"]) if v is not None]
        noise, dlg = nfe["noise"], nfe["dlg"]
        out[name] = {"noise": noise, "control": min(controls) if controls else None, "dlg": dlg,
                     "speedup": noise / dlg if noise is not None and dlg is not None else None}
    return out


def _reach_cell(b: dict | None) -> dict | None:
    if b is None:
        return None
    c = b["cost"]
    return {"estimate": c["estimate"], "low": c["low"], "high": c["high"], "n_reached": b["n_reached"], "n": b["n"]}


def short_verdict(v: dict) -> str:
    """A verdict of :func:`~dmcmc_edu.evaluation.uncertainty.verdict` (its dict) in a few words for a table cell."""
    r, n = v.get("ratio"), v["n_seeds"]
    if v["outcome"] in ("a_cheaper", "b_cheaper"):
        return f"{r['estimate']:.2f}x ({r['low']:.2f}-{r['high']:.2f}), {r['n']} seeds"
    if v["outcome"] == "no_difference" and "sweep's resolution" in v["text"]:
        return f"no measurable difference at the sweep's resolution ({r['estimate']:.2f}x the run that reaches), " \
               f"{r['n']} seeds"
    if v["outcome"] == "no_difference":
        return f"no measurable difference ({r['low']:.2f}-{r['high']:.2f}), {r['n']} seeds"
    if v["outcome"] == "only_a":
        return f"only DLG reaches ({n} seeds)"
    if v["outcome"] == "only_b":
        return f"DLG does not reach in 7 of 8 ({v['a']['n_reached']}/{v['a']['n']} at best)"
    return f"neither reaches ({n} seeds)"


def toy_reach_seeds(seeds_file: str | Path) -> dict[str, dict]:
    """The ladder over seeds (``bench/ladder_seeds.py``): per integrator, each kind's NFE to reach and the verdicts.

    Returns ``{integrator: {"noise" | "control" | "dlg": {"estimate", "low", "high", "n_reached", "n"} or None,
    "dlg_vs_noise": verdict dict, "dlg_vs_control": verdict dict}}``; ``None``: no setting of that kind reaches in
    7 of 8 seeds.  The verdict dicts carry their sentence (``"text"``), printed as is.
    """
    data = _read_json(Path(seeds_file))
    try:
        per = data["findings"]["per_integrator"]
    except (KeyError, TypeError):
        raise ValueError(f"{seeds_file}: not a ladder-over-seeds result (no findings.per_integrator)") from None
    return {name: {"noise": _reach_cell(e["best"]["noise"]), "control": _reach_cell(e["best"]["control"]),
                   "dlg": _reach_cell(e["best"]["dlg"]), "dlg_vs_noise": e["dlg_vs_noise"],
                   "dlg_vs_control": e["dlg_vs_control"]}
            for name, e in per.items()}


def _reach_text(c: dict | None) -> str:
    return "never" if c is None else f"{c['estimate']:.0f} ({c['low']:.0f}-{c['high']:.0f})"


def mnist_best(results_file: str | Path) -> dict[str, dict[str, tuple[float, float, float] | None]]:
    """The best MNIST-FID of each integrator from noise and with DLG: ``(fid, nfe_full, nfe_paper)`` or ``None``."""
    data = _read_json(Path(results_file))
    best: dict[str, dict] = {}
    for p in data["points"]:
        if p.get("fid") is None or not math.isfinite(p["fid"]):
            continue
        kind = "noise" if p["variant"] == "vanilla" else "dlg"
        row = best.setdefault(p["integrator"], {"noise": None, "dlg": None})
        if row[kind] is None or p["fid"] < row[kind][0]:
            row[kind] = (float(p["fid"]), float(p["nfe"]), float(p.get("nfe_paper", p["nfe"])))
    return best


def mnist_verdicts(seeds_file: str | Path) -> dict[str, dict]:
    """The MNIST points that decide a verdict, re-run over seeds (``bench/mnist_seeds.py``); ``{}`` without the file.

    Returns ``{integrator: {"noise" | "dlg": {"fid_mean", "fids", "nfe", "setting", "n_seeds"}, "verdict": verdict
    dict (``uncertainty.difference_verdict``: the mean FID difference DLG - noise with its interval),
    "sentence": str}}``.
    """
    path = Path(seeds_file)
    if not path.exists():
        return {}
    data = _read_json(path)
    try:
        found = data["findings"]
    except KeyError:
        raise ValueError(f"{path}: not an MNIST-over-seeds result (no findings)") from None
    out = {}
    for name, e in found.items():
        arms = {kind: e["arms"][var] for kind, var in (("noise", "vanilla"), ("dlg", "dlg-argmax"))}
        out[name] = {kind: {"fid_mean": float(np.mean(a["fid"])), "fids": a["fid"], "intervals": a["interval"],
                            "nfe": a["nfe"], "setting": a["setting"], "n_seeds": len(a["fid"])}
                     for kind, a in arms.items()}
        out[name] |= {"verdict": e["verdict"], "sentence": e["sentence"], "n": data.get("settings", {}).get("n")}
        if "verdict_at_cost" in e:  # DLG against the cheapest run from noise that costs at least as much
            c = e["arms"]["vanilla-at-dlg-cost"]
            out[name] |= {"verdict_at_cost": e["verdict_at_cost"], "sentence_at_cost": e["sentence_at_cost"],
                          "noise_at_cost": {"fid_mean": float(np.mean(c["fid"])), "fids": c["fid"],
                                            "intervals": c["interval"], "nfe": c["nfe"], "setting": c["setting"],
                                            "n_seeds": len(c["fid"])}}
    return out


def short_difference(v: dict) -> str:
    """A :func:`~dmcmc_edu.evaluation.uncertainty.difference_verdict` (its dict) in a few words (DLG - noise)."""
    d, n = v["ratio"], v["n_seeds"]
    ci = f"{d['low']:+.1f} to {d['high']:+.1f}"
    if v["outcome"] == "no_difference":
        return f"no measurable difference (DLG - noise {d['estimate']:+.1f}, {ci}), {n} seeds"
    better = "DLG" if v["outcome"] == "a_cheaper" else "noise"
    return f"{better} better (DLG - noise {d['estimate']:+.1f}, {ci}), {n} seeds"


def _pairs(pairs: list[tuple[float, float]]) -> str:
    return ", ".join(f"{fid:g}@{nfe:g}" for fid, nfe in pairs)


def _num(x: float | None, fmt: str = "{:.0f}") -> str:
    return "never" if x is None else fmt.format(x)


def claims_vs_measured(results_dir: str | Path) -> list[dict[str, str]]:
    """One row per integrator: the paper's CIFAR10 claim beside what the toolkit measured (see the module doc).

    ``results_dir`` is the repository's ``bench/results``.  Every cell is a string ready for a table.
    """
    root = Path(results_dir)
    ring = toy_reach_seeds(root / "seeds" / "ring_seeds.json")
    lowrank = toy_reach_seeds(root / "seeds" / "lowrank_seeds.json")
    mnist = mnist_best(root / "mnist_n2000" / "results.json")
    mnist_seeds = mnist_verdicts(root / "mnist_seeds" / "mnist_seeds.json")
    rows = []
    for name, label in INTEGRATOR_NAMES.items():
        paper = PAPER_FID["cifar10"][name]
        row = {"integrator": label,
               "paper CIFAR10: without DLG (FID@NFE)": _pairs(paper["without"]),
               "paper CIFAR10: with DLG": _pairs(paper["with"])}
        for tag, reach in (("ring", ring), ("64-d", lowrank)):
            r = reach.get(name)
            if r is None:
                row[f"{tag}: NFE noise / control / DLG"] = row[f"{tag}: DLG NFE / noise NFE"] = "—"
                continue
            row[f"{tag}: NFE noise / control / DLG"] = " / ".join(_reach_text(r[k]) for k in ("noise", "control",
                                                                                               "dlg"))
            row[f"{tag}: DLG NFE / noise NFE"] = short_verdict(r["dlg_vs_noise"])
        m = mnist.get(name, {})
        noise, dlg = m.get("noise"), m.get("dlg")
        ms = mnist_seeds.get(name)
        if ms is not None:  # re-run over seeds: the mean FID over the seeds and the verdict
            k = f"{ms['noise']['n_seeds']} seeds" + (f", n = {ms['n']}" if ms.get("n") else "")
            row["MNIST-FID: best from noise"] = f"{ms['noise']['fid_mean']:.1f}@{ms['noise']['nfe']:.0f} ({k})"
            row["MNIST-FID: best with DLG (paper count)"] = (f"{ms['dlg']['fid_mean']:.1f}@{ms['dlg']['nfe']:.0f} "
                                                              f"({dlg[2]:.0f}) ({k})")
            row["MNIST: DLG vs noise"] = short_difference(ms["verdict"])
            rows.append(row)
            continue
        row["MNIST-FID: best from noise"] = "—" if noise is None else f"{noise[0]:.1f}@{noise[1]:.0f} (1 seed)"
        row["MNIST-FID: best with DLG (paper count)"] = ("—" if dlg is None
                                                          else f"{dlg[0]:.1f}@{dlg[1]:.0f} ({dlg[2]:.0f}) (1 seed)")
        row["MNIST: DLG vs noise"] = "no verdict (one seed)"
        rows.append(row)
    return rows


def modern_solvers_answer(table_file: str | Path, budgets=(10, 20)) -> list[dict[str, str]]:
    """DLG + the modern solvers against every peer at equal NFE per independent sample (``bench/modern_solvers.py``).

    One row per budget: the best DLG point within the budget (by NFE per independent sample, full ledger), the best
    peer within it (fewest metrics outside the noise floors, then lowest W2; k-diffusion's samplers, each solver from
    sigma_max, the controls, the paper's six), and what the cheapest DLG point inside every floor costs.
    """
    data = _read_json(Path(table_file))
    rows = []
    for budget in budgets:
        entry = data["table"].get(str(budget))
        if entry is None:
            raise ValueError(f"{table_file}: no budget {budget} (budgets: {sorted(data['table'], key=float)})")
        peers = [r for r in entry["rows"] if r["kind"] != "dlg"]
        best = min(peers, key=lambda r: (r["n_failing"], r["w2"]))
        dlg, inside = entry["dlg_best"], entry["dlg_first_inside_floors"]

        def describe(r: dict | None) -> str:
            if r is None:
                return "none within the budget"
            name = f"{r['group']}, {r['label']}" if r["kind"] == "k-diffusion" else r["label"]
            outside = f"{r['n_failing']} metric{'' if r['n_failing'] == 1 else 's'} outside"
            return f"{name} ({r['nfe_per_independent']:.0f} NFE, {outside}, W2 {r['w2']:.3f})"

        rows.append({"NFE per independent sample": str(budget), "best DLG + solver": describe(dlg),
                     "best peer": describe(best),
                     "cheapest DLG inside every floor": ("never" if inside is None else
                                                         f"{inside['nfe_per_independent']:.0f} NFE "
                                                         f"({inside['nfe']:.1f} per output, ESS ratio "
                                                         f"{inside['ess_ratio']:.2f})")})
    return rows


COURSE = {
    "00_overview.ipynb": ("the paper, our measurements, the words, this map", "—"),
    "01_mixtures_and_noise.ipynb": ("Gaussian mixtures with exact scores, noising, denoisers, Tweedie, the six "
                                    "integrators and NFE", "A1 Noise and denoising"),
    "02_integrators_vs_nfe.ipynb": ("quality against NFE of the six integrators from noise; why few steps fail",
                                    "A2 Integrators"),
    "03_denoising_langevin_gibbs.ipynb": ("chains on (x, sigma), the sigma-updates, the pick, DLG at equal NFE, ESS, "
                                          "the ledger", "A3 Posterior and Langevin, A4 DLG, A5 Classifier"),
    "04_dlg_acceleration.ipynb": ("the result: DLG against noise and the controls at equal NFE, full ledger, over "
                                  "seeds", "A6 Research question"),
    "05_dlg_deep_dive.ipynb": ("why: mixing, remedies, the paper's settings and their cost, a learned model", "A6"),
    "06_mnist.ipynb": ("the image rung on a CPU: a U-Net score model, the classifier, DLG on images, MNIST-FID",
                       "A5 (classifier on images)"),
    "07_gpu_lab_cifar10_celebahq.ipynb": ("optional GPU lab: the paper's pipeline with a score_sde checkpoint (on a "
                                          "CPU: a small fixture)", "—"),
    "08_explorers.ipynb": ("live sliders: a DLG explorer and an integrator explorer", "A2, A4 (try their settings "
                                                                                       "live)"),
}
"""The walkthroughs in reading order: file -> (what it teaches, the assignment that goes with it)."""

READING_RULE = {"words_per_minute": 200, "code_lines_per_minute": 10, "minutes_per_figure": 1.0}
"""How :func:`reading_minutes` estimates a notebook's reading time: prose at 200 words a minute, code at 10 lines a
minute (read, not typed), and one minute per figure; the rule is printed with the map."""


def _notebook_cells(path: str | Path) -> list[dict]:
    """The cells of a stored notebook (its JSON; nbformat is not a dependency of the package)."""
    try:
        return json.loads(Path(path).read_text())["cells"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ValueError(f"{path}: not a Jupyter notebook (no cells)") from None


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def reading_minutes(path: str | Path) -> float:
    """Estimated reading time of a notebook in minutes (:data:`READING_RULE`: its words, code lines and figures)."""
    cells = _notebook_cells(path)
    words = sum(len(_source(c).split()) for c in cells if c["cell_type"] == "markdown")
    lines = sum(len([x for x in _source(c).splitlines() if x.strip() and not x.lstrip().startswith("#")])
                for c in cells if c["cell_type"] == "code")
    figures = sum(1 for c in cells if c["cell_type"] == "code" for o in c.get("outputs", [])
                  if "image/png" in o.get("data", {}))
    r = READING_RULE
    return words / r["words_per_minute"] + lines / r["code_lines_per_minute"] + figures * r["minutes_per_figure"]


def run_seconds(path: str | Path) -> float | None:
    """Seconds the notebook's code cells took at its last execution (the kernel's timestamps stored in each cell's
    ``metadata.execution``: reply minus input), or ``None`` where a cell has no timestamps."""
    total = 0.0
    for c in _notebook_cells(path):
        if c["cell_type"] != "code" or not _source(c).strip():
            continue
        ex = c.get("metadata", {}).get("execution") or {}
        if "iopub.execute_input" not in ex or "shell.execute_reply" not in ex:
            return None
        t0, t1 = (datetime.datetime.fromisoformat(ex[k].replace("Z", "+00:00"))
                  for k in ("iopub.execute_input", "shell.execute_reply"))
        total += (t1 - t0).total_seconds()
    return total


def course_map(notebooks_dir: str | Path) -> list[dict[str, str]]:
    """The course map: each walkthrough with what it teaches, its estimated reading time (:data:`READING_RULE`), its
    measured run time (:func:`run_seconds`, the stored notebook's last execution) and its assignment."""
    root = Path(notebooks_dir)
    rows = []
    for name, (teaches, assignment) in COURSE.items():
        path = root / name
        if not path.is_file():
            raise FileNotFoundError(f"course_map: {path} is missing")
        secs = run_seconds(path)
        run = "not timed" if secs is None else (f"{secs:.0f} s" if secs < 90 else f"{secs / 60:.1f} min")
        rows.append({"#": name[:2], "notebook": f"`{name}`", "what it teaches": teaches,
                     "read (estimated)": f"{5 * max(1, round(reading_minutes(path) / 5))} min",
                     "run (measured)": run, "assignments that draw on it": assignment})
    return rows


def markdown_table(rows: list[dict[str, str]]) -> str:
    """Rows of equal keys as a Markdown table (for ``IPython.display.Markdown`` or a README)."""
    if not rows:
        raise ValueError("markdown_table: no rows")
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def plot_paper_claims(dataset: str = "cifar10", ax=None):
    """The paper's FID against NFE (its count), without and with DLG, one colour per integrator, log axes.

    Markers that would lie within a marker's width of each other are drawn side by side (a small shift in log
    NFE, said on the panel); the values are those of :data:`~dmcmc_edu.paper.PAPER_FID`."""
    if dataset not in PAPER_FID:
        raise ValueError(f"unknown dataset {dataset!r}; known: {sorted(PAPER_FID)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.2))
    colours = plt.get_cmap("tab10")
    for i, (name, label) in enumerate(INTEGRATOR_NAMES.items()):
        entry = PAPER_FID[dataset][name]
        for kind, style in (("without", "o--"), ("with", "s-")):
            fid, nfe = zip(*entry[kind])
            ax.plot(nfe, fid, style, color=colours(i), label=label if kind == "with" else None, ms=5)
    ax.plot([], [], "ko--", label="circles, dashed: without DLG")
    ax.plot([], [], "ks-", label="squares, solid: with DLG")
    ax.set(xscale="log", yscale="log", xlabel="NFE per sample (the paper's count)", ylabel="FID (lower is better)",
           title=f"The paper's claims: {'CIFAR10' if dataset == 'cifar10' else 'CelebA-HQ-256'}")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(ticker.NullFormatter())
    lo, hi = ax.get_ylim()
    ax.set_yticks([t for t in (2, 3, 5, 10, 20, 50, 100, 200, 500) if lo <= t <= hi])
    ax.set_xticks([t for t in (10, 20, 50, 100, 200, 500, 1000) if t <= 1.2 * ax.get_xlim()[1]])
    ax.legend(fontsize=8, ncol=2)
    ax.grid(alpha=0.3, which="both")
    # readings that coincide (CelebA: KAR1 127 and RK45 126 at 400 NFE) would hide one marker under the other:
    # spread them sideways by a marker's width (the values, and the tables printed from PAPER_FID, are unchanged)
    if dodge_markers(ax):
        ax.text(0.99, 0.01, "markers at the same reading are drawn side by side", transform=ax.transAxes,
                ha="right", va="bottom", fontsize=7, color="0.35")
    return ax


#: FIDs read off the paper's figures closer than this are "the same FID" (reading a log-scale plot by eye)
PAPER_READING_TOLERANCE = 0.1


def paper_claims_read(dataset: str = "cifar10") -> list[str]:
    """One line per integrator: what the paper's own numbers say about DLG, in the paper's NFE count.

    For each integrator, the best point without DLG (lowest FID) and the cheapest point with DLG whose FID is at
    most that FID plus :data:`PAPER_READING_TOLERANCE`: "lower FID" or "the same FID" at which share of the NFE;
    where no DLG point gets there, the best DLG point and "higher FID".  The paper gives one FID per point and no
    interval, so these lines read its claims, they do not measure them.
    """
    if dataset not in PAPER_FID:
        raise ValueError(f"unknown dataset {dataset!r}; known: {sorted(PAPER_FID)}")
    lines = []
    for name, label in INTEGRATOR_NAMES.items():
        fid_w, nfe_w = min(PAPER_FID[dataset][name]["without"])
        matching = [(nfe, fid) for fid, nfe in PAPER_FID[dataset][name]["with"]
                    if fid <= fid_w + PAPER_READING_TOLERANCE]
        if matching:
            nfe, fid = min(matching)
            quality = "the same FID" if abs(fid - fid_w) <= PAPER_READING_TOLERANCE else "a lower FID"
        else:
            fid, nfe = min(PAPER_FID[dataset][name]["with"])
            quality = "a higher FID"
        lines.append(f"{label}: without DLG {fid_w:g} at {nfe_w:g} NFE; with DLG {fid:g} at {nfe:g} NFE: {quality} "
                     f"at {nfe / nfe_w:.0%} of the NFE")
    return lines


# ----------------------------------------------------------------------------- the README's measured sentences
#
# The README's headline and its toy-rung findings are printed by this code from the stored results, between
# markers; tests/test_overview.py checks that the README holds exactly what the data say now, and
# ``python bench/readme_numbers.py`` rewrites the blocks after new results land.

_TOY_TARGETS = {"ring": "the 2-d ring", "lowrank": "the 64-d mixture"}
#: targets of the README's verdicts over seeds: the exact ones, and the learned ring once its replicates are stored
_LEARNED = {"ring_learned": "the 2-d ring with a learned denoiser"}


def _or_list(items: list[str]) -> str:
    """'a', 'a or b', 'a, b or c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _seed_targets(root: Path) -> dict[str, str]:
    return {**_TOY_TARGETS, **{k: v for k, v in _LEARNED.items() if (root / "seeds" / f"{k}_seeds.json").is_file()}}


def _outcome_lists(reach: dict, key: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"a_cheaper": [], "b_cheaper": [], "no_difference": [], "only_b": [], "only_a": [],
                                 "neither": []}
    for name, r in reach.items():
        v = r[key]
        label = INTEGRATOR_NAMES.get(name, name)
        if v["outcome"] == "no_difference" and "sweep's resolution" in v["text"]:
            label += " (at the sweep's resolution: between two step counts from noise)"
        elif v.get("ratio"):
            label += f" {v['ratio']['estimate']:.2f}x ({v['ratio']['low']:.2f}-{v['ratio']['high']:.2f})"
        out[v["outcome"]].append(label)
    return out


def _join(items: list[str]) -> str:
    return ", ".join(items) if items else "none"


def readme_blocks(results_dir: str | Path) -> dict[str, str]:
    """The README's measured blocks (``headline``, ``toy``), printed from ``bench/results/seeds``."""
    root = Path(results_dir)
    targets = _seed_targets(root)
    reach = {stem: toy_reach_seeds(root / "seeds" / f"{stem}_seeds.json") for stem in targets}
    n_seeds = {stem: len(_read_json(root / "seeds" / f"{stem}_seeds.json")["findings"]["seeds"])
               for stem in targets}
    def unconfirmed(stem: str, name: str, key: str) -> bool:  # the re-run on fresh seeds does not say the same
        path = root / "seeds" / f"{stem}_recheck.json"
        return path.is_file() and any(r["integrator"] == name and r["comparison"] == key and r["status"] != "holds"
                                      for r in _read_json(path)["rows"])

    def listed(key: str, outcomes: tuple) -> list[str]:
        out = []
        for stem, title in targets.items():
            for k, r in reach[stem].items():
                if r[key]["outcome"] in outcomes:
                    note = ", not confirmed on fresh seeds" if unconfirmed(stem, k, key) else ""
                    out.append(f"{INTEGRATOR_NAMES.get(k, k)} on {title} ({short_verdict(r[key])}{note})")
        return out

    seeds = " and ".join(sorted({f"{n_seeds[s]}" for s in targets}))
    mnist = mnist_verdicts(root / "mnist_seeds" / "mnist_seeds.json")
    cheaper, reaches_alone = listed("dlg_vs_noise", ("a_cheaper",)), listed("dlg_vs_control", ("a_cheaper",
                                                                                                "only_a"))
    first = (f"DLG is measurably cheaper than sampling from noise for {'; '.join(cheaper)}" if cheaper else
             "DLG is not measurably cheaper than sampling from noise with any of the paper's six integrators, on "
             + _or_list(list(targets.values())))
    second = ("Against a simple control without any chain, DLG is cheaper, or reaches the quality where no control "
              f"does, for {'; '.join(reaches_alone)}" if reaches_alone else
              "Nor is it cheaper than a simple control without any chain")
    headline = (
        "**The headline.** By the paper's own count DLG reaches a given FID with several times "
        "fewer network evaluations (NFE); counting every evaluation (the chains' initialisation, burn-in and the "
        "noise-level classifier) and the correlation between a chain's outputs, and repeating every toy sweep "
        f"over {seeds} seeds, {first}. {second}; `notebooks/00_overview.ipynb` puts the paper's claims beside these "
        f"measurements. {_mnist_headline(mnist)}")
    lines = ["On exact mixtures, counting every evaluation (initialisation, burn-in, classifier calls as one "
             "evaluation each) and dividing by the measured effective sample size, each verdict is the NFE ratio "
             "DLG / other over the seeds, paired by seed, with its 95% bootstrap interval; a setting counts when "
             "it reaches the integrator's reference quality in at least 7 of 8 seeds.", ""]
    for stem, title in targets.items():
        for key, other in (("dlg_vs_noise", "sampling from noise"), ("dlg_vs_control", "the best control")):
            o = _outcome_lists(reach[stem], key)
            cap = title[:1].upper() + title[1:]
            lines.append(f"* {cap} ({n_seeds[stem]} seeds), DLG against {other}: cheaper for "
                         f"{_join(o['a_cheaper'])}; dearer for {_join(o['b_cheaper'])}; no measurable "
                         f"difference for {_join(o['no_difference'])}; only {other} reaches for "
                         f"{_join(o['only_b'])}; only DLG reaches for {_join(o['only_a'])}; neither for "
                         f"{_join(o['neither'])}.")
        long_file = root / "seeds" / f"{stem}_long.json"
        if long_file.is_file():
            parts = []
            for r in _read_json(long_file)["rows"]:
                med = {k: float(np.nanmedian([np.nan if v is None else v for v in r[k]]))
                       for k in ("nfe", "ess_ratio", "nfe_per_independent")}
                kind = "the paper's settings" if "paper" in r["tags"] else "the mixing remedy"
                parts.append(f"{kind} with chains of {r['outputs_per_chain']} steps: {med['nfe']:.1f} NFE per output "
                             f"(full ledger), ESS ratio {med['ess_ratio']:.3f}, {med['nfe_per_independent']:.0f} per "
                             f"independent sample, reaches in {sum(r['reaches'])}/{len(r['reaches'])} seeds")
            lines.append(f"* {title[:1].upper() + title[1:]}, the paper's regime (KAR1, chains of 250 and 500 Gibbs "
                         "steps, one output per "
                         "step): " + "; ".join(parts) + ".")
        recheck = root / "seeds" / f"{stem}_recheck.json"
        if recheck.is_file():
            rc = _read_json(recheck)
            fresh = rc["settings"]["recheck_seeds"]
            count = {k: sum(r["status"] == k for r in rc["rows"]) for k in ("holds", "weakened", "contradicted")}
            bad = [f"{INTEGRATOR_NAMES.get(r['integrator'], r['integrator'])} "
                   f"{r['comparison'].replace('dlg_vs_', 'vs ')} ({r['status']})" for r in rc["rows"]
                   if r["status"] != "holds"]
            lines.append(f"* {title[:1].upper() + title[1:]}, the chosen settings re-run on fresh seeds "
                         f"{fresh[0]}-{fresh[-1]}: "
                         + ", ".join(f"{v} {k}" for k, v in count.items()) + f" of {len(rc['rows'])} verdicts"
                         + (f" ({'; '.join(bad)})" if bad else "") + ".")
    lines += ["", "Tables, settings and commands: `bench/results/seeds/*_seeds.md` and `*_recheck.md`; notebooks 04 "
              "and 05."]
    return {"headline": headline, "toy": "\n".join(lines), "ledger": _ledger_block(root),
            "mnist": _mnist_block(mnist, root), "modern": modern_seeds_block(root),
            "modern_one_seed": modern_one_seed_block(root)}


def modern_seeds_block(results_dir: str | Path) -> str:
    """The modern-solver sweeps repeated over seeds (``bench/results/seeds_modern``): each solver's verdicts."""
    root = Path(results_dir)
    lines = []
    learned = {k: v for k, v in _LEARNED.items() if (root / "seeds_modern" / f"{k}_seeds.json").is_file()}
    for stem, title in {**_TOY_TARGETS, **learned}.items():
        path = root / "seeds_modern" / f"{stem}_seeds.json"
        if not path.is_file():
            lines.append(f"* {title[:1].upper() + title[1:]}: one seed per point (not yet repeated over seeds).")
            continue
        reach = toy_reach_seeds(path)
        n = len(_read_json(path)["findings"]["seeds"])
        parts = [f"{SOLVER_NAMES.get(k, k)}: against sampling from noise {short_verdict(r['dlg_vs_noise'])}; "
                 f"against the best control {short_verdict(r['dlg_vs_control'])}" for k, r in reach.items()]
        lines.append(f"* {title[:1].upper() + title[1:]}, {n} seeds, DLG with each solver (NFE per independent "
                     "sample to reach the solver's reference, ratio DLG / other): " + "; ".join(parts) + ".")
    return "\n".join(lines)


def modern_one_seed_block(results_dir: str | Path) -> str:
    """The one-seed modern-solver sweeps (``bench/results/modern_solvers``), read from their stored findings.

    Toys: per solver, the cheapest NFE per independent sample at which a point from noise, the best control and
    DLG have every metric inside the noise floors ("none" where no point of the sweep does).  MNIST: per solver,
    the lowest MNIST-FID from noise and with DLG, each with its NFE (DLG: full ledger, the paper's count in
    brackets).
    """
    root = Path(results_dir) / "modern_solvers"
    lines = []
    for stem, title in _TOY_TARGETS.items():
        per = _read_json(root / f"{stem}_findings.json")["per_integrator"]
        parts = []
        for name in SOLVER_NAMES:
            if name not in per:
                continue
            r = per[name]["floors_reach"]
            cell = {k: ("none" if not r.get(k) else f"{r[k]['nfe_per_independent']:.0f}")
                    for k in ("noise", "control", "dlg")}
            parts.append(f"{SOLVER_NAMES[name]} from noise {cell['noise']}, best control {cell['control']}, "
                         f"DLG {cell['dlg']}")
        lines.append(f"* {title[:1].upper() + title[1:]}, one seed per point, the cheapest NFE per independent "
                     "sample with every metric inside its noise floor: " + "; ".join(parts) + ".")
    mnist_file = root / "mnist" / "results.json"
    if mnist_file.is_file():
        doc = _read_json(mnist_file)
        parts = []
        for name in SOLVER_NAMES:
            pts = [p for p in doc["points"] if p["integrator"] == name]
            if not pts:
                continue
            best = {v: min((p for p in pts if (p["variant"] == "vanilla") == (v == "noise")),
                           key=lambda p: p["fid"], default=None) for v in ("noise", "dlg")}
            text = f"{SOLVER_NAMES[name]} from noise " + (
                f"{best['noise']['fid']:.1f} at {best['noise']['nfe']:.0f} NFE" if best["noise"] else "not run")
            if best["dlg"]:
                d = best["dlg"]
                text += f", with DLG {d['fid']:.1f} at {d['nfe']:.1f} NFE ({d['nfe_paper']:.0f} by the paper's count)"
            parts.append(text)
        lines.append(f"* MNIST ({doc['settings']['n']} samples per point, one seed), the lowest MNIST-FID of each "
                     "kind: " + "; ".join(parts) + ".")
    return "\n".join(lines)


def _mnist_headline(mnist: dict) -> str:
    if not mnist:
        return "The MNIST rung has single runs only (no verdict yet)."
    n = sorted({e["noise"]["n_seeds"] for e in mnist.values()})
    def named(outcome: str) -> list[str]:  # the integrator, with the two arms' NFE (DLG's by the full ledger)
        return [f"{INTEGRATOR_NAMES.get(k, k)} (DLG at {e['dlg']['nfe']:.1f} NFE, from noise at "
                f"{e['noise']['nfe']:.0f})" for k, e in mnist.items() if e["verdict"]["outcome"] == outcome]

    better, worse, same = named("a_cheaper"), named("b_cheaper"), named("no_difference")
    parts = ([f"DLG's best MNIST-FID is measurably lower than the best from noise for {_join(better)}"] if better
             else []) + ([f"measurably higher for {_join(worse)}"] if worse else []) + \
        ([f"no measurable difference in MNIST-FID for {_join(same)}"] if same else [])
    cost = [f"{INTEGRATOR_NAMES.get(k, k)}: {e['sentence_at_cost'].rstrip('.')}" for k, e in mnist.items()
            if "sentence_at_cost" in e]
    return (f"On MNIST, the deciding points re-run over {'/'.join(map(str, n))} seeds with bootstrap intervals: "
            + "; ".join(parts)
            + (". At DLG's cost, against the cheapest run from noise that costs at least as much: " + "; ".join(cost)
               if cost else "") + ".")


def _mnist_block(mnist: dict, root: Path) -> str:
    if not mnist:
        return "No MNIST point has been re-run over seeds yet (`bench/mnist_seeds.py`)."
    data = _read_json(root / "mnist_seeds" / "mnist_seeds.json")
    st = data["settings"]
    sweep_n = st.get("sweep_n", st["n"])
    lines = [f"Each integrator's best point from noise and best point with DLG in the {sweep_n:,}-sample sweep, "
             f"re-run with seeds {', '.join(map(str, st['seeds']))} and {st['n']:,} samples per set "
             "(`bench/results/mnist_seeds`; FID is biased upwards at small n, so these FIDs are compared with each "
             f"other only); MNIST-FID (not Inception FID) with a {100 * CONFIDENCE:g}% bootstrap interval over the "
             "samples (DLG: whole chains resampled), and the mean FID difference over the seeds:", ""]
    for k, e in mnist.items():
        fid = {kind: ", ".join(f"{f:.1f}" for f in e[kind]["fids"]) for kind in ("noise", "dlg")}
        lines.append(f"* {INTEGRATOR_NAMES.get(k, k)}: from noise {fid['noise']} at {e['noise']['nfe']:.0f} NFE; "
                     f"DLG {fid['dlg']} at {e['dlg']['nfe']:.1f} NFE (full ledger). {e['sentence']}")
        if "sentence_at_cost" in e:
            c = e["noise_at_cost"]
            lines.append(f"* {INTEGRATOR_NAMES.get(k, k)} at DLG's cost: from noise "
                         + ", ".join(f"{f:.1f}" for f in c["fids"]) + f" at {c['nfe']:.0f} NFE (the sweep's "
                         f"cheapest run from noise that costs at least DLG's NFE). {e['sentence_at_cost']}")
    not_run = [INTEGRATOR_NAMES[k] for k in INTEGRATOR_NAMES if k not in mnist]
    if not_run:
        lines.append(f"* {_join(not_run)}: single runs only, no verdict (`bench/results/mnist_n2000`).")
    long_file = root / "mnist_seeds" / "mnist_long.json"
    if long_file.is_file():
        lg = _read_json(long_file)
        for length, e in lg["summary"].items():
            lines.append(f"* The paper's regime, DLG chains of {length} Gibbs steps (one output per step, KAR1 "
                         f"denoising, seeds {', '.join(map(str, lg['settings']['seeds']))}, "
                         f"n = {lg['settings']['n']}): "
                         f"{e['nfe']:.1f} NFE per output by the full ledger, MNIST-FID "
                         + ", ".join(f"{f:.1f}" for f in e["fids"])
                         + f", the digit changes between consecutive outputs in {100 * e['digit_change_rate']:.0f}% "
                           f"of cases. {e.get('sentence', '')}".rstrip())
    return "\n".join(lines)


def _ci(r: dict, fmt: str = ".3g") -> str:
    return f"{r['estimate']:{fmt}} (95% CI {r['low']:{fmt}}-{r['high']:{fmt}})"


def _ledger_block(root: Path) -> str:
    """The measured prices of the cost-weighted ledger (``bench/results/ledger_costs``) and what they change."""
    data = _read_json(root / "ledger_costs" / "ledger_costs.json")
    oracle = {o["target"]: o["prices"] for o in data["oracle"]}
    mnist = next(c for c in data["classifier"] if c["name"].startswith("mnist"))
    lines = [f"Measured on {data['device']}, each a median over {data['repeats']} interleaved timings "
             "with its 95% bootstrap interval, in calls of the score model the run uses:", ""]
    for target, title in _TOY_TARGETS.items():
        pr = oracle[target]
        lines.append(f"* {title[:1].upper() + title[1:]}: one exact sigma-posterior row (the `exact` sigma-update, "
                     "200 levels) costs "
                     f"{_ci(pr['oracle_posterior']['ratio'])} exact-denoiser rows, one log-density row (MALA) "
                     f"{_ci(pr['oracle_log_prob']['ratio'])}, one row of the ladder's MLP classifier "
                     f"{_ci(pr['classifier']['ratio'])}.")
    lines.append(f"* MNIST: one classifier row costs {mnist['flops_ratio']:.3g} of a U-Net row in FLOPs and "
                 f"{_ci(mnist['wall']['ratio'])} in CPU wall time (batch {mnist['batch']}).")
    lines += ["", "The full ledger counts a classifier call as one evaluation and the exact posterior and the "
              "log-density as free; the cost-weighted verdicts over seeds (`bench/results/seeds/*_seeds.md`, "
              "notebook 04) price them instead. Against the analytic denoiser of a small mixture the exact "
              "posterior is expensive: that is a fact about the teaching oracle, which no trained model offers. "
              "Commands and the example ledgers: `bench/results/ledger_costs/README.md`."]
    return "\n".join(lines)
