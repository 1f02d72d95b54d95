"""The DMCMC sampler: persistent DLG chains, smallest-sigma pick, denoising, Tweedie, an honest ledger.

Three lines from a notebook::

    cfg = DMCMCConfig(sigma_min=0.01, sigma_max=10.0, n_chains=256, outputs_per_chain=4)
    sampler = DMCMCSampler(model, cfg, data_shape=(2,), sigma_update="exact")
    result = sampler.run()          # result.samples, result.ledger

What happens (the paper's algorithm, every constant a parameter):

1. **Initialisation** -- ``x = sigma_max z``; a short KAR2 run (``init_steps``;
   the paper's "20-step" run is 19 steps = 37 NFE); add ``init_kick * z``; a
   sigma-update; then the burn-in, a list of ``(steps, eta)`` pairs
   (``eta=None`` means the main eta).
2. **Per output round** -- every chain takes ``n_skip`` Gibbs steps; per chain
   the state with the smallest sigma in the block (a strictly smaller sigma
   replaces) is denoised by any integrator of the registry from that sigma
   down to ``sigma_min`` (``steps`` steps), then the Tweedie step.
3. Chains are persistent: each round yields one output per chain.

**Mode weights.**  Chains that stay near the data manifold rarely switch
modes, so the outputs of one chain are strongly correlated and the mode
weights of the outputs are set by the *initialisation* of the chains.  The
effective sample size is then about ``n_chains``, not ``n_chains *
outputs_per_chain``.  The defaults therefore favour many chains with few
outputs each (``outputs_per_chain=4``); ask for more outputs by raising
``n_chains`` first.  :mod:`dmcmc_edu.diagnostics` measures the
autocorrelation and effective sample size of a run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .contract import CountingDenoiser
from .dlg import dlg_init, dlg_step, make_sigma_update, step_size
from .integrators import get_integrator, kar2, randn, tweedie
from .ledger import NFELedger
from .schedules import noise_level_grid

__all__ = ["pick_smallest_sigma", "DMCMCConfig", "DMCMCSampler", "DMCMCResult", "PRESETS", "run_to_directory",
           "atomic_write"]


@dataclass
class DMCMCConfig:
    """Every setting of a DMCMC/DLG run (see the module docstring).  Defaults suit the toy mixtures."""

    sigma_min: float = 0.01
    sigma_max: float = 50.0
    n_levels: int = 1000  # the noise-level grid (paper: 1000 levels)
    eta: float = 0.05  # absolute Langevin step size (paper: 0.8 on CelebA-HQ)
    eta_rel: float = 0.0  # sigma-adapted part: per-chain step eta + eta_rel * sigma^2 (paper: 0)
    n_skip: int = 1  # Gibbs steps per output
    integrator: str = "kar1"  # denoising integrator (any name of the registry)
    steps: int = 4  # steps of the denoising integrator
    integrator_options: dict = field(default_factory=dict)  # keyword options of the integrator (rho, rtol, ...)
    steps_per_decade: float = 0.0  # > 0: a state picked at sigma gets max(steps, ceil(spd * log10(sigma/sigma_min)))
    sigma_update: str = "exact"  # exact | classifier-argmax | classifier-sample
    x_update: str = "ula"  # ula (paper) | mala
    n_chains: int = 256
    outputs_per_chain: int = 4
    init_steps: int = 19  # KAR2 steps of the initial run (19 steps = the paper's N=20, 37 NFE)
    init_kick: float = 0.5  # std of the noise added after the initial run
    burn_in: list = field(default_factory=lambda: [[10, None]])  # (steps, eta); None = main eta
    final_tweedie: str = "auto"  # auto (only if the integrator ends above 0) | always (paper) | never
    tweedie_sigma: float | None = None  # default: sigma_min (paper: 1e-2 CIFAR10, 1e-3 CelebA-HQ)
    seed: int = 0

    def validate(self) -> "DMCMCConfig":
        if not (0 < self.sigma_min < self.sigma_max):
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")
        if not (self.eta > 0):
            raise ValueError(f"eta must be > 0, got {self.eta}")
        if not (self.eta_rel >= 0):
            raise ValueError(f"eta_rel must be >= 0, got {self.eta_rel}")
        for name in ("n_skip", "n_chains", "outputs_per_chain", "steps"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if self.init_steps < 0 or self.n_levels < 2:
            raise ValueError("init_steps must be >= 0 and n_levels >= 2")
        get_integrator(self.integrator)
        if not (self.steps_per_decade >= 0):
            raise ValueError(f"steps_per_decade must be >= 0, got {self.steps_per_decade}")
        if not isinstance(self.integrator_options, dict):
            raise ValueError(f"integrator_options must be a dict, got {type(self.integrator_options).__name__}")
        if self.final_tweedie not in ("auto", "always", "never"):
            raise ValueError(f"final_tweedie must be auto|always|never, got {self.final_tweedie!r}")
        for pair in self.burn_in:
            if len(pair) != 2 or int(pair[0]) < 0 or (pair[1] is not None and pair[1] <= 0):
                raise ValueError(f"burn_in entries must be (steps >= 0, eta > 0 or None), got {pair!r}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def for_target(cls, mixture, n_outputs: int, outputs_per_chain: int = 2, **overrides) -> "DMCMCConfig":
        """Defaults for an analytic mixture that give correct mode weights (see the module docstring).

        * ``sigma_min``/``sigma_max`` from the mixture's ``default_sigma_min/max``;
        * ``eta = 0.08 tau_min`` (tau_min: the smallest component variance), so
          that at small sigma the Langevin step stays far below the stability
          bound 4 (tau + sigma^2) and the unadjusted chain's variance bias is ~2 %;
        * ``eta_rel = (2 / d)^(1/3)``: steps proportional to sigma^2 at large
          sigma, where the chains must travel between modes; the d^(-1/3) factor
          is the MALA step scaling that keeps the acceptance rate up in high d;
        * ``x_update = "mala"`` (the mixture has a log-density) and the exact sigma-update;
        * ``outputs_per_chain = 2`` and ``n_chains = ceil(n_outputs / 2)``: chains
          switch modes only now and then, so the mode weights of the outputs are
          about as accurate as ``n_chains`` independent samples would make them;
          few outputs per chain keep that close to ``n_outputs``.
        """
        tau_min = mixture.eigenvalue_range()[0]
        kw = dict(sigma_min=mixture.default_sigma_min(), sigma_max=mixture.default_sigma_max(), n_levels=200,
                  eta=0.08 * tau_min, eta_rel=(2.0 / mixture.d) ** (1.0 / 3.0), x_update="mala",
                  sigma_update="exact", integrator="kar1", steps=8, n_skip=1,
                  n_chains=-(-n_outputs // outputs_per_chain), outputs_per_chain=outputs_per_chain)
        kw.update(overrides)
        return cls(**kw)

    def grid(self) -> torch.Tensor:
        return noise_level_grid(self.sigma_min, self.sigma_max, self.n_levels)


PRESETS = {
    # the settings visible in the authors' code (init: 20-step KAR2 = 37 NFE, kick 0.5, burn-in)
    "paper-cifar10": dict(sigma_min=0.01, sigma_max=50.0, sigma_update="classifier-argmax", integrator="kar1",
                          init_steps=19, init_kick=0.5, burn_in=[[10, 0.5], [10, None]],
                          final_tweedie="always", tweedie_sigma=1e-2),
    "paper-celebahq": dict(sigma_min=0.01, sigma_max=348.0, eta=0.8, n_skip=10, integrator="kar2", steps=19,
                           sigma_update="classifier-argmax", init_steps=19, init_kick=0.5,
                           burn_in=[[50, 1.6], [20, None]], final_tweedie="always", tweedie_sigma=1e-3),
}
"""Documented presets of the paper's settings (eta/n_skip for CIFAR10 vary by figure; set them)."""


