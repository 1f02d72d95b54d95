"""Training of the image rung's networks: the score model (denoising score matching), the noise-level classifier.

:func:`train_score_model` trains a :class:`~dmcmc_edu.models.unet.ScoreUNet` by
denoising score matching with EDM's loss weighting (Karras et al. 2022)::

    loss = E_{x0, sigma, z} [ lambda(sigma) || D(x0 + sigma z, sigma) - x0 ||^2 ],
    lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2

(mean over pixels; :func:`dmcmc_edu.training.losses.score_matching_loss`),
which gives the bare network F a target of unit variance at every sigma.
The noise levels are drawn, per sample, by
``sigma_sampling``:

* ``"lognormal"`` -- EDM's ``ln sigma ~ N(P_mean, P_std^2)``, with EDM's
  P_mean = -1.2 moved to our units: ``P_mean = -1.2 + ln(sigma_data / 0.5)``
  (EDM's sigma_data is 0.5), P_std = 1.2; this concentrates training where
  samplers need precision (sigma around 0.05 .. 1);
* ``"loguniform"`` -- uniform in ``ln sigma`` over ``[sigma_min, sigma_max]``,
  the distribution of the noise-level grid DLG chains move on;
* ``"mixed"`` (default) -- half of each batch from each: DLG needs the score
  on the whole grid, the final integrator needs it precise at small sigma.

The loop keeps an exponential moving average (EMA) of the weights (the EMA
weights are the ones saved for sampling), draws every random number from
seeded ``torch.Generator`` objects, writes an atomic checkpoint every
``checkpoint_every`` steps and when it stops, and resumes from
``out_dir/checkpoint.pt`` when called again on the same folder with the same
settings.  ``max_minutes`` bounds the wall-clock time of one call: the loop
stops cleanly, checkpoints, and writes the weights; a second call continues.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from dmcmc_edu.core.schedules import noise_level_grid
from dmcmc_edu.models.classifier import NoiseLevelClassifier, SimpleCNN
from dmcmc_edu.models.unet import ScoreUNet, UNetConfig, save_score_model
from dmcmc_edu.runs import RunDirectory, RunRefused, atomic_write, fingerprint, sha256_tensors, versions
from dmcmc_edu.training.classifier import train_noise_level_classifier
from dmcmc_edu.training.losses import score_matching_loss

__all__ = ["ScoreTrainingConfig", "sample_sigmas", "train_score_model", "train_mnist_noise_classifier",
           "CHECKPOINT_NAME", "WEIGHTS_NAME"]

CHECKPOINT_NAME = "checkpoint.pt"
WEIGHTS_NAME = "score_model.pt"
_CKPT_FORMAT = "dmcmc_edu.score_training_checkpoint/1"


@dataclass
class ScoreTrainingConfig:
    """Settings of :func:`train_score_model` that define a run (a resume must match them, except ``steps``)."""

    steps: int = 20000
    batch_size: int = 128
    lr: float = 1e-3
    warmup_steps: int = 200  # linear learning-rate warm-up, then constant (the EMA does the averaging)
    ema_decay: float = 0.999  # per step, with the warm-up min(decay, (1 + t) / (10 + t))
    grad_clip: float = 1.0  # max gradient norm (0 = off)
    sigma_min: float = 0.01
    sigma_max: float = 20.0
    sigma_sampling: str = "mixed"  # lognormal | loguniform | mixed
    p_std: float = 1.2
    seed: int = 0

    def validate(self) -> "ScoreTrainingConfig":
        if self.sigma_sampling not in ("lognormal", "loguniform", "mixed"):
            raise ValueError(f"sigma_sampling must be lognormal|loguniform|mixed, got {self.sigma_sampling!r}")
        if not (0 < self.sigma_min < self.sigma_max):
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0 or not (0 <= self.ema_decay < 1):
            raise ValueError("need steps >= 1, batch_size >= 1, lr > 0, 0 <= ema_decay < 1")
        return self


def sample_sigmas(n: int, cfg: ScoreTrainingConfig, sigma_data: float, generator: torch.Generator,
                  device="cpu") -> torch.Tensor:
    """Per-sample training noise levels ``[n]`` (see the module docstring for the three distributions)."""
    gdev = generator.device
    p_mean = -1.2 + math.log(sigma_data / 0.5)
    lognormal = torch.exp(p_mean + cfg.p_std * torch.randn(n, generator=generator, device=gdev))
    lo, hi = math.log(cfg.sigma_min), math.log(cfg.sigma_max)
    loguniform = torch.exp(lo + (hi - lo) * torch.rand(n, generator=generator, device=gdev))
    if cfg.sigma_sampling == "lognormal":
        s = lognormal
    elif cfg.sigma_sampling == "loguniform":
        s = loguniform
    else:  # first half log-normal, second half log-uniform (both always drawn: the stream does not depend on n)
        s = torch.cat([lognormal[: n // 2], loguniform[n // 2:]])
    return s.to(device)


class _WarmupEMA:
    """``multi_avg_fn`` of an :class:`~torch.optim.swa_utils.AveragedModel`: torch's EMA with a warm-up decay.

    Each update applies :func:`torch.optim.swa_utils.get_ema_multi_avg_fn` with
    ``decay_t = min(decay, (1 + t) / (10 + t))``, ``t`` the number of optimiser
    steps done before this update (``ema <- decay_t ema + (1 - decay_t) w``).
    ``t`` is set by the training step (:attr:`step`) rather than read from the
    averaged model's ``n_averaged`` tensor, which lives on the device (reading it
    would synchronise the GPU every step).
    """

    def __init__(self, decay: float, step: int = 0):
        self.decay, self.step = float(decay), int(step)

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1 + step) / (10 + step))

    def __call__(self, ema_params, params, n_averaged) -> None:
        get_ema_multi_avg_fn(self.decay_at(self.step))(ema_params, params, n_averaged)


def _new_ema(model: torch.nn.Module, decay: float, step: int = 0, state: dict | None = None) -> AveragedModel:
    """An :class:`AveragedModel` holding a copy of ``model`` (or ``state``) as the EMA after ``step`` steps.

    The first ``update_parameters`` of an AveragedModel copies the weights; it
    is done here, so every training step is an average (``n_averaged = step + 1``).
    Parameters are averaged; buffers follow the model (``use_buffers=False``;
    the score U-Net's only buffer is a constant).
    """
    ema = AveragedModel(model, multi_avg_fn=_WarmupEMA(decay, step), use_buffers=False)
    ema.update_parameters(model)
    if state is not None:
        ema.module.load_state_dict(state)
    with torch.no_grad():
        ema.n_averaged.fill_(step + 1)
    return ema


def _config_mismatch(saved: dict, now: dict, ignore=("steps",)) -> list[str]:
    return [f"{k}: {saved.get(k)!r} (checkpoint) vs {now.get(k)!r} (now)"
            for k in sorted(set(saved) | set(now)) if k not in ignore and saved.get(k) != now.get(k)]


@dataclass
class _Run:
    """What a training run carries from step to step, and saves in its checkpoint."""

    model: ScoreUNet
    opt: torch.optim.Optimizer
    ema: AveragedModel  # EMA of the model's weights (torch.optim.swa_utils)
    gen_data: torch.Generator  # batch indices (CPU)
    gen_noise: torch.Generator  # sigma and noise (on the device)
    step: int = 0
    log: list = field(default_factory=list)
    seconds_before: float = 0.0  # training time of the earlier calls


def _read_checkpoint(ckpt_path: Path, cfg: ScoreTrainingConfig, mcfg: UNetConfig) -> dict | None:
    """The checkpoint at ``ckpt_path`` (None if there is none), refused if its settings differ from these."""
    if not ckpt_path.exists():
        return None
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    if ckpt.get("format") != _CKPT_FORMAT:
        raise ValueError(f"{ckpt_path} is not a score-training checkpoint (format {ckpt.get('format')!r})")
    diff = _config_mismatch(ckpt["train_config"], asdict(cfg))
    diff += _config_mismatch(ckpt["model_config"], asdict(mcfg), ignore=())
    if diff:
        raise ValueError(f"{ckpt_path.parent} holds a run with other settings: " + "; ".join(diff)
                         + " -- use another output folder")
    return ckpt


def _start_run(cfg: ScoreTrainingConfig, mcfg: UNetConfig, device: torch.device, ckpt: dict | None) -> _Run:
    """A fresh run (weights initialised from ``cfg.seed``), or the state saved in ``ckpt``."""
    gen_init = torch.Generator().manual_seed(cfg.seed)  # weights initialisation
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**62, (), generator=gen_init)))
        model = ScoreUNet(mcfg)
    model.to(device).train()
    run = _Run(model=model, opt=torch.optim.Adam(model.parameters(), lr=cfg.lr),
               ema=_new_ema(model, cfg.ema_decay),
               gen_data=torch.Generator().manual_seed(cfg.seed + 1),
               gen_noise=torch.Generator(device=device).manual_seed(cfg.seed + 2))
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        run.opt.load_state_dict(ckpt["opt"])
        run.ema = _new_ema(model, cfg.ema_decay, int(ckpt["step"]), {k: v.to(device) for k, v in ckpt["ema"].items()})
        run.gen_data.set_state(ckpt["gen_data"])
        run.gen_noise.set_state(ckpt["gen_noise"])
        run.step, run.log, run.seconds_before = int(ckpt["step"]), list(ckpt["log"]), float(ckpt["seconds"])
    return run


def _save_checkpoint(path: Path, run: _Run, cfg: ScoreTrainingConfig, mcfg: UNetConfig, seconds: float) -> None:
    """Write the run's state (model, EMA, optimiser, generators, log) to ``path``, atomically."""
    payload = {"format": _CKPT_FORMAT, "step": run.step, "model": run.model.state_dict(),
               "ema": run.ema.module.state_dict(), "opt": run.opt.state_dict(), "gen_data": run.gen_data.get_state(),
               "gen_noise": run.gen_noise.get_state(), "log": run.log, "seconds": seconds,
               "train_config": asdict(cfg), "model_config": asdict(mcfg)}
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def _training_step(run: _Run, data: torch.Tensor, cfg: ScoreTrainingConfig, sigma_data: float,
                   device: torch.device) -> torch.Tensor:
    """One optimiser step on a fresh batch (indices, then sigma and noise), then the EMA; returns the loss."""
    idx = torch.randint(0, data.shape[0], (cfg.batch_size,), generator=run.gen_data).to(device)
    x0 = data[idx]
    sigma = sample_sigmas(cfg.batch_size, cfg, sigma_data, run.gen_noise, device)
    noise = torch.randn(x0.shape, generator=run.gen_noise, device=run.gen_noise.device).to(device)
    for group in run.opt.param_groups:
        group["lr"] = cfg.lr * min(1.0, (run.step + 1) / max(1, cfg.warmup_steps))
    loss = score_matching_loss(run.model, x0, sigma, noise)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
    run.opt.step()
    run.ema.multi_avg_fn.step = run.step
    run.ema.update_parameters(run.model)
    run.step += 1
    return loss.detach()


def _log_interval(run: _Run, running, n_running: int, t_start: float) -> None:
    """Append the mean loss of the last ``n_running`` steps to the run's log."""
    run.log.append({"step": run.step, "loss": float(running) / n_running,
                    "seconds": round(run.seconds_before + time.time() - t_start, 2)})


def _train_loop(run: _Run, data: torch.Tensor, cfg: ScoreTrainingConfig, mcfg: UNetConfig, device: torch.device, *,
                t_start: float, max_minutes: float | None, save: Callable[[], None], checkpoint_every: int,
                log_every: int, progress: bool) -> str:
    """Step until ``cfg.steps`` or the time budget; returns what stopped it, ``"steps"`` or ``"budget"``."""
    stopped_by = "steps"
    running, n_running = 0.0, 0
    bar = tqdm(total=cfg.steps, initial=run.step, desc="score model", disable=not progress)
    while run.step < cfg.steps:
        if max_minutes is not None and time.time() - t_start > 60.0 * max_minutes:
            stopped_by = "budget"
            break
        running = running + _training_step(run, data, cfg, mcfg.sigma_data, device)  # no per-step device sync
        n_running += 1
        if run.step % log_every == 0 or run.step == cfg.steps:
            _log_interval(run, running, n_running, t_start)
            bar.set_postfix(loss=f"{run.log[-1]['loss']:.4f}")
            running, n_running = 0.0, 0
        if run.step % checkpoint_every == 0:
            save()
        bar.update(1)
    bar.close()
    if n_running:  # a partial interval at a budget stop
        _log_interval(run, running, n_running, t_start)
    return stopped_by


def _finish(out: Path, run: _Run, cfg: ScoreTrainingConfig, device: torch.device, *, t_start: float,
            start_step: int, stopped_by: str, info: dict | None) -> dict:
    """Write the EMA weights (``score_model.pt`` + ``.json``) and ``train_log.json``; return the summary."""
    seconds = time.time() - t_start
    step = run.step
    summary = {
        "steps_done": step, "steps_target": cfg.steps, "stopped_by": stopped_by,
        "steps_this_call": step - start_step, "seconds_this_call": round(seconds, 2),
        "steps_per_second": round((step - start_step) / max(seconds, 1e-9), 3),
        "seconds_total": round(run.seconds_before + seconds, 2), "images_seen": step * cfg.batch_size,
        "loss_last": run.log[-1]["loss"] if run.log else None, "device": str(device),
        "torch": str(torch.__version__), "train_config": asdict(cfg), **(info or {}),
    }
    ema_model = copy.deepcopy(run.model).cpu()
    ema_model.load_state_dict({k: v.cpu() for k, v in run.ema.module.state_dict().items()})
    save_score_model(ema_model, out / WEIGHTS_NAME, {"training": summary, "weights": "EMA"})
    log = run.log
    atomic_write(out / "train_log.json", lambda tmp: Path(tmp).write_text(json.dumps({"log": log, **summary},
                                                                                      indent=1)))
    return summary


def train_score_model(out_dir, data: torch.Tensor, *, model_config: UNetConfig | dict | None = None,
                      config: ScoreTrainingConfig | None = None, device="cpu", max_minutes: float | None = None,
                      checkpoint_every: int = 500, log_every: int = 50, progress: bool = True,
                      info: dict | None = None) -> dict:
    """Train (or resume training) a score model on ``data`` (``[N, C, H, W]`` in [0, 1]) into ``out_dir``.

    Writes ``checkpoint.pt`` (model, EMA, optimiser, generator states, log;
    atomic), and when the call ends ``score_model.pt`` + ``score_model.json``
    (the EMA weights and their config, loadable by
    :func:`dmcmc_edu.models.unet.load_score_model`) and ``train_log.json``.

    Parameters
    ----------
    out_dir : path
        Output folder; if it holds a checkpoint, training resumes from it
        (the settings must match, except ``steps``, which may be raised).
    data : tensor ``[N, C, H, W]``
        Clean training images in [0, 1] (moved to ``device`` once).
    model_config : UNetConfig or dict
        Architecture (ignored when resuming: the checkpoint's is used and must match).
    config : ScoreTrainingConfig
        Optimisation and noise settings.
    device : str or torch.device
    max_minutes : float, optional
        Wall-clock budget of this call; the loop stops cleanly when it is spent.
    checkpoint_every, log_every : int
        Steps between checkpoints and between log records.

    Returns
    -------
    dict
        The summary written to ``score_model.json`` under ``"training"``:
        ``steps_done``, ``stopped_by`` (``"steps"`` or ``"budget"``),
        ``loss_last`` (mean of the last log interval), ``images_seen``,
        ``seconds_this_call``, ``steps_per_second``, ...
    """
    t_start = time.time()
    cfg = (config or ScoreTrainingConfig()).validate()
    device = torch.device(device)
    out = Path(out_dir)
    ckpt_path = out / CHECKPOINT_NAME
    mcfg = UNetConfig(**model_config) if isinstance(model_config, dict) else (model_config or UNetConfig())
    record = _training_record(out, cfg, mcfg, data, device, info)
    if record.check() == "finished":
        done = record.saved["summary"]["steps_done"]
        if done == cfg.steps:  # the same training is there, complete: report it, write nothing
            return dict(record.saved["summary"], steps_this_call=0, seconds_this_call=0.0)
        if done > cfg.steps:
            raise RunRefused(f"{out} holds a training run finished at {done} steps, more than the {cfg.steps} "
                             "asked for; nothing was written -- choose another --out")
        record.reopen()  # more steps: the training continues from its checkpoint
    record.start({"command": "train-score", "versions": versions()})

    run = _start_run(cfg, mcfg, device, _read_checkpoint(ckpt_path, cfg, mcfg))
    data = data.to(device=device, dtype=torch.float32)
    start_step = run.step

    def save() -> None:
        _save_checkpoint(ckpt_path, run, cfg, mcfg, run.seconds_before + time.time() - t_start)

    stopped_by = _train_loop(run, data, cfg, mcfg, device, t_start=t_start, max_minutes=max_minutes, save=save,
                             checkpoint_every=checkpoint_every, log_every=log_every, progress=progress)
    save()
    summary = _finish(out, run, cfg, device, t_start=t_start, start_step=start_step, stopped_by=stopped_by, info=info)
    if stopped_by == "steps":  # stopped by the budget, the run stays open: a second call continues it
        record.finish({"summary": summary})
    return summary


def _training_record(out: Path, cfg: ScoreTrainingConfig, mcfg: UNetConfig, data: torch.Tensor, device, info):
    """The run record of a score-model training: every setting but ``steps`` (it may be raised to continue),
    the architecture, the device type, ``info`` and the training images by content (sha256)."""
    settings = {k: v for k, v in asdict(cfg).items() if k != "steps"}
    settings |= {"model_config": asdict(mcfg), "device": device.type, **(info or {})}
    return RunDirectory(out, fingerprint("train-score", settings, hashes={"data": sha256_tensors({"data": data})}),
                        outputs=(WEIGHTS_NAME, Path(WEIGHTS_NAME).with_suffix(".json").name, "train_log.json",
                                 CHECKPOINT_NAME))


def train_mnist_noise_classifier(images: torch.Tensor, *, sigma_min: float, sigma_max: float, n_levels: int = 1000,
                                 steps: int = 20000, batch_size: int = 100, lr: float = 1e-3,
                                 lr_schedule: str = "cosine", seed: int = 0, device="cpu",
                                 max_minutes: float | None = None, probe_steps: int = 50, progress: bool = True):
    """Train the paper's SimpleCNN noise-level classifier on 1x28x28 images, within a wall-clock budget.

    Uses :func:`dmcmc_edu.training.classifier.train_noise_level_classifier` (paper:
    cross-entropy, Adam lr 1e-3, batch 100, fresh noise every batch) on the
    grid ``noise_level_grid(sigma_min, sigma_max, n_levels)``.  To honour
    ``max_minutes`` without a clock inside that loop, a few warm-up steps and
    a probe run of ``probe_steps`` steps (constant rate) measure the speed,
    then one run of as many of the remaining steps as fit in 90% of the
    remaining budget follows (``lr_schedule`` applies to it; the optimiser
    restarts at each of the three runs).  (Without the warm-up, a GPU's
    one-off start-up costs made the probe look slow: a 1-minute budget on an
    H200 was stopped after 20 s.)

    Returns ``(classifier, info)``; ``info`` has ``steps_done``,
    ``stopped_by``, ``seconds``, the last training loss and accuracies.
    """
    t0 = time.time()
    grid = noise_level_grid(sigma_min, sigma_max, n_levels)
    init = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**62, (), generator=init)))
        net = SimpleCNN(in_channels=images.shape[1], n_levels=n_levels, image_size=images.shape[-1])
    clf = NoiseLevelClassifier(net, grid).to(device)
    g = torch.Generator().manual_seed(seed + 1)
    # untimed warm-up steps (one-off costs: CUDA kernels, allocator), then the timed probe
    warm = min(max(probe_steps // 5, 1), steps)
    h1 = train_noise_level_classifier(clf, images, steps=warm, batch_size=batch_size, lr=lr, generator=g,
                                      progress=False)
    probe = min(probe_steps, steps - warm)
    rate = 0.0
    if probe > 0:
        h1 = train_noise_level_classifier(clf, images, steps=probe, batch_size=batch_size, lr=lr, generator=g,
                                          progress=False)
        rate = max(h1["time_s"], 1e-6) / probe
    remaining = steps - warm - probe
    stopped_by = "steps"
    if max_minutes is not None and remaining > 0:
        fit = int(max(0.0, 0.9 * (60.0 * max_minutes - (time.time() - t0))) / rate)
        if fit < remaining:
            remaining, stopped_by = fit, "budget"
    hist = h1
    if remaining > 0:
        hist = train_noise_level_classifier(clf, images, steps=remaining, batch_size=batch_size, lr=lr,
                                            lr_schedule=lr_schedule, generator=g, progress=progress)
    w = min(200, len(hist["loss"]))
    info = {"steps_done": warm + probe + remaining, "steps_target": steps, "stopped_by": stopped_by,
            "seconds": round(time.time() - t0, 2), "batch_size": batch_size, "lr": lr, "lr_schedule": lr_schedule,
            "seed": seed, "loss_last": sum(hist["loss"][-w:]) / w,
            "train_accuracy_within_last": sum(hist["accuracy_within"][-w:]) / w,
            "within_levels": hist["within_levels"], "device": str(device), "torch": str(torch.__version__)}
    clf.config = {"dataset": "mnist", "sigma_min": sigma_min, "sigma_max": sigma_max, "n_levels": n_levels,
                  "training": info}
    return clf, info
