"""Commands of the image rung (MNIST).

train-score             train the U-Net score model (EDM preconditioning and loss); resumable, budgeted
train-mnist-classifier  train the paper's SimpleCNN noise-level classifier on MNIST
train-mnist-features    train the MNIST-FID feature network and compute the test-set reference statistics
sample-mnist            draw digits with the shipped (or your) weights: vanilla from noise, or DLG (--dlg); resumable

Every command takes ``--device cpu|cuda`` and ``--max-minutes`` (a wall-clock
budget: the command stops cleanly, saves what it has, and reports
``stopped_by: budget``), and writes weights + a JSON config/log into ``--out``.
"""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from dmcmc_edu.cli.choices import (
    FEATURE_NET_NAME,
    INTEGRATORS,
    REFERENCE_NAME,
    SIGMA_UPDATES,
)
from dmcmc_edu.cli.choices import MNIST_SIGMA_MAX as SIGMA_MAX
from dmcmc_edu.cli.choices import MNIST_SIGMA_MIN as SIGMA_MIN
from dmcmc_edu.cli.common import (
    CommandError,
    add_command,
    add_yes,
    check_run_size,
    check_sigma_order,
    check_torch_files,
    chunk_seed,
    decay,
    device,
    dlg_estimate,
    int_at_least,
    nonnegative_int,
    pilot_cost,
    positive_float,
    positive_int,
    positive_int_list,
    seed,
    set_threads,
    settings,
)

if TYPE_CHECKING:
    import torch

# torch, torchvision, matplotlib and the library are imported by the handlers, so that --help stays fast

__all__ = ["add_parsers", "CLASSIFIER_NAME", "cmd_train_score", "cmd_train_classifier", "cmd_train_features",
           "cmd_sample_mnist"]

CLASSIFIER_NAME = "mnist_noise_classifier.pt"


def _load(root: str, train: bool, labels: bool = False):
    """MNIST from ``--data-root`` (missing files raise FileNotFoundError: one ``error:`` line of the command)."""
    from dmcmc_edu.datasets import load_mnist

    return load_mnist(root, train=train, return_labels=labels)


# ----------------------------------------------------------------------------- train-score


def cmd_train_score(args) -> int:
    """train the MNIST U-Net score model (EDM preconditioning/loss, EMA)

    Denoising score matching with EDM's weighting; writes OUT/checkpoint.pt, OUT/score_model.pt + .json (EMA
    weights + config), OUT/train_log.json, and OUT/samples.png.  Re-running on the same OUT resumes (same
    settings; --steps may be raised).
    """
    from dmcmc_edu.models.unet import UNetConfig
    from dmcmc_edu.training.score import WEIGHTS_NAME, ScoreTrainingConfig, train_score_model

    check_sigma_order(args.sigma_min, args.sigma_max)
    check_torch_files(args.out, ["checkpoint.pt"])  # the checkpoint of a run to resume
    set_threads(args)
    dev = device(args.device)
    images = _load(args.data_root, train=True)
    mcfg = UNetConfig(channels=[int(c) for c in args.channels.split(",")], blocks_per_level=args.blocks_per_level,
                      attention=not args.no_attention, emb_dim=args.emb_dim)
    tcfg = ScoreTrainingConfig(steps=args.steps, batch_size=args.batch, lr=args.lr, warmup_steps=args.warmup_steps,
                               ema_decay=args.ema_decay, sigma_min=args.sigma_min, sigma_max=args.sigma_max,
                               sigma_sampling=args.sigma_sampling, seed=args.seed)
    summary = train_score_model(args.out, images, model_config=mcfg, config=tcfg, device=dev,
                                max_minutes=args.max_minutes, checkpoint_every=args.checkpoint_every,
                                progress=not args.quiet, info={"dataset": args.dataset})
    png = Path(args.out) / "samples.png"
    if args.sample_grid and (summary["steps_this_call"] > 0 or not png.exists()):  # a finished run: nothing new
        summary["sample_grid"] = _sample_grid(Path(args.out) / WEIGHTS_NAME, png, dev, args.sigma_min,
                                              args.sigma_max, args.seed)
    print(json.dumps({k: v for k, v in summary.items() if k != "train_config"}, indent=1, default=float))
    return 0


