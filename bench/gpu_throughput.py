"""GPU throughput of vanilla KAR1/KAR2 and DLG on full-size NCSN++ (random weights), one command.

    python bench/gpu_throughput.py runs/bench_gpu --bf16          # ~2 min on one H100 (117 s measured)
    python bench/gpu_throughput.py runs/bench_smoke --smoke        # seconds, CPU, tiny fixture configs

What it measures, per model (CIFAR10 NCSN++ 32 px and CelebA-HQ NCSN++ 256 px,
built from :data:`dmcmc_edu.models.score_sde.PRESETS` with random weights -- speed
does not depend on the weights):

* ``forward``: the latency of one network evaluation at the batch size, and
  images/s at one NFE; with ``--bf16`` also under ``torch.autocast(bfloat16)``,
  with ``--compile`` also after ``torch.compile`` (compile time reported);
* ``vanilla``: KAR1 and KAR2 from sigma_max at several step counts (counted
  NFE per image, wall time, images/s), plus a bf16 KAR1 row with ``--bf16``;
* ``dlg``: steady-state DLG output rounds (n_skip Gibbs steps + the
  integrator + Tweedie, the paper's NFE accounting and the full one) at
  several settings, after a short initialisation that is timed separately
  (``init_s``; the paper's 37-NFE init and burn-in are amortised over a
  chain's outputs);
* ``gibbs_step``: the time of one Gibbs step split into the score network,
  the noise-level classifier (SimpleCNN / SimpleCNN256, random weights) and
  the rest (noise, arithmetic), i.e. the classifier's share of a step;
* ``rng``: drawing one batch of Gaussian noise with a CPU generator and
  copying it over (what ``DMCMCSampler`` does: its generator is a CPU
  ``torch.Generator``, so every Gibbs step pays this inside "rest") vs.
  drawing it on the GPU (the vanilla rows use a GPU generator);
* peak GPU memory of every row (``torch.cuda.max_memory_allocated``).

Timings synchronise the device around each timed region; every row is
measured after a warm-up run of the same shape (cuDNN autotuning on).
Writes ``OUT/gpu_throughput.json`` (with the GPU name, versions and
settings) and ``OUT/gpu_throughput.png``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from dmcmc_edu.core.contract import CountingDenoiser  # noqa: E402
from dmcmc_edu.core.dlg import dlg_init, dlg_kernel, dlg_step  # noqa: E402
from dmcmc_edu.core.integrators import kar1, kar2  # noqa: E402
from dmcmc_edu.core.sampler import DMCMCConfig, DMCMCSampler  # noqa: E402
from dmcmc_edu.models.classifier import NoiseLevelClassifier, SimpleCNN, SimpleCNN256  # noqa: E402
from dmcmc_edu.models.score_sde import ScoreSDEDenoiser, build_ncsnpp  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "score_sde"

# batch sizes (the paper's order: 200 CIFAR10, 20 CelebA-HQ) and settings sized for a few minutes on one GPU:
# 117 s for both models with --bf16 on an H100 80GB HBM3 (torch 2.11, cu130)
FULL = {
    "cifar10": dict(config="cifar10_ncsnpp_continuous", batch=256, forward_reps=10, vanilla_steps=[5, 10, 18],
                    dlg=[(1, "kar1", 3), (5, "kar1", 5), (10, "kar2", 19)], eta=0.5, gibbs_steps=10),
    "celebahq": dict(config="celebahq_256_ncsnpp_continuous", batch=16, forward_reps=6, vanilla_steps=[5, 10, 18],
                     dlg=[(1, "kar1", 3), (5, "kar1", 5), (10, "kar2", 19)], eta=0.8, gibbs_steps=6),
}
SMOKE = {
    "cifar10": dict(config=str(FIXTURES / "tiny_cifar10_ncsnpp_continuous" / "config.json"), batch=2, forward_reps=2,
                    vanilla_steps=[2], dlg=[(1, "kar1", 2)], eta=0.5, gibbs_steps=2),
    "celebahq": dict(config=str(FIXTURES / "tiny_celebahq_ncsnpp_continuous" / "config.json"), batch=1,
                     forward_reps=1, vanilla_steps=[2], dlg=[(1, "kar1", 2)], eta=0.8, gibbs_steps=1),
}
SIGMA_MIN = 0.01


class Timer:
    """Wall time of a region, synchronising a CUDA device before and after."""

    def __init__(self, device):
        self.cuda = torch.device(device).type == "cuda"

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def __enter__(self):
        self.sync()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.sync()
        self.seconds = time.perf_counter() - self.t0


class TimedDenoiser:
    """Wraps a denoiser: accumulates its (synchronised) wall time; optional autocast."""

    def __init__(self, model, device, autocast_dtype=None):
        self.model, self.timer, self.seconds, self.calls = model, Timer(device), 0.0, 0
        self.autocast = (lambda: torch.autocast(torch.device(device).type, dtype=autocast_dtype)) \
            if autocast_dtype is not None else nullcontext

    def __call__(self, x, sigma):
        with self.timer, self.autocast():
            out = self.model(x, sigma)
        self.seconds += self.timer.seconds
        self.calls += 1
        return out.to(x.dtype)


def timed_classifier(clf: NoiseLevelClassifier, device):
    """Accumulate the classifier's forward time in ``clf.bench_seconds`` (instance-level forward wrapper)."""
    timer = Timer(device)
    forward = clf.forward
    clf.bench_seconds = 0.0

    def wrapped(x):
        with timer:
            out = forward(x)
        clf.bench_seconds += timer.seconds
        return out

    clf.forward = wrapped
    return clf


