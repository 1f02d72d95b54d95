"""Sampler overhead: our KAR1 against k-diffusion's ``sample_heun`` on the same model and sigmas.

    python bench/overhead.py --out bench/results/toy [--target lowrank] [--batch 4096] [--steps 18] [--repeats 7]

Both run Karras et al. (2022) Algorithm 1 (deterministic Heun, rho=7 levels
from sigma_max to sigma_min, last step Euler to 0: 2 steps - 1 evaluations) on
the exact mixture denoiser (:class:`dmcmc_edu.targets.spectral.SpectralMixture`), from
the same initial noise, in float64.  Ours builds a per-sample schedule
([B, N + 1]), counts evaluations through a wrapper and checks every state for
NaN; k-diffusion uses one shared schedule.  Timed: ``repeats`` runs of each,
interleaved, after one warm-up; reported: median wall time of each, the ratio
ours / k-diffusion (median of the per-pair ratios and its spread), the time
spent inside the model (a timing wrapper) and so the sampler's share of the
total, and the largest difference between the two outputs (they must agree to
rounding).  Writes ``OUT/overhead_<target>_<device>.json`` and ``.png``.  Without ``--out`` a run goes to a new
folder ``runs/overhead-<UTC time>``; the committed results (``bench/results/toy``) are rewritten only when named.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


class TimedModel:
    """Wrap a denoiser and accumulate the wall time spent in it (synchronising CUDA around each call)."""

    def __init__(self, model, device):
        self.model, self.device, self.seconds, self.calls = model, torch.device(device), 0.0, 0

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __call__(self, x, sigma):
        self._sync()
        t0 = time.perf_counter()
        out = self.model(x, sigma)
        self._sync()
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return out


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="lowrank")
    p.add_argument("--out", default=None,
                   help="the folder to write (default: a new folder runs/overhead-<UTC time>)")
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--steps", type=int, default=18, help="Heun levels (NFE = 2 steps - 1)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    return p


def out_folder(args) -> Path:
    """``--out``, or a new folder ``runs/overhead-<UTC time>`` (committed results are written only when named)."""
    from dmcmc_edu.runs import fresh_folder

    return Path(args.out) if args.out else fresh_folder("overhead")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    from peers import load_k_diffusion_sampling

    from dmcmc_edu import targets
    from dmcmc_edu.core.integrators import kar1
    from dmcmc_edu.core.schedules import karras_sigmas
    from dmcmc_edu.experiments.ladder import _clean
    from dmcmc_edu.targets import SpectralMixture

    out = out_folder(args)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(args.device)
    mix = targets.load_target(args.target).to(device=dev)
    model = SpectralMixture(mix)
    smin, smax = mix.default_sigma_min(), mix.default_sigma_max()
    sigmas = karras_sigmas(torch.tensor([smax], dtype=torch.float64), smin, args.steps)[0].to(dev)
    x0 = torch.randn(args.batch, mix.d, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(dev) * smax
    try:
        kd = load_k_diffusion_sampling()
    except ImportError as err:
        print(f"k-diffusion is not available, nothing to compare: {err}", file=sys.stderr)
        doc = {"error": str(err), "target": args.target, "device": str(dev)}
        (out / f"overhead_{Path(args.target).stem}_{dev.type}.json").write_text(json.dumps(doc, indent=1))
        return 1

    def ours():
        tm = TimedModel(model, dev)
        _sync(dev)
        t0 = time.perf_counter()
        x, info = kar1(tm, x0.clone(), smax, smin, args.steps)
        _sync(dev)
        return x, time.perf_counter() - t0, tm.seconds, info.nfe

    def theirs():
        tm = TimedModel(model, dev)
        _sync(dev)
        t0 = time.perf_counter()
        x = kd.sample_heun(tm, x0.clone(), sigmas, disable=True)
        _sync(dev)
        return x, time.perf_counter() - t0, tm.seconds, tm.calls

    ours()
    theirs()  # warm-up
    runs = []
    for r in range(args.repeats):
        pair = (ours(), theirs()) if r % 2 == 0 else tuple(reversed((theirs(), ours())))
        runs.append(pair)
    (xo, _, _, nfe), (xk, _, _, calls) = runs[-1]
    t_o = [a[1] for a, _ in runs]
    t_k = [b[1] for _, b in runs]
    m_o = [a[2] for a, _ in runs]
    m_k = [b[2] for _, b in runs]
    ratios = [a / b for a, b in zip(t_o, t_k)]
    doc = _clean({
        "target": args.target, "d": mix.d, "batch": args.batch, "steps": args.steps, "nfe": nfe,
        "kd_model_calls": calls, "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "threads": args.threads, "repeats": args.repeats,
        "ours_seconds": t_o, "kdiffusion_seconds": t_k, "ours_model_seconds": m_o, "kdiffusion_model_seconds": m_k,
        "ours_median_s": statistics.median(t_o), "kdiffusion_median_s": statistics.median(t_k),
        "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
        "ours_sampler_share": statistics.median([1 - m / t for m, t in zip(m_o, t_o)]),
        "kdiffusion_sampler_share": statistics.median([1 - m / t for m, t in zip(m_k, t_k)]),
        "max_abs_output_difference": float((xo - xk).abs().max()),
        "command": "python bench/overhead.py " + " ".join(sys.argv[1:] if argv is None else argv),
    })
    stem = f"overhead_{Path(args.target).stem}_{dev.type}"
    (out / f"{stem}.json").write_text(json.dumps(doc, indent=1))
    _plot(doc, out / f"{stem}.png")
    print(json.dumps({k: doc[k] for k in ("device_name", "batch", "nfe", "ours_median_s", "kdiffusion_median_s",
                                          "ratio_median", "ratio_min", "ratio_max", "ours_sampler_share",
                                          "kdiffusion_sampler_share", "max_abs_output_difference")}, indent=1))
    return 0


def _plot(doc, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for i, (_name, tot, mod) in enumerate((("ours: kar1", doc["ours_seconds"], doc["ours_model_seconds"]),
                                          ("k-diffusion: sample_heun", doc["kdiffusion_seconds"],
                                           doc["kdiffusion_model_seconds"]))):
        med_t, med_m = sorted(tot)[len(tot) // 2], sorted(mod)[len(mod) // 2]
        ax.barh(i, med_m, color="0.7", label="in the model" if i == 0 else None)
        ax.barh(i, med_t - med_m, left=med_m, color="C0", label="sampler overhead" if i == 0 else None)
        ax.plot(tot, [i] * len(tot), "k|", ms=12)
    ax.set_yticks([0, 1], ["ours: kar1", "k-diffusion: sample_heun"])
    ax.set_xlabel("wall time per run (s); ticks: each repeat")
    ax.set_title(f"{doc['target']} d={doc['d']}, batch {doc['batch']}, NFE {doc['nfe']:.0f}, {doc['device_name']}; "
                 f"ratio {doc['ratio_median']:.3f}", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