def _sample_grid(weights: Path, png: Path, dev, sigma_min: float, sigma_max: float, seed: int) -> str:
    """64 KAR1 samples (18 steps, 35 NFE) of the saved EMA model, as a PNG grid."""
    import torch
    from torchvision.utils import save_image

    from dmcmc_edu.core.integrators import sample_from_noise
    from dmcmc_edu.models.unet import load_score_model
    from dmcmc_edu.runs import atomic_write

    model = load_score_model(weights).to(dev)
    with torch.no_grad():
        x, _ = sample_from_noise(model, (64, 1, 28, 28), integrator="kar1", steps=18, sigma_max=sigma_max,
                                 sigma_min=sigma_min, generator=torch.Generator(device=dev).manual_seed(seed),
                                 dtype=torch.float32, device=dev)
    atomic_write(png, lambda tmp: save_image(x.clamp(0, 1).cpu(), tmp, nrow=8, format="png"))
    return str(png)


# ----------------------------------------------------------------------------- train-mnist-classifier


def cmd_train_classifier(args) -> int:
    """train the SimpleCNN noise-level classifier on MNIST

    Writes OUT/mnist_noise_classifier.pt (NoiseLevelClassifier.save) and a .json with the training log and a
    test-set calibration.
    """
    import torch

    from dmcmc_edu.evaluation.calibration import calibration
    from dmcmc_edu.models.classifier import NoiseLevelClassifier
    from dmcmc_edu.runs import RunDirectory, fingerprint, sha256_tensors, versions, write_json
    from dmcmc_edu.training.score import train_mnist_noise_classifier

    check_sigma_order(args.sigma_min, args.sigma_max)
    set_threads(args)
    dev = device(args.device)
    out = Path(args.out)
    path = out / CLASSIFIER_NAME
    images = _load(args.data_root, train=True)
    test = _load(args.data_root, train=False)
    chosen = {k: getattr(args, k) for k in ("sigma_min", "sigma_max", "n_levels", "steps", "batch", "lr",
                                            "lr_schedule", "seed", "eval_n")} | {"device": dev.type}
    data = {"data": sha256_tensors({"images": images}), "test_data": sha256_tensors({"images": test})}
    run = RunDirectory(out, fingerprint("train-mnist-classifier", chosen, hashes=data),
                       outputs=(CLASSIFIER_NAME, Path(CLASSIFIER_NAME).with_suffix(".json").name))
    if run.check(replace=args.overwrite) == "finished":  # the same training is there: report it, write nothing
        print(json.dumps({"saved": str(path), **run.saved["result"],
                          "note": "trained earlier with the same settings; nothing was written"}, indent=1,
                         default=float))
        return 0
    run.start({"command": "train-mnist-classifier", "versions": versions()})
    clf, info = train_mnist_noise_classifier(images, sigma_min=args.sigma_min, sigma_max=args.sigma_max,
                                             n_levels=args.n_levels, steps=args.steps, batch_size=args.batch,
                                             lr=args.lr, lr_schedule=args.lr_schedule, seed=args.seed,
                                             device=dev, max_minutes=args.max_minutes, progress=not args.quiet)
    clf.config |= {"data_sha256": data["data"], "fingerprint": run.fingerprint}  # the data it was trained on
    clf.save(path)
    clf = NoiseLevelClassifier.load(path)  # what is evaluated is what was written (weights_only load)
    cal = calibration(clf, test, n=args.eval_n, generator=torch.Generator().manual_seed(12345))
    metrics = {k: cal[k] for k in ("accuracy", "accuracy_within", "within_levels", "mean_abs_log_error")}
    meta = {"format": "dmcmc_edu.noise_level_classifier/1", "arch": "simplecnn", "dataset": "mnist",
            "grid": {"sigma_min": args.sigma_min, "sigma_max": args.sigma_max, "n_levels": args.n_levels},
            "training": info,
            "test_calibration": {**metrics, "n": args.eval_n, "seed": 12345,
                                 "data": "MNIST test images + fresh noise, level uniform over the grid"}}
    write_json(path.with_suffix(".json"), meta)
    run.finish({"result": {**info, **metrics}})
    print(json.dumps({"saved": str(path), **info, **metrics}, indent=1, default=float))
    return 0


# ----------------------------------------------------------------------------- train-mnist-features