def reset_peak(device):
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def peak_mib(device):
    if torch.device(device).type == "cuda":
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return None


def build(name, spec, device):
    net = build_ncsnpp(spec["config"])
    model = ScoreSDEDenoiser(net, config_name=name).to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    shape = model.image_shape
    torch.manual_seed(0)
    grid = DMCMCConfig(sigma_min=SIGMA_MIN, sigma_max=model.sigma_max).grid()
    arch = SimpleCNN256 if shape[-1] >= 128 else SimpleCNN
    clf = NoiseLevelClassifier(arch(shape[0], grid.numel(), shape[-1]), grid).to(device).eval()
    for p in clf.parameters():
        p.requires_grad_(False)
    n_params = sum(p.numel() for p in net.parameters())
    return model, clf, shape, n_params


def bench_forward(model, shape, spec, device, label, autocast_dtype=None):
    B = spec["batch"]
    x = torch.rand(B, *shape, device=device)
    sigma = torch.full((B,), 1.0, device=device)
    f = TimedDenoiser(model, device, autocast_dtype)
    f(x, sigma)  # warm-up
    reset_peak(device)
    with Timer(device) as t:
        for _ in range(spec["forward_reps"]):
            f(x, sigma)
    per = t.seconds / spec["forward_reps"]
    return {"variant": label, "batch": B, "seconds_per_forward": per, "images_per_s_at_1_nfe": B / per,
            "peak_mib": peak_mib(device)}


def bench_vanilla(model, shape, spec, device, integrator, steps, autocast_dtype=None, warm=True):
    B = spec["batch"]
    fn = {"kar1": kar1, "kar2": kar2}[integrator]
    g = torch.Generator(device).manual_seed(0)
    smax = model.sigma_max

    def run():
        counter = CountingDenoiser(TimedDenoiser(model, device, autocast_dtype), n_samples=B)
        x = torch.randn(B, *shape, device=device, generator=g) * smax
        x, _ = fn(counter, x, smax, SIGMA_MIN, steps, generator=g)
        return counter.nfe

    if warm:
        run()
    reset_peak(device)
    with Timer(device) as t:
        nfe = run()
    return {"method": integrator, "steps": steps, "nfe": nfe, "batch": B, "seconds": t.seconds,
            "images_per_s": B / t.seconds, "bf16": autocast_dtype is not None, "peak_mib": peak_mib(device)}


def bench_dlg(model, clf, shape, spec, device, n_skip, integrator, steps, rounds=2):
    B = spec["batch"]
    cfg = DMCMCConfig(sigma_min=SIGMA_MIN, sigma_max=model.sigma_max, eta=spec["eta"], n_skip=n_skip,
                      integrator=integrator, steps=steps, sigma_update="classifier-argmax", n_chains=B,
                      outputs_per_chain=rounds, init_steps=2, burn_in=[[2, None]], final_tweedie="always",
                      tweedie_sigma=1e-3 if shape[-1] >= 128 else 1e-2, seed=0)
    tm = TimedDenoiser(model, device)
    sampler = DMCMCSampler(tm, cfg, data_shape=shape, classifier=clf, device=device, dtype=torch.float32,
                           keep_trace=False)
    clf.bench_seconds = 0.0
    with Timer(device) as t_init:
        sampler.init_chains()
    times = []
    model_s, clf_s = tm.seconds, clf.bench_seconds
    reset_peak(device)
    for _ in range(rounds):
        with Timer(device) as t:
            sampler.next_round()
        times.append(t.seconds)
    per_round = times[-1] if len(times) > 1 else times[0]  # the first round is the warm-up when rounds > 1
    led = sampler.ledger.per_output()
    return {"method": f"dlg+{integrator}", "n_skip": n_skip, "steps": steps, "batch": B,
            "nfe_paper": led["paper"], "nfe_full": led["full"], "init_s": t_init.seconds,
            "seconds_per_round": per_round, "images_per_s": B / per_round,
            "rounds_model_s": tm.seconds - model_s, "rounds_classifier_s": clf.bench_seconds - clf_s,
            "peak_mib": peak_mib(device)}