@dataclass
class DMCMCResult:
    samples: torch.Tensor  # [n_outputs, ...], ordered round by round (round r, chain c -> r * C + c)
    chosen_sigma: torch.Tensor  # [n_outputs] the sigma each output was denoised from
    chain: torch.Tensor  # [n_outputs] chain id
    ledger: NFELedger
    sigma_trace: torch.Tensor | None = None  # [n_gibbs_steps, C] sigma of every chain after each Gibbs step


def pick_smallest_sigma(xs, indices):
    """Per chain, the state with the smallest sigma of a block (the first one wins ties).

    ``xs``: list of ``[C, ...]`` states after each Gibbs step of the block;
    ``indices``: list of ``[C]`` grid indices (a larger index is a smaller
    sigma).  A later state replaces the current pick only if its sigma is
    strictly smaller, as in the authors' code.  Returns ``(x [C, ...], index [C])``.
    """
    best_x, best_idx = xs[0].clone(), indices[0].clone()
    for x, idx in zip(xs[1:], indices[1:]):
        better = idx > best_idx
        best_x = torch.where(better.reshape(-1, *([1] * (x.ndim - 1))), x, best_x)
        best_idx = torch.where(better, idx, best_idx)
    return best_x, best_idx


class DMCMCSampler:
    """Persistent DLG chains that stream denoised outputs (see the module docstring)."""

    def __init__(self, model, config: DMCMCConfig, *, data_shape, classifier=None, sigma_update=None,
                 log_prior=None, device="cpu", dtype=torch.float64, keep_trace=True):
        self.config = config.validate()
        self.model = model
        self.data_shape = tuple(data_shape)
        self.device, self.dtype = torch.device(device), dtype
        self.grid = config.grid().to(self.device)
        self.classifier = classifier
        if classifier is not None:
            n = getattr(classifier, "n_levels", None)
            if n is not None and n != self.grid.numel():
                raise ValueError(f"the classifier predicts {n} levels but the grid has {self.grid.numel()} "
                                 f"(n_levels={config.n_levels})")
            in_shape = getattr(classifier, "input_shape", None)
            if in_shape is not None and tuple(in_shape) != self.data_shape:
                raise ValueError(f"classifier input shape {tuple(in_shape)} does not match data shape "
                                 f"{self.data_shape}")
        self.sigma_update = make_sigma_update(sigma_update or config.sigma_update, model=model,
                                              classifier=classifier, log_prior=log_prior)
        self.integrator = get_integrator(config.integrator)
        # noise is drawn where the chains live (a CPU generator would copy every draw to the GPU)
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        self.ledger = NFELedger(n_chains=config.n_chains)
        self.state = None
        self.rounds_done = 0
        self.keep_trace = keep_trace
        self.trace: list[torch.Tensor] = []

    # -- counting helpers
    def _classifier_rows(self) -> int:
        return int(getattr(self.classifier, "rows", 0)) if self.classifier is not None else 0

    def step_size(self, state, eta: float):
        """Per-chain Langevin step: ``eta + eta_rel * sigma^2`` (the paper's absolute eta when eta_rel = 0)."""
        return step_size(eta, self.config.eta_rel, state.sigma)

    def init_chains(self) -> None:
        """The paper's initialisation: KAR2 from sigma_max, a noise kick, a sigma-update, the burn-in."""
        cfg, C = self.config, self.config.n_chains
        counter = CountingDenoiser(self.model, n_samples=C)
        c0 = self._classifier_rows()
        x = randn((C, *self.data_shape), self.generator, self.dtype, self.device) * cfg.sigma_max
        if cfg.init_steps > 0:
            x, _ = kar2(counter, x, cfg.sigma_max, cfg.sigma_min, cfg.init_steps, generator=self.generator)
        x = x + cfg.init_kick * randn(x.shape, self.generator, self.dtype, self.device)
        index = self.sigma_update(x, self.grid, self.generator)
        state = dlg_init(x, index, self.grid)
        for n_steps, eta in cfg.burn_in:
            for _ in range(int(n_steps)):
                state, _ = dlg_step(counter, state, self.sigma_update,
                                    eta=self.step_size(state, eta if eta is not None else cfg.eta),
                                    generator=self.generator, x_update=cfg.x_update)
        self.ledger.add(init=counter.rows, classifier_init=self._classifier_rows() - c0)
        self.state = state

    def next_round(self):
        """n_skip Gibbs steps, smallest-sigma pick, denoise, Tweedie: one output per chain.

        Returns ``(outputs [C, ...], chosen_sigma [C])``.
        """
        cfg, C = self.config, self.config.n_chains
        if self.state is None:
            self.init_chains()
        gibbs = CountingDenoiser(self.model, n_samples=C)
        c0 = self._classifier_rows()
        state = self.state
        xs, idxs = [], []
        for _ in range(cfg.n_skip):
            state, info = dlg_step(gibbs, state, self.sigma_update, eta=self.step_size(state, cfg.eta),
                                   generator=self.generator, x_update=cfg.x_update)
            if self.keep_trace:
                self.trace.append(state.sigma.detach().cpu())
            xs.append(state.x)
            idxs.append(state.index)
        best_x, best_idx = pick_smallest_sigma(xs, idxs)
        self.state = state
        sigma0 = self.grid[best_idx].to(self.dtype)
        den = CountingDenoiser(self.model, n_samples=C)
        out, info = self._denoise(den, best_x, sigma0)
        tw = CountingDenoiser(self.model, n_samples=C)
        if cfg.final_tweedie == "always" or (cfg.final_tweedie == "auto" and info.sigma_end > 0):
            out = tweedie(tw, out, cfg.tweedie_sigma or cfg.sigma_min)
        self.ledger.add(gibbs=gibbs.rows, denoise=den.rows, tweedie=tw.rows, classifier=self._classifier_rows() - c0,
                        n_outputs=C)
        self.rounds_done += 1
        return out, sigma0

    def denoising_steps(self, sigma: torch.Tensor) -> torch.Tensor:
        """Integrator steps for states picked at ``sigma`` [C]: ``steps``, or with ``steps_per_decade > 0``
        ``max(steps, ceil(steps_per_decade * log10(sigma / sigma_min)))`` (states at large sigma get more)."""
        cfg = self.config
        base = torch.full(sigma.shape, cfg.steps, dtype=torch.long, device=sigma.device)
        if not cfg.steps_per_decade:
            return base
        dec = torch.log10((sigma / cfg.sigma_min).clamp(min=1.0))
        return torch.maximum(base, torch.ceil(cfg.steps_per_decade * dec - 1e-9).long())

    def _denoise(self, den, x, sigma0):
        """Run the integrator from each chain's own sigma; with steps_per_decade, one batch per step count."""
        cfg = self.config
        steps = self.denoising_steps(sigma0)
        if bool((steps == cfg.steps).all()):
            return self.integrator(den, x, sigma0, cfg.sigma_min, cfg.steps, generator=self.generator,
                                   **cfg.integrator_options)
        out, info = torch.empty_like(x), None
        for k in torch.unique(steps).tolist():
            idx = (steps == k).nonzero().flatten()
            out[idx], info = self.integrator(den, x[idx], sigma0[idx], cfg.sigma_min, int(k), generator=self.generator,
                                             **cfg.integrator_options)
        return out, info

    def run(self, rounds: int | None = None, progress: bool = False) -> DMCMCResult:
        """Run ``rounds`` output rounds (default ``outputs_per_chain``) in memory."""
        from tqdm import tqdm

        rounds = self.config.outputs_per_chain if rounds is None else rounds
        outs, sigs = [], []
        for _ in tqdm(range(rounds), desc="DLG rounds", disable=not progress):
            o, s = self.next_round()
            outs.append(o)
            sigs.append(s)
        C = self.config.n_chains
        chain = torch.arange(C).repeat(rounds)
        trace = torch.stack(self.trace) if self.trace else None
        return DMCMCResult(torch.cat(outs), torch.cat(sigs), chain, self.ledger, trace)

    # -- checkpointing
    def state_dict(self) -> dict:
        return {
            "format": "dmcmc_edu.dmcmc_checkpoint/1",
            "config": self.config.to_dict(),
            "rounds_done": self.rounds_done,
            "x": None if self.state is None else self.state.x.cpu(),
            "index": None if self.state is None else self.state.index.cpu(),
            "step": 0 if self.state is None else self.state.step,
            "generator": self.generator.get_state(),
            "ledger": self.ledger.to_dict(),
            "trace": torch.stack(self.trace) if self.trace else None,
        }

    def load_state_dict(self, d: dict) -> None:
        if d.get("format") != "dmcmc_edu.dmcmc_checkpoint/1":
            raise ValueError(f"not a DMCMC checkpoint (format {d.get('format')!r})")
        diff = _config_diff(d["config"], self.config.to_dict())
        if diff:
            raise ValueError("checkpoint was made with different settings: " + "; ".join(diff))
        self.rounds_done = int(d["rounds_done"])
        if d["x"] is not None:
            self.state = dlg_init(d["x"].to(self.device, self.dtype), d["index"].to(self.device), self.grid)
            self.state.step = int(d["step"])
        self.generator.set_state(d["generator"])
        self.ledger = NFELedger.from_dict(d["ledger"])
        self.trace = list(d["trace"]) if d.get("trace") is not None else []