def cmd_train_features(args) -> int:
    """train the MNIST-FID feature network + test-set statistics

    Writes OUT/mnist_feature_net.pt + .json (test accuracy) and OUT/mnist_fid_ref_test.pt (feature
    mean/covariance of the 10,000 test images); existing ones are replaced only with --overwrite.
    """
    from dmcmc_edu.evaluation.mnist_fid import (
        accuracy,
        load_feature_net,
        load_reference,
        real_data_fid,
        reference_stats,
        save_feature_net,
        train_feature_net,
    )
    from dmcmc_edu.runs import RunDirectory, fingerprint, sha256_tensors, versions, write_json

    set_threads(args)
    dev = device(args.device)
    x, y = _load(args.data_root, train=True, labels=True)
    xt, yt = _load(args.data_root, train=False, labels=True)
    chosen = {k: getattr(args, k) for k in ("epochs", "batch", "lr", "seed")} | {"device": dev.type}
    data = {"data": sha256_tensors({"images": x, "labels": y}),
            "test_data": sha256_tensors({"images": xt, "labels": yt})}
    run = RunDirectory(args.out, fingerprint("train-mnist-features", chosen, hashes=data),
                       outputs=(FEATURE_NET_NAME, Path(FEATURE_NET_NAME).with_suffix(".json").name, REFERENCE_NAME))
    if run.check(replace=args.overwrite) == "finished":  # the same training is there: report it, write nothing
        print(json.dumps({"saved": args.out, **run.saved["result"],
                          "note": "trained earlier with the same settings; nothing was written"}, indent=1,
                         default=float))
        return 0
    run.start({"command": "train-mnist-features", "versions": versions()})
    net, info = train_feature_net(x, y, epochs=args.epochs, batch_size=args.batch, lr=args.lr, seed=args.seed,
                                  device=dev, max_minutes=args.max_minutes, progress=not args.quiet)
    net = net.cpu()
    t0 = time.time()
    info["test_accuracy"] = accuracy(net, xt, yt)
    info["test_n"] = int(xt.shape[0])
    ref = reference_stats(net, xt)
    meta = save_feature_net(net, args.out, info={"training": info, "test_accuracy": info["test_accuracy"],
                                                 "feature": "128-d penultimate layer (after ReLU)",
                                                 "reference": "mnist_fid_ref_test.pt (MNIST test set, 10,000)"},
                            ref=ref)
    net2 = load_feature_net(Path(args.out) / FEATURE_NET_NAME)
    ref2 = load_reference(Path(args.out) / REFERENCE_NAME)
    floors = {str(n): real_data_fid(n, root=args.data_root, feature_net=net2, reference=ref2) for n in (500, 5000)}
    meta["real_data_fid_floor"] = floors
    meta["eval_seconds"] = round(time.time() - t0, 2)
    write_json(Path(args.out) / Path(FEATURE_NET_NAME).with_suffix(".json"), meta)
    result = {"test_accuracy": info["test_accuracy"], "real_data_fid_floor": floors,
              **{k: v for k, v in info.items() if k != "test_accuracy"}}
    run.finish({"result": result})
    print(json.dumps({"saved": args.out, **result}, indent=1, default=float))
    return 0


# ----------------------------------------------------------------------------- sample-mnist


def _sample_vanilla(args, score, out: Path, dev, options: dict, deadline=None) -> tuple[torch.Tensor, dict]:
    """Vanilla digits in chunks of ``--batch``; chunk k is seeded with ``chunk_seed(seed, k)``, so a rerun resumes.

    The budget (``deadline``) is checked at every denoiser evaluation (:func:`dmcmc_edu.runs.stop_at_deadline`): a
    chunk it interrupts is dropped, the chunks written stay, and :class:`~dmcmc_edu.runs.BudgetSpent` says how many.
    """
    import torch

    from dmcmc_edu.experiments.mnist import vanilla_samples
    from dmcmc_edu.runs import run_chunks, stop_at_deadline

    score = stop_at_deadline(score, deadline)

    def make_chunk(k: int, rows: int):
        """Chunk k: ``rows`` digits and their NFE per image."""
        x, info = vanilla_samples(score, rows, integrator=args.integrator, steps=args.steps,
                                  seed=chunk_seed(args.seed, k), batch_size=rows, device=dev, **options)
        return x.numpy(), info["nfe"]

    x, nfe = run_chunks(out / "chunks", args.n, args.batch, make_chunk, desc=f"{args.integrator} chunks",
                        progress=not args.quiet, deadline=deadline)
    return torch.from_numpy(x), {"nfe_per_sample": nfe}