def bench_gibbs(model, clf, shape, spec, device):
    """One Gibbs step (ULA + classifier argmax) split into score network / classifier / rest."""
    B = spec["batch"]
    cfg = DMCMCConfig(sigma_min=SIGMA_MIN, sigma_max=model.sigma_max, sigma_update="classifier-argmax")
    sampler = DMCMCSampler(model, cfg, data_shape=shape, classifier=clf, device=device, dtype=torch.float32)
    g = sampler.generator  # the library's (CPU) generator, as in a real run
    x = torch.rand(B, *shape, device=device) + 0.5 * torch.randn(B, *shape, device=device)
    state = dlg_init(x, sampler.sigma_update(x, sampler.grid, g), sampler.grid)
    tm = TimedDenoiser(model, device)
    state, _ = dlg_step(tm, state, sampler.sigma_update, eta=spec["eta"], generator=g)  # warm-up
    tm.seconds, clf.bench_seconds = 0.0, 0.0
    n = spec["gibbs_steps"]
    with Timer(device) as t:
        for _ in range(n):
            state, _ = dlg_step(tm, state, sampler.sigma_update, eta=spec["eta"], generator=g)
    step = t.seconds / n
    # the same steps through the kernel built once (no name lookup, no host read per step: divergence is a flag)
    kernel = dlg_kernel(tm, sampler.sigma_update, sampler.grid, eta=spec["eta"])
    state, _ = kernel.step(state, g)  # warm-up
    with Timer(device) as tk:
        for _ in range(n):
            state, _ = kernel.step(state, g)
    return {"batch": B, "seconds_per_step": step, "score_net_s": tm.seconds / n, "classifier_s": clf.bench_seconds / n,
            "rest_s": step - (tm.seconds + clf.bench_seconds) / n, "classifier_share": clf.bench_seconds / n / step,
            "kernel_seconds_per_step": tk.seconds / n, "kernel_vs_dlg_step": tk.seconds / n / step}


def bench_rng(shape, spec, device):
    B = spec["batch"]
    g_cpu, g_dev = torch.Generator().manual_seed(0), torch.Generator(device).manual_seed(0)
    torch.randn(B, *shape, generator=g_cpu).to(device)
    torch.randn(B, *shape, generator=g_dev, device=device)
    with Timer(device) as t1:
        for _ in range(5):
            torch.randn(B, *shape, generator=g_cpu).to(device)
    with Timer(device) as t2:
        for _ in range(5):
            torch.randn(B, *shape, generator=g_dev, device=device)
    return {"cpu_generator_and_copy_s": t1.seconds / 5, "device_generator_s": t2.seconds / 5}