def _config_diff(a: dict, b: dict) -> list[str]:
    # a setting missing on one side counts as its default (runs saved before an option existed still resume)
    defaults = DMCMCConfig().to_dict()
    keys = sorted(set(a) | set(b))
    return [f"{k}: {a.get(k)!r} (saved) vs {b.get(k)!r} (now)"
            for k in keys if _jsonable(a.get(k, defaults.get(k))) != _jsonable(b.get(k, defaults.get(k)))]


def _jsonable(v):
    return json.loads(json.dumps(v))


def atomic_write(path: Path, write_fn) -> None:
    """Write a file atomically: ``write_fn(tmp_path)`` then ``os.replace`` (a kill never leaves a half file)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write_fn(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _save_new(path: Path, array: np.ndarray) -> None:
    """Save an output file once; if it exists (an interrupted earlier run), it must hold the same data."""
    if path.exists():
        old = np.load(path)
        if old.shape != array.shape or not np.array_equal(old, array):
            raise RuntimeError(f"{path} exists with different content; refusing to overwrite user outputs")
        return

    def w(tmp):
        with open(tmp, "wb") as f:
            np.save(f, array)

    atomic_write(path, w)


def run_to_directory(sampler: DMCMCSampler, out_dir, *, checkpoint_every: int = 1, progress: bool = True,
                     run_info: dict | None = None, on_round=None) -> DMCMCResult:
    """Run (or resume) a DMCMC sampler into ``out_dir``, checkpointing atomically every ``checkpoint_every`` rounds.

    Layout: ``run.json`` (settings), ``checkpoint.pt`` (chain state, RNG state,
    ledger), ``rounds/round_XXXXXX.npy`` and ``rounds/sigma_XXXXXX.npy`` (one
    file per output round, never overwritten), and when complete
    ``samples.npy`` (float64, [n_outputs, ...]) and ``ledger.json``.  Re-running
    the same call resumes from the checkpoint and produces exactly the outputs
    of an uninterrupted run; different settings are refused with the list of
    differences.  ``on_round(r)`` is called after each round (tests use it to
    simulate a kill).
    """
    from tqdm import tqdm

    out = Path(out_dir)
    (out / "rounds").mkdir(parents=True, exist_ok=True)
    info = {"config": sampler.config.to_dict(), **(run_info or {})}
    run_json = out / "run.json"
    if run_json.exists():
        saved = json.loads(run_json.read_text())
        diff = _config_diff(saved.get("config", {}), info["config"])
        if diff:
            raise ValueError(f"{out} holds a run with different settings: " + "; ".join(diff)
                             + " -- choose another --out directory")
    else:
        atomic_write(run_json, lambda tmp: Path(tmp).write_text(json.dumps(info, indent=2)))
    ckpt = out / "checkpoint.pt"
    if ckpt.exists():
        sampler.load_state_dict(torch.load(ckpt, weights_only=True))

    def save_ckpt():
        atomic_write(ckpt, lambda tmp: torch.save(sampler.state_dict(), tmp))

    total = sampler.config.outputs_per_chain
    bar = tqdm(total=total, initial=sampler.rounds_done, desc="DLG output rounds", disable=not progress)
    while sampler.rounds_done < total:
        r = sampler.rounds_done
        o, s = sampler.next_round()
        _save_new(out / "rounds" / f"round_{r:06d}.npy", o.detach().cpu().numpy())
        _save_new(out / "rounds" / f"sigma_{r:06d}.npy", s.detach().cpu().numpy())
        if sampler.rounds_done % checkpoint_every == 0 or sampler.rounds_done == total:
            save_ckpt()
        bar.update(1)
        if on_round is not None:
            on_round(r)
    bar.close()
    if sampler.rounds_done == 0:
        save_ckpt()
    samples = np.concatenate([np.load(out / "rounds" / f"round_{r:06d}.npy") for r in range(total)])
    sig = np.concatenate([np.load(out / "rounds" / f"sigma_{r:06d}.npy") for r in range(total)])
    _save_new(out / "samples.npy", samples.astype(np.float64))
    ledger = sampler.ledger.to_dict()
    ledger["config"] = {k: sampler.config.to_dict()[k] for k in ("n_skip", "integrator", "steps", "n_chains",
                                                                   "outputs_per_chain", "sigma_update", "x_update")}
    atomic_write(out / "ledger.json", lambda tmp: Path(tmp).write_text(json.dumps(ledger, indent=2)))
    C = sampler.config.n_chains
    trace = torch.stack(sampler.trace) if sampler.trace else None
    return DMCMCResult(torch.from_numpy(samples), torch.from_numpy(sig), torch.arange(C).repeat(total),
                       sampler.ledger, trace)