def _dlg_sampler(args, models: dict, dev, options: dict):
    """The DLG sampler of ``sample-mnist --dlg``: :func:`dlg_config` with the options given."""
    from dmcmc_edu.core.sampler import DMCMCSampler
    from dmcmc_edu.experiments.mnist import dlg_config
    from dmcmc_edu.registry import integrator_table

    cfg = dlg_config(args.n, outputs_per_chain=args.outputs_per_chain, integrator=args.integrator,
                     steps=args.steps, sigma_update=args.sigma_update, seed=args.seed, integrator_options=options,
                     **{k: v for k, v in (("eta", args.eta), ("n_skip", args.n_skip)) if v is not None})
    return DMCMCSampler(models["score"], cfg, data_shape=(1, 28, 28), classifier=models["classifier"],
                        device=dev, keep_trace=False, integrators=integrator_table())


def _sample_dlg(args, sampler, run, record: dict, deadline=None) -> tuple[torch.Tensor, dict]:
    """DLG digits with the noise-level classifier, checkpointed every ``--checkpoint-every`` output rounds.

    ``ceil(n / outputs-per-chain)`` chains; the first ``--n`` outputs are kept (in OUT/samples.npy too) and the
    number of the last round's outputs discarded is recorded.
    """
    from dmcmc_edu.runs import run_to_directory

    cfg = sampler.config
    res = run_to_directory(sampler, run.path, checkpoint_every=args.checkpoint_every, progress=not args.quiet,
                           run_info=record, run=run, n_outputs=args.n, deadline=deadline)
    led = res.ledger.per_output()
    made = cfg.n_chains * cfg.outputs_per_chain
    result = {"nfe_per_output_full": led["full"], "nfe_per_output_paper": led["paper"],
              "nfe_per_output_score_evals": led["score_evals"], "n_chains": cfg.n_chains,
              "outputs_per_chain": cfg.outputs_per_chain, "eta": cfg.eta, "n_skip": cfg.n_skip,
              "outputs_made": made, "outputs_discarded": made - int(res.samples.shape[0])}
    return res.samples.float().clamp(0, 1), result


def _mnist_fid(x: torch.Tensor, models: dict) -> dict:
    """The MNIST-FID of the images, with a note on its small-sample bias."""
    from dmcmc_edu.evaluation.mnist_fid import mnist_fid

    note = "MNIST-FID (not Inception FID); biased upwards at small n, compare only at equal n"
    if x.shape[0] < 256:
        note += "; with n < 256 (twice the 128 features) it is dominated by that bias"
    return {"mnist_fid": mnist_fid(x, models["feature_net"], models["reference"]), "fid_note": note}


def _check_sample_mnist(args) -> None:
    """The rules between ``sample-mnist``'s options (each option's own range is checked by its argparse type)."""
    from dmcmc_edu.datasets import WEIGHT_FILES, default_weights_dir

    dlg_only = [flag for flag, v in (("--eta", args.eta), ("--n-skip", args.n_skip)) if v is not None]
    if dlg_only and not args.dlg:
        verb, them = ("sets", "it") if len(dlg_only) == 1 else ("set", "them")
        raise CommandError(f"{' and '.join(dlg_only)} {verb} DLG's chains, which only --dlg runs; add --dlg or "
                           f"leave {them} out")
    weights = Path(args.weights) if args.weights is not None else default_weights_dir()
    check_torch_files(weights, [*WEIGHT_FILES.values(), REFERENCE_NAME])  # read by code outside models/
    if args.dlg:
        check_torch_files(args.out, ["checkpoint.pt"])  # the checkpoint of a run to resume


_MNIST_SETTINGS = ("integrator", "steps", "n", "seed", "batch", "fid")
"""The options that change the outputs of vanilla ``sample-mnist`` (with the device type and rk45's rtol)."""


def _weight_files(folder: Path, args) -> dict:
    """The weight files a ``sample-mnist`` call reads, by name (their sha256 go into the fingerprint)."""
    from dmcmc_edu.datasets import WEIGHT_FILES

    files = {"score_weights": folder / WEIGHT_FILES["score"],
             "score_config": (folder / WEIGHT_FILES["score"]).with_suffix(".json")}
    if args.fid:
        files |= {"feature_net": folder / WEIGHT_FILES["features"], "fid_reference": folder / REFERENCE_NAME}
    return files