def run_model(name, spec, device, args, log):
    t0 = time.perf_counter()
    model, clf, shape, n_params = build(name, spec, device)
    timed_classifier(clf, device)
    res = {"config": spec["config"], "image_shape": list(shape), "parameters": n_params, "batch": spec["batch"]}
    res["forward"] = [bench_forward(model, shape, spec, device, "fp32")]
    if args.bf16:
        res["forward"].append(bench_forward(model, shape, spec, device, "bf16-autocast", torch.bfloat16))
    log(f"[{name}] forward {res['forward'][0]['seconds_per_forward'] * 1e3:.1f} ms at batch {spec['batch']}")
    res["vanilla"] = []
    for integ in ("kar1", "kar2"):
        for i, steps in enumerate(spec["vanilla_steps"]):
            row = bench_vanilla(model, shape, spec, device, integ, steps, warm=(i == 0))
            res["vanilla"].append(row)
            log(f"[{name}] {integ} {steps} steps: {row['nfe']:.0f} NFE, {row['images_per_s']:.1f} img/s")
    if args.bf16:
        row = bench_vanilla(model, shape, spec, device, "kar1", spec["vanilla_steps"][-1], torch.bfloat16)
        res["vanilla"].append(row)
        log(f"[{name}] kar1 bf16 {row['steps']} steps: {row['images_per_s']:.1f} img/s")
    res["dlg"] = []
    for n_skip, integ, steps in spec["dlg"]:
        row = bench_dlg(model, clf, shape, spec, device, n_skip, integ, steps)
        res["dlg"].append(row)
        log(f"[{name}] DLG n_skip={n_skip} {integ} {steps}: {row['nfe_paper']:.0f} NFE (paper), "
            f"{row['images_per_s']:.1f} img/s")
    res["gibbs_step"] = bench_gibbs(model, clf, shape, spec, device)
    log(f"[{name}] Gibbs step: classifier share {res['gibbs_step']['classifier_share']:.1%}")
    res["rng"] = bench_rng(shape, spec, device)
    if args.compile:
        tc = time.perf_counter()
        compiled = ScoreSDEDenoiser(torch.compile(model.net), config_name=name)
        bench_forward(compiled, shape, spec, device, "compile-warmup")
        res["compile_seconds"] = time.perf_counter() - tc
        res["forward"].append(bench_forward(compiled, shape, spec, device, "torch.compile"))
        log(f"[{name}] torch.compile: {res['forward'][-1]['seconds_per_forward'] * 1e3:.1f} ms "
            f"(compile {res['compile_seconds']:.0f} s)")
    res["total_seconds"] = time.perf_counter() - t0
    del model, clf
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
    return res


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["models"])
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(5 * (len(names) + 1), 4))
    for ax, name in zip(axes, names):
        r = results["models"][name]
        for method, marker in (("kar1", "o"), ("kar2", "s")):
            rows = [v for v in r["vanilla"] if v["method"] == method and not v["bf16"]]
            ax.plot([v["nfe"] for v in rows], [v["images_per_s"] for v in rows], marker=marker, label=method)
        bf = [v for v in r["vanilla"] if v["bf16"]]
        if bf:
            ax.scatter([v["nfe"] for v in bf], [v["images_per_s"] for v in bf], marker="*", s=120,
                       label="kar1 bf16", zorder=3)
        ax.scatter([d["nfe_paper"] for d in r["dlg"]], [d["images_per_s"] for d in r["dlg"]], marker="^", s=70,
                   color="C3", label="DLG (paper NFE)", zorder=3)
        ax.set(xscale="log", yscale="log", xlabel="NFE per image", ylabel="images / s",
               title=f"{name} (batch {r['batch']})")
        ax.legend(fontsize=8)
    ax = axes[-1]
    for i, name in enumerate(names):
        gs = results["models"][name]["gibbs_step"]
        parts = [gs["score_net_s"], gs["classifier_s"], max(gs["rest_s"], 0.0)]
        left = 0.0
        for part, label, color in zip(parts, ("score net", "classifier", "rest"), ("C0", "C1", "C7")):
            ax.barh(i, part * 1e3, left=left, color=color, label=label if i == 0 else None)
            left += part * 1e3
    ax.set(yticks=range(len(names)), yticklabels=names, xlabel="ms per Gibbs step", title="one Gibbs step")
    ax.legend(fontsize=8)
    fig.suptitle(f"DMCMC throughput on {results['device_name']} (random-weight NCSN++)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="output folder (gpu_throughput.json, gpu_throughput.png)")
    p.add_argument("--smoke", action="store_true", help="tiny fixture configs, tiny batches (CPU, seconds)")
    p.add_argument("--models", default="cifar10,celebahq", help="comma-separated: cifar10, celebahq")
    p.add_argument("--device", default=None, help="default: cuda if available (cpu with --smoke)")
    p.add_argument("--bf16", action="store_true", help="also measure under torch.autocast(bfloat16)")
    p.add_argument("--compile", action="store_true", help="also measure torch.compile (adds minutes of compilation)")
    p.add_argument("--batch", type=int, default=None, help="override the batch size of every model")
    args = p.parse_args(argv)

    device = args.device or ("cpu" if args.smoke or not torch.cuda.is_available() else "cuda")
    if torch.device(device).type == "cpu":
        torch.set_num_threads(1 if args.smoke else torch.get_num_threads())
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.benchmark = True
    specs = SMOKE if args.smoke else FULL
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in specs]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; choose from {list(specs)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def log(msg):
        print(msg, flush=True)

    cuda = torch.device(device).type == "cuda"
    results = {
        "device": device,
        "device_name": torch.cuda.get_device_name(torch.device(device)) if cuda else platform.processor() or "cpu",
        "smoke": args.smoke,
        "versions": {"torch": torch.__version__, "cuda": torch.version.cuda,
                     "cudnn": torch.backends.cudnn.version() if cuda else None, "python": platform.python_version()},
        "settings": {"tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
                     "tf32_cudnn": torch.backends.cudnn.allow_tf32,
                     "cudnn_benchmark": torch.backends.cudnn.benchmark, "bf16": args.bf16, "compile": args.compile,
                     "weights": "random (speed does not depend on them)", "sigma_min": SIGMA_MIN},
        "models": {},
    }
    t0 = time.perf_counter()
    with torch.inference_mode():
        for name in models:
            spec = dict(specs[name])
            if args.batch:
                spec["batch"] = args.batch
            results["models"][name] = run_model(name, spec, device, args, log)
            results["total_seconds"] = time.perf_counter() - t0
            (out / "gpu_throughput.json").write_text(json.dumps(results, indent=2))  # after each model
    plot(results, out / "gpu_throughput.png")
    log(f"wrote {out / 'gpu_throughput.json'} and {out / 'gpu_throughput.png'} in {results['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
