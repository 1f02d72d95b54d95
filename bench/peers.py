"""Peers side by side: k-diffusion's samplers on the same exact mixture denoiser, beside ours and DLG.

    python bench/peers.py --target lowrank --out bench/results/toy [--ladder bench/results/toy/lowrank.json]

For each NFE budget (5, 10, 20, 50) every sampler gets the largest number of
steps whose *counted* NFE (a counting wrapper around the model) stays within
the budget, on the Karras rho=7 schedule from the target's sigma_max to
sigma_min (then 0), from the same initial noise:

* k-diffusion (Crowson): Euler, Heun, Euler ancestral, DPM-2, DPM-2 ancestral,
  LMS, DPM++ 2S ancestral, DPM++ SDE, DPM++ 2M, DPM++ 2M SDE, DPM++ 3M SDE;
* ours: the six integrators of the paper from sigma_max (RK45 at the
  tolerance whose NFE lands closest below the budget);
* DLG: read from the ladder's result file (same target, n, seed, hence the
  same exact reference set and noise floors): the best DLG point whose NFE
  (full ledger) per output is within the budget -- and, separately, whose
  NFE per *independent* sample is.

Writes ``OUT/peers_<target>.json`` (every row: sampler, steps, counted NFE,
all metrics, inside-the-floor flags), ``OUT/peers_<target>.md`` (one table)
and ``OUT/peers_<target>.png`` (W2, mode-weight TV and |spread - 1| vs NFE), each written atomically.
Without ``--out`` a run goes to a new folder ``runs/peers-<UTC time>`` (where no ladder result lies, so name one
with ``--ladder`` for the DLG rows); the committed results (``bench/results/toy``) are rewritten only when named.
``--report-only --out DIR`` re-reads ``DIR/peers_<target>.json`` against the ladder's floors and rewrites DIR's
three files; it needs ``--out``:

    python bench/peers.py --target lowrank --out bench/results/toy --report-only

k-diffusion is an optional peer (the ``bench`` extra).  Its package
``__init__`` imports its training stack (wandb, CLIP, clean-fid, ...), so only
``k_diffusion.sampling`` is imported (it needs torchsde and torchdiffeq);
install with ``pip install --no-deps k-diffusion==0.1.1.post1 torchsde
torchdiffeq``.  Without it the script still runs our samplers and says so.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

PEERS = {  # k-diffusion function name -> evaluations per step (the last step of 2nd-order ones is a 1-eval Euler)
    "sample_euler": 1, "sample_heun": 2, "sample_euler_ancestral": 1, "sample_dpm_2": 2,
    "sample_dpm_2_ancestral": 2, "sample_lms": 1, "sample_dpmpp_2s_ancestral": 2, "sample_dpmpp_sde": 2,
    "sample_dpmpp_2m": 1, "sample_dpmpp_2m_sde": 1, "sample_dpmpp_3m_sde": 1,
}
BUDGETS = (5, 10, 20, 50)


def load_k_diffusion_sampling():
    """``k_diffusion.sampling`` without running the package ``__init__`` (which imports the training stack).

    Returns the module, or raises ImportError with an installation hint.
    """
    import importlib
    import importlib.util
    import types

    if "k_diffusion.sampling" in sys.modules:
        return sys.modules["k_diffusion.sampling"]
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("k-diffusion is not installed: pip install --no-deps k-diffusion==0.1.1.post1 torchsde "
                          "torchdiffeq  (the optional 'bench' peers)")
    if "k_diffusion" not in sys.modules:
        pkg = types.ModuleType("k_diffusion")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["k_diffusion"] = pkg
    try:
        return importlib.import_module("k_diffusion.sampling")
    except ImportError as err:
        raise ImportError(f"k_diffusion.sampling could not be imported ({err}); it needs torchsde and torchdiffeq: "
                          "pip install torchsde torchdiffeq") from err


def _steps_for_budget(evals_per_step: int, budget: int) -> int:
    """Largest step count whose NFE (second-order: 2 steps - 1) stays within the budget."""
    return max(1, (budget + 1) // 2) if evals_per_step == 2 else max(1, budget)


def run_peer(kd, name, model, ctx, steps, seed):
    from dmcmc_edu.core.contract import CountingDenoiser
    from dmcmc_edu.core.schedules import karras_sigmas

    n, d = ctx.n, ctx.d
    sigmas = karras_sigmas(torch.tensor([ctx.sigma_max], dtype=torch.float64), ctx.sigma_min, steps)[0]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * ctx.sigma_max
    D = CountingDenoiser(model, n_samples=n)
    torch.manual_seed(seed)  # k-diffusion draws its noise from the global generator
    kwargs = {}
    if name in ("sample_dpmpp_sde", "sample_dpmpp_2m_sde", "sample_dpmpp_3m_sde"):
        kwargs["noise_sampler"] = kd.BrownianTreeNoiseSampler(x, ctx.sigma_min, ctx.sigma_max, seed=seed)
    out = getattr(kd, name)(D, x, sigmas, disable=True, **kwargs)
    return out, D.nfe


def run_ours(name, model, ctx, budget, seed):
    from dmcmc_edu.core.integrators import sample_from_noise

    if name == "rk45":
        best = None
        for tol in (1e-1, 3e-2, 1e-2, 3e-3, 1e-3):
            x, info = sample_from_noise(model, (ctx.n, ctx.d), integrator="rk45", steps=1, sigma_max=ctx.sigma_max,
                                        sigma_min=ctx.sigma_min, generator=torch.Generator().manual_seed(seed),
                                        rtol=tol, atol=tol)
            if info.nfe <= budget:
                best = (x, info.nfe, f"rtol={tol:g}")
        return best
    if name in ("kar1", "kar2"):
        steps = (budget + 1) // 2
    else:
        steps = budget - 1  # + the Tweedie step
    if steps < 1:
        return None
    x, info = sample_from_noise(model, (ctx.n, ctx.d), integrator=name, steps=steps, sigma_max=ctx.sigma_max,
                                sigma_min=ctx.sigma_min, generator=torch.Generator().manual_seed(seed))
    return x, info.nfe, f"{steps} st"


def _row(ctx, sampler, family, budget, nfe, x, label, seconds):
    from dmcmc_edu.evaluation import metrics

    if not torch.isfinite(x).all():
        return {"sampler": sampler, "family": family, "budget": budget, "nfe": nfe, "label": label,
                "error": "non-finite outputs"}
    # the MMD kernel of the floors and of the ladder's points (not the median heuristic of this one pair)
    m = metrics.evaluate(ctx.mix, x, ctx.reference, ctx.ref_values, mmd_bandwidth=ctx.mmd_bandwidth)
    ok = metrics.within_floors(m, ctx.floors)
    return {"sampler": sampler, "family": family, "budget": budget, "nfe": nfe, "nfe_per_independent": nfe,
            "label": label, "metrics": m, "within_floor": ok, "failing": [k for k, v in ok.items() if not v and
                                                                          k != "all"], "seconds": seconds}


def dlg_rows(ladder_doc, budgets):
    """Best DLG points of a ladder result within each budget (per output, and per independent sample)."""
    from dmcmc_edu.experiments.ladder import _failing, point_label

    floors = ladder_doc["meta"]["floors"]
    pts = [p for p in ladder_doc["points"] if p["kind"] == "dlg" and p.get("metrics")]
    rows = []
    for b in budgets:
        for key, fam in (("nfe", "DLG (per output)"), ("nfe_per_independent", "DLG (per independent sample)")):
            cands = [p for p in pts if p[key] <= b]
            if not cands:
                continue
            best = min(cands, key=lambda p: (len(_failing(p, floors)), p["metrics"]["w2"]))
            fail = _failing(best, floors)
            rows.append({"sampler": "dlg+" + best["integrator"], "family": fam, "budget": b, "nfe": best["nfe"],
                         "nfe_per_independent": best["nfe_per_independent"], "label": point_label(best["settings"]),
                         "metrics": best["metrics"], "failing": fail,
                         "within_floor": {"all": not fail}, "ladder_id": best["id"]})
    return rows


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="lowrank")
    p.add_argument("--out", default=None,
                   help="the folder to write (default: a new folder runs/peers-<UTC time>); --report-only: the "
                        "folder that holds peers_<target>.json (required)")
    p.add_argument("--ladder", default=None, help="the ladder's result JSON (default OUT/<target>.json if present)")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budgets", default=",".join(map(str, BUDGETS)))
    p.add_argument("--floors", default=None,
                   help="a floors file (<target>_floors_n<n>.json of ladder.sweep_floors) to read every row against "
                        "instead of the ladder's own floors; bench/peers_seeds.py gives every seed the same one")
    p.add_argument("--report-only", action="store_true",
                   help="sample nothing: read OUT/peers_<target>.json again against the ladder's floors (and its "
                        "DLG rows) and rewrite its .md and .png")
    return p


def out_folder(args) -> Path:
    """``--out``, or a new folder ``runs/peers-<UTC time>`` (committed results are written only when named)."""
    from dmcmc_edu.runs import fresh_folder

    return Path(args.out) if args.out else fresh_folder("peers")


def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.report_only:
        if not args.out:
            p.error("--report-only needs --out DIR, the folder that holds peers_<target>.json")
        return report_only(args)
    torch.set_num_threads(1)
    from dmcmc_edu import targets
    from dmcmc_edu.core.integrators import PAPER_INTEGRATORS
    from dmcmc_edu.experiments.ladder import LadderContext, _clean
    from dmcmc_edu.targets import SpectralMixture

    out = out_folder(args)
    budgets = [int(b) for b in args.budgets.split(",")]
    refused = _other_settings(out / f"{peers_stem(args.target, args.seed)}.json", {
        "target": args.target, "n": args.n, "seed": args.seed, "budgets": budgets, "floors_file": args.floors})
    if refused:
        print(f"error: {refused}; nothing was written -- choose another --out", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    mix = targets.load_target(args.target)
    ladder_path = Path(args.ladder) if args.ladder else out / f"{Path(args.target).stem}.json"
    ladder_doc = json.loads(ladder_path.read_text()) if ladder_path.exists() else None
    if ladder_doc and (ladder_doc["meta"]["sweep"]["n"], ladder_doc["meta"]["sweep"]["seed"]) != (args.n, args.seed):
        print(f"note: {ladder_path} has another n/seed; its DLG rows are left out", file=sys.stderr)
        ladder_doc = None
    meta = dict(ladder_doc["meta"]) if ladder_doc else {}
    if args.floors:
        meta["floors"] = read_floors(args.floors)
        if ladder_doc:
            ladder_doc = dict(ladder_doc, meta=meta)
    ctx = LadderContext(mix, n=args.n, seed=args.seed, floors=meta.get("floors"), ref_values=meta.get("ref_values"))
    model = SpectralMixture(mix)
    try:
        kd = load_k_diffusion_sampling()
        kd_note = "k-diffusion " + _kd_version()
    except ImportError as err:
        kd, kd_note = None, f"k-diffusion not available: {err}"
        print(kd_note, file=sys.stderr)
    rows = []
    for b in budgets:
        seed = args.seed * 1000 + b
        if kd is not None:
            for name, per in PEERS.items():
                steps = _steps_for_budget(per, b)
                t0 = time.perf_counter()
                try:
                    x, nfe = run_peer(kd, name, model, ctx, steps, seed)
                except Exception as err:  # a peer failing is a result, not a crash
                    rows.append({"sampler": name.removeprefix("sample_"), "family": "k-diffusion", "budget": b,
                                 "label": f"{steps} st", "error": f"{type(err).__name__}: {err}"})
                    continue
                rows.append(_row(ctx, name.removeprefix("sample_"), "k-diffusion", b, nfe, x, f"{steps} st",
                                 time.perf_counter() - t0))
        for name in PAPER_INTEGRATORS:
            t0 = time.perf_counter()
            r = run_ours(name, model, ctx, b, seed)
            if r is not None:
                rows.append(_row(ctx, name, "ours (from sigma_max)", b, r[1], r[0], r[2], time.perf_counter() - t0))
    if ladder_doc:
        rows += dlg_rows(ladder_doc, budgets)
    doc = _clean({"meta": {"target": args.target, "n": args.n, "seed": args.seed, "budgets": budgets, "peers": kd_note,
                           "d": mix.d, "sigma_min": ctx.sigma_min, "sigma_max": ctx.sigma_max, "floors": ctx.floors,
                           "ladder": str(ladder_path) if ladder_doc else None, "floors_file": args.floors,
                           "command": "python bench/peers.py " + " ".join(sys.argv[1:] if argv is None else argv)},
                  "rows": rows})
    write_outputs(doc, out, peers_stem(args.target, args.seed))
    return 0


def _other_settings(path: Path, want: dict) -> str | None:
    """Why the peers file ``path`` may not be rewritten with the settings ``want`` (None: it may, or it is absent).

    A re-run with the same settings recomputes the same rows; one with other settings would replace them, so it is
    refused instead.
    """
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_text())["meta"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{path}: not a peers result file"
    differ = [f"{k} {meta.get(k)!r} (asked {v!r})" for k, v in want.items() if meta.get(k) != v]
    return f"{path}: made with other settings: {', '.join(differ)}" if differ else None


def peers_stem(target: str, seed: int = 0) -> str:
    """``peers_<target>`` for seed 0, ``peers_<target>_seed<S>`` for another seed (as the ladder's replicates)."""
    return f"peers_{Path(target).stem}" + (f"_seed{seed}" if seed else "")


def read_floors(path) -> dict:
    """The floors of a ``<target>_floors_n<n>.json`` file, with the MMD kernel they were measured with."""
    doc = json.loads(Path(path).read_text())
    try:
        return dict(doc["floors"], mmd_bandwidth=doc["settings"]["mmd_bandwidth"])
    except (KeyError, TypeError):
        raise SystemExit(f"{path}: not a floors file (ladder.sweep_floors writes one: settings, floors)") from None


def write_outputs(doc: dict, out: Path, stem: str) -> None:
    """``OUT/<stem>.json``, ``.md`` and ``.png``, each written atomically (a kill leaves the old file or the new)."""
    from dmcmc_edu.runs import atomic_write, write_json

    write_json(out / f"{stem}.json", doc, indent=1)
    md = markdown(doc)
    atomic_write(out / f"{stem}.md", lambda tmp: Path(tmp).write_text(md))
    atomic_write(out / f"{stem}.png", lambda tmp: plot(doc, tmp))
    print(md)


def report_only(args) -> int:
    """Re-mark the stored rows against the ladder's current floors; replace the DLG rows by the ladder's."""
    from dmcmc_edu.evaluation import metrics

    out = Path(args.out)
    stem = peers_stem(args.target, args.seed)
    doc = json.loads((out / f"{stem}.json").read_text())
    ladder_path = Path(args.ladder) if args.ladder else Path(doc["meta"]["ladder"])
    ladder_doc = json.loads(ladder_path.read_text())
    floors_file = args.floors or doc["meta"].get("floors_file")
    floors = read_floors(floors_file) if floors_file else ladder_doc["meta"]["floors"]
    ladder_doc = dict(ladder_doc, meta=dict(ladder_doc["meta"], floors=floors))
    rows = [r for r in doc["rows"] if not r["family"].startswith("DLG")]
    for r in rows:
        if r.get("metrics"):
            ok = metrics.within_floors(r["metrics"], floors)
            r.update(within_floor=ok, failing=[k for k, v in ok.items() if not v and k != "all"])
    doc["rows"] = rows + dlg_rows(ladder_doc, doc["meta"]["budgets"])
    doc["meta"]["floors"] = floors
    write_outputs(doc, out, stem)
    return 0


def _floors_text(floors: dict) -> str:
    if floors.get("kind") == "exact_pairs":
        return f"Noise floors (the {floors['quantile']:g} quantile over {floors['repeats']} pairs of exact sets)"
    return "Noise floors (mean + 3 sd over exact sets)"


def _kd_version() -> str:
    try:
        from importlib.metadata import version

        return version("k-diffusion")
    except Exception:
        return "(version unknown)"


def markdown(doc) -> str:
    m = doc["meta"]
    lines = [f"# Peers on `{m['target']}` (d = {m['d']}, n = {m['n']})", "",
             f"{m['peers']}; Karras rho=7 schedule {m['sigma_max']:.3g} -> {m['sigma_min']:.3g}; NFE counted. "
             + _floors_text(m["floors"]) + ": " + ", ".join(f"{k} {v['threshold']:.3g}" for k, v in
                                                                   m["floors"].items() if isinstance(v, dict)) + ".",
             "DLG rows come from the ladder's results (full ledger).", "",
             "| budget | family | sampler | settings | NFE | NFE/indep. | W2 | MMD² | mode TV | spread | "
             "on-manifold | NLL mean | failing |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(doc["rows"], key=lambda r: (r["budget"], r["family"], r["sampler"])):
        if r.get("error"):
            lines.append(f"| {r['budget']} | {r['family']} | {r['sampler']} | {r['label']} | — | — | "
                         f"{r['error'][:40]} | | | | | | |")
            continue
        mm = r["metrics"]
        lines.append(f"| {r['budget']} | {r['family']} | {r['sampler']} | {r['label']} | {r['nfe']:.1f} | "
                     f"{r['nfe_per_independent']:.1f} | {mm['w2']:.3f} | {mm['mmd2']:.2e} | {mm['mode_tv']:.3f} | "
                     f"{mm['spread']:.3f} | {mm['on_manifold']:.3f} | {mm['nll_mean']:.2f} | "
                     f"{','.join(r['failing']) or 'none'} |")
    return "\n".join(lines) + "\n"


def plot(doc, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in doc["rows"] if r.get("metrics")]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    floors = doc["meta"]["floors"]
    groups = {}
    for r in rows:
        groups.setdefault((r["family"], r["sampler"]), []).append(r)
    styles = {"k-diffusion": ("--", "o"), "ours (from sigma_max)": ("-", "s"), "DLG (per output)": ("-", "D"),
              "DLG (per independent sample)": (":", "D")}
    for i, ((fam, name), rs) in enumerate(sorted(groups.items())):
        ls, mk = styles.get(fam, ("-", "."))
        lab = f"{name} ({fam})" if not fam.startswith("DLG") else f"{fam}"
        if fam.startswith("DLG") and name != sorted(n for f, n in groups if f == fam)[0]:
            lab = None
        key = "nfe_per_independent" if fam == "DLG (per independent sample)" else "nfe"
        for ax, metric in zip(axes, ("w2", "mode_tv", "spread")):
            pts = sorted((r[key], abs(r["metrics"][metric] - 1) if metric == "spread" else r["metrics"][metric])
                         for r in rs)
            ax.plot(*zip(*pts), ls=ls, marker=mk, ms=3, lw=1, label=lab, color=f"C{i % 10}")
    for ax, metric, title in zip(axes, ("w2", "mode_tv", "spread"), ("W2", "mode-weight TV", "|spread - 1|")):
        thr = floors[metric]["threshold"] if metric != "spread" else floors["spread"]["threshold"]
        ax.axhline(thr, color="0.3", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("NFE")
        ax.set_title(title)
    axes[2].legend(fontsize=6, bbox_to_anchor=(1.02, 1), loc="upper left")
    m = doc["meta"]
    fig.suptitle(f"peers on {m['target']} (d = {m['d']}, n = {m['n']}); dotted: noise floor", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight", format="png")  # format: ``path`` may be a temporary name
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