def _mnist_run(args, dev, options: dict, sampler):
    """The run folder ``--out`` with the fingerprint of this call (settings, device type, the weights' hashes)."""
    from dmcmc_edu.datasets import default_weights_dir
    from dmcmc_edu.runs import DLG_OUTPUTS, RunDirectory, fingerprint, sampler_fingerprint

    folder = Path(args.weights) if args.weights is not None else default_weights_dir()
    files = _weight_files(folder, args)
    labels = {"score_weights": str(files["score_weights"])}
    if sampler is not None:
        del files["score_weights"], files["score_config"]  # the sampler's model and classifier are hashed instead
        fp = sampler_fingerprint(sampler, "sample-mnist-dlg", settings={"n": args.n, "fid": args.fid}, files=files)
        outputs = (*DLG_OUTPUTS, "images.npy", "samples.png", "dlg_summary.json")
        return RunDirectory(args.out, fp, outputs=outputs, labels=labels)
    s = {k: getattr(args, k) for k in _MNIST_SETTINGS} | {"device": dev.type, "integrator_options": options}
    return RunDirectory(args.out, fingerprint("sample-mnist", s, files=files), outputs=("images.npy", "samples.png"),
                        labels=labels)


def _png_bytes(x: torch.Tensor) -> bytes:
    """The PNG of the first 64 images as a grid (made in memory, so it can be written once)."""
    from matplotlib.image import imsave

    from dmcmc_edu.experiments.mnist import image_grid

    buf = io.BytesIO()
    imsave(buf, image_grid(x[:64], nrow=8), cmap="gray", vmin=0, vmax=1, format="png")
    return buf.getvalue()


def cmd_sample_mnist(args) -> int:
    """MNIST digits from the score model: vanilla, or DLG with --dlg

    Writes OUT/images.npy (float32 [n, 1, 28, 28] in [0, 1]), OUT/samples.png (the first 64) and the NFE per
    sample (DLG: the full ledger and the paper's count); --fid adds the MNIST-FID.  Vanilla runs are written in
    chunks and DLG runs checkpoint every round: re-running the same command on the same OUT resumes (a finished
    run is reported, nothing written); other settings or other weight files are refused.
    """
    import numpy as np

    from dmcmc_edu.experiments.mnist import load_shipped_models
    from dmcmc_edu.runs import BudgetSpent, deadline_after, save_once, write_json, write_once

    deadline = deadline_after(args.max_minutes)  # the budget counts from here: loading the models is part of it
    _check_sample_mnist(args)
    set_threads(args)
    dev = device(args.device)
    models = load_shipped_models(args.weights, device=dev)
    out = Path(args.out)
    options = {"rtol": args.rtol, "atol": args.rtol} if args.integrator == "rk45" else {}
    sampler = _dlg_sampler(args, models, dev, options) if args.dlg else None
    run = _mnist_run(args, dev, options, sampler)
    if run.check() == "finished":  # the same run is there, complete: report it, write nothing
        result = run.saved["result"]
        if not args.quiet:
            print(f"{out} holds this run, finished earlier with the same settings; nothing was written",
                  file=sys.stderr)
            print(json.dumps({"images": [run.saved["n"], 1, 28, 28], **result}, indent=1, default=float))
        return 0
    seconds, disk, how = estimate_sample_mnist(args, models, dev, options, sampler)
    if args.max_minutes is not None:  # the budget bounds the time: only the disk is checked
        seconds = min(seconds, 60.0 * args.max_minutes)
    check_run_size(seconds, disk, how, confirmed=args.yes)
    t0 = time.time()
    record = {"command": "sample-mnist", "settings": settings(args), "weights": str(args.weights)}
    try:
        if args.dlg:
            x, result = _sample_dlg(args, sampler, run, record, deadline)
        else:
            run.start(record)
            x, result = _sample_vanilla(args, models["score"], out, dev, options, deadline)
    except BudgetSpent as stop:
        return _stopped_by_budget(args, run, stop, time.time() - t0)
    save_once(out / "images.npy", x.numpy().astype(np.float32))
    write_once(out / "samples.png", _png_bytes(x))
    if args.fid:
        result.update(_mnist_fid(x, models))
    summary = {"command": "sample-mnist", "settings": settings(args), "result": result, "n": int(x.shape[0]),
               "wall_seconds_this_call": round(time.time() - t0, 2)}
    if args.dlg:  # the DLG summary beside the run's record (ledger.json holds the full ledger)
        write_json(out / "dlg_summary.json", summary)
    run.finish(summary)
    if not args.quiet:
        print(json.dumps({"images": list(x.shape), **result}, indent=1, default=float))
    return 0


PILOT_IMAGES = 8
"""Images of the pilot run that measures the seconds per evaluation for the size check of ``sample-mnist``."""


def estimate_sample_mnist(args, models: dict, dev, options: dict, sampler) -> tuple[float, float, str]:
    """``(seconds, bytes, how)``: the estimated time and disk use of a ``sample-mnist`` run, and how they were made.

    A pilot of :data:`PILOT_IMAGES` images with the run's integrator measures the NFE and the seconds per evaluation
    per image (:func:`~dmcmc_edu.cli.common.pilot_cost`).  Vanilla: ``n x NFE x s_eval``; disk: chunks + images.npy,
    float32.  DLG: :func:`~dmcmc_edu.cli.common.dlg_estimate` (every chain's initialisation and burn-in, then
    ``n_skip`` Gibbs steps and the denoising run per output, a score and a classifier evaluation per Gibbs step);
    disk: the rounds and samples.npy (float64) and images.npy.
    """
    import torch

    rows = min(args.n, PILOT_IMAGES)
    nfe, per_eval = pilot_cost(models["score"], (rows, 1, 28, 28), args.integrator, args.steps, SIGMA_MIN,
                               SIGMA_MAX, device=dev, dtype=torch.float32, options=options)
    image = 28 * 28
    if sampler is None:
        evals, disk = args.n * nfe, 8.0 * args.n * image
        how = f"{args.n:,} images x {nfe:,.0f} NFE x {per_eval * 1e3:.2g} ms per evaluation (pilot of {rows} images)"
        return evals * per_eval, disk, how
    return dlg_estimate(sampler.config, nfe, per_eval, elements=image, kept=args.n, pilot=f"{rows} images",
                        extra_disk=4.0 * args.n * image)


def _stopped_by_budget(args, run, stop, seconds: float) -> int:
    """Report a ``sample-mnist`` call that its ``--max-minutes`` stopped (exit 0): vanilla within a denoiser
    evaluation (the interrupted chunk is dropped), DLG at an output round.

    The run record says so (``stopped_by: budget``, with how far it got: the chunks or rounds done, and
    ``samples_written``, the samples on disk, of ``n``); the run stays incomplete and the same command continues it.
    """
    from dmcmc_edu.runs import write_json

    info = {"stopped_by": "budget", "max_minutes": args.max_minutes, "stage": stop.stage, "done": stop.done,
            "total": stop.total, "samples_written": stop.samples, "n": args.n,
            "wall_seconds_this_call": round(seconds, 2)}
    run.saved = {**(run.saved or {}), "last_call": info}
    write_json(run.record_path, run.saved)
    print(f"{run.path}: {stop}", file=sys.stderr)
    if not args.quiet:
        print(json.dumps(info, indent=1))
    return 0


# ----------------------------------------------------------------------------- parsers


def _common(p, budget_default=None) -> None:
    """The options every image-rung command takes."""
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--max-minutes", type=positive_float, default=budget_default,
                   help="wall-clock budget of this call; stops cleanly (and saves) when spent (sample-mnist: vanilla "
                        "within one denoiser evaluation, dropping the unfinished chunk; DLG at the next output round; "
                        "checkpointed, the same command continues)")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--data-root", default="data", help="folder holding MNIST/raw (the repository's data/)")
    p.add_argument("--threads", type=nonnegative_int, default=0,
                   help="torch.set_num_threads (0: leave torch's default)")
    p.add_argument("--quiet", action="store_true")


def _add_train_score(sub) -> None:
    s = add_command(sub, "train-score", cmd_train_score,
                    example="--dataset mnist --out runs/mnist_score --device cuda --max-minutes 5")
    s.add_argument("--dataset", default="mnist", choices=["mnist"])
    _common(s)
    s.add_argument("--steps", type=positive_int, default=20000)
    s.add_argument("--batch", type=positive_int, default=128)
    s.add_argument("--lr", type=positive_float, default=1e-3)
    s.add_argument("--warmup-steps", type=nonnegative_int, default=200)
    s.add_argument("--ema-decay", type=decay, default=0.999, help="in [0, 1)")
    s.add_argument("--channels", type=positive_int_list, default="24,48,96",
                   help="U-Net channels per resolution 28,14,7 (comma list)")
    s.add_argument("--blocks-per-level", type=positive_int, default=1)
    s.add_argument("--no-attention", action="store_true")
    s.add_argument("--emb-dim", type=positive_int, default=128)
    s.add_argument("--sigma-sampling", default="mixed", choices=["lognormal", "loguniform", "mixed"])
    s.add_argument("--sigma-min", type=positive_float, default=SIGMA_MIN)
    s.add_argument("--sigma-max", type=positive_float, default=SIGMA_MAX)
    s.add_argument("--checkpoint-every", type=positive_int, default=500)
    s.add_argument("--no-sample-grid", dest="sample_grid", action="store_false",
                   help="skip OUT/samples.png (64 KAR1 samples, 35 NFE)")


def _add_train_classifier(sub) -> None:
    c = add_command(sub, "train-mnist-classifier", cmd_train_classifier,
                    example="--out runs/mnist_classifier --device cuda --max-minutes 10")
    _common(c)
    c.add_argument("--steps", type=positive_int, default=20000)
    c.add_argument("--batch", type=positive_int, default=100, help="paper: 100")
    c.add_argument("--lr", type=positive_float, default=1e-3, help="paper: 1e-3")
    c.add_argument("--lr-schedule", default="cosine", choices=["constant", "cosine"],
                   help="paper: constant; cosine helps short runs")
    c.add_argument("--n-levels", type=int_at_least(2), default=1000)
    c.add_argument("--sigma-min", type=positive_float, default=SIGMA_MIN)
    c.add_argument("--sigma-max", type=positive_float, default=SIGMA_MAX)
    c.add_argument("--eval-n", type=positive_int, default=2000, help="noisy test images for the calibration record")
    c.add_argument("--overwrite", action="store_true", help="replace an existing OUT/" + CLASSIFIER_NAME)


def _add_train_features(sub) -> None:
    f = add_command(sub, "train-mnist-features", cmd_train_features, example="--out runs/mnist_features")
    _common(f)
    f.add_argument("--epochs", type=positive_float, default=2.0)
    f.add_argument("--batch", type=positive_int, default=128)
    f.add_argument("--lr", type=positive_float, default=1e-3)
    f.add_argument("--overwrite", action="store_true",
                   help=f"replace an existing OUT/{FEATURE_NET_NAME} and OUT/{REFERENCE_NAME}")


def _add_sample(sub) -> None:
    m = add_command(sub, "sample-mnist", cmd_sample_mnist, example="--dlg --n 256 --fid --out runs/mnist_dlg")
    _common(m)
    m.add_argument("--weights", default=None, help="folder with the weights (default: the shipped dmcmc_edu/weights)")
    m.add_argument("--n", type=positive_int, default=64, help="number of images")
    m.add_argument("--integrator", default="kar1", choices=INTEGRATORS,
                   help="the integrator (vanilla: the whole run from sigma_max; DLG: each output's denoising run)")
    m.add_argument("--steps", type=positive_int, default=8,
                   help="integrator steps (vanilla: from sigma_max; DLG: from the chain's sigma)")
    m.add_argument("--rtol", type=positive_float, default=1e-3, help="rk45: rtol = atol")
    m.add_argument("--batch", type=positive_int, default=256, help="vanilla: images per chunk")
    m.add_argument("--dlg", action="store_true", help="Denoising Langevin Gibbs with the noise-level classifier")
    m.add_argument("--eta", type=positive_float, default=None,
                   help="DLG: absolute Langevin step (default: mnist.DLG_DEFAULTS)")
    m.add_argument("--n-skip", type=positive_int, default=None,
                   help="DLG: Gibbs steps per output (default: DLG_DEFAULTS)")
    m.add_argument("--outputs-per-chain", type=positive_int, default=16, help="DLG: outputs per chain")
    m.add_argument("--sigma-update", default="classifier-argmax",
                   choices=[name for name in SIGMA_UPDATES if name.startswith("classifier")])
    m.add_argument("--checkpoint-every", type=positive_int, default=1, help="DLG: output rounds between checkpoints")
    m.add_argument("--fid", action="store_true", help="also compute the MNIST-FID of the images")
    add_yes(m, time="the estimated time (without --max-minutes)")


def add_parsers(sub) -> None:
    """Add the image rung's commands (train-score, train-mnist-classifier/-features, sample-mnist) to a parser."""
    for add in (_add_train_score, _add_train_classifier, _add_train_features, _add_sample):
        add(sub)
