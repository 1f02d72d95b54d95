"""The DMCMC sampler: persistent DLG chains, smallest-sigma pick, denoising, Tweedie, an honest ledger.

What happens (the paper's algorithm, every constant a parameter):

1. **Initialisation** -- ``x = sigma_max z``; a short KAR2 run (``init_steps``; the paper's "20-step" run is 19
   steps = 37 NFE); add ``init_kick * z``; a sigma-update; then the burn-in, a list of ``(steps, eta)`` pairs
   (``eta=None`` means the main eta).
2. **Per output round** -- each (persistent) chain takes ``n_skip`` Gibbs steps; its smallest-sigma state
   (``pick``) is denoised from its own sigma to ``sigma_min`` by any integrator, then the Tweedie step.

**Mode weights.**  Chains near the data manifold rarely switch modes, so the mode weights are set by the chains'
*initialisation* and the effective sample size is about ``n_chains``: raise ``n_chains`` first for more outputs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch

from dmcmc_edu.core.contract import ORACLE_METHODS, CountingDenoiser
from dmcmc_edu.core.dlg import dlg_init, dlg_step
from dmcmc_edu.core.integrators import INTEGRATORS, get_integrator, kar2
from dmcmc_edu.core.langevin import X_UPDATES, step_size
from dmcmc_edu.core.ledger import NFELedger
from dmcmc_edu.core.pick import PICK_RULES, pick_smallest_sigma
from dmcmc_edu.core.random import normal
from dmcmc_edu.core.schedules import noise_level_grid
from dmcmc_edu.core.sigma_updates import SIGMA_UPDATES, check_classifier_fits, make_sigma_update
from dmcmc_edu.core.tweedie import FINAL_TWEEDIE, finish_with_tweedie

__all__ = ["DMCMCConfig", "DMCMCSampler", "DMCMCResult"]


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


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
    pick: str = "block"  # block: among the n_skip new states | authors: also the state before the block (core/pick.py)
    n_chains: int = 256
    outputs_per_chain: int = 4
    init_steps: int = 19  # KAR2 steps of the initial run (19 steps = the paper's N=20, 37 NFE)
    init_kick: float = 0.5  # std of the noise added after the initial run
    burn_in: list = field(default_factory=lambda: [[10, None]])  # (steps, eta); None = main eta
    final_tweedie: str = "auto"  # auto (only if the integrator ends above 0) | always (paper) | never
    tweedie_sigma: float | None = None  # default: sigma_min (paper: 1e-2 CIFAR10, 1e-3 CelebA-HQ)
    seed: int = 0

    def validate(self) -> "DMCMCConfig":
        """Check every setting's type, finiteness, range and name; a ``ValueError`` names the first bad one."""
        for name, lo in (("n_skip", 1), ("n_chains", 1), ("outputs_per_chain", 1), ("steps", 1), ("init_steps", 0),
                         ("n_levels", 2), ("seed", 0)):
            v = getattr(self, name)
            _need(isinstance(v, int) and not isinstance(v, bool) and v >= lo, f"{name} must be an integer >= {lo}, "
                                                                              f"got {v!r}")
        for name, strict in (("sigma_min", True), ("eta", True), ("eta_rel", False), ("init_kick", False),
                             ("steps_per_decade", False)):
            v = getattr(self, name)
            _need(_finite(v) and (v > 0 if strict else v >= 0),
                  f"{name} must be a finite number {'>' if strict else '>='} 0, got {v!r}")
        _need(_finite(self.sigma_max) and self.sigma_max > self.sigma_min,
              f"need 0 < sigma_min < sigma_max, both finite, got {self.sigma_min}, {self.sigma_max}")
        _need(self.tweedie_sigma is None or (_finite(self.tweedie_sigma) and self.tweedie_sigma > 0),
              f"tweedie_sigma must be None or a finite number > 0, got {self.tweedie_sigma!r}")
        for name, known in (("sigma_update", SIGMA_UPDATES), ("x_update", X_UPDATES), ("pick", PICK_RULES),
                            ("final_tweedie", FINAL_TWEEDIE), ("integrator", INTEGRATORS)):
            value = getattr(self, name)
            _need(value in known, f"unknown {name.replace('_', '-')} {value!r}; known: {', '.join(known)}")
        _need(isinstance(self.integrator_options, dict),
              f"integrator_options must be a dict, got {type(self.integrator_options).__name__}")
        for pair in self.burn_in:
            ok = len(pair) == 2 and isinstance(pair[0], int) and pair[0] >= 0
            _need(ok and (pair[1] is None or (_finite(pair[1]) and pair[1] > 0)),
                  f"burn_in entries must be (steps >= 0, eta > 0 or None), got {pair!r}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def grid(self) -> torch.Tensor:
        return noise_level_grid(self.sigma_min, self.sigma_max, self.n_levels)


@dataclass
class DMCMCResult:
    samples: torch.Tensor  # [n_outputs, ...], ordered round by round (round r, chain c -> r * C + c)
    chosen_sigma: torch.Tensor  # [n_outputs] the sigma each output was denoised from
    chain: torch.Tensor  # [n_outputs] chain id
    ledger: NFELedger
    sigma_trace: torch.Tensor | None = None  # [n_gibbs_steps, C] sigma of every chain after each Gibbs step


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
        self._oracle = CountingDenoiser(model)  # the sigma-update's oracle rows (the exact posterior) are counted
        self.sigma_update = make_sigma_update(sigma_update or config.sigma_update, model=self._oracle,
                                              classifier=classifier, log_prior=log_prior)
        if classifier is not None:
            check_classifier_fits(classifier, self.grid, self.data_shape)
        self.integrator = get_integrator(config.integrator)
        # noise is drawn where the chains live (a CPU generator would copy every draw to the GPU)
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        self.ledger = NFELedger(n_chains=config.n_chains)
        self.state, self.burn_in_done, self.rounds_done = None, 0, 0
        self.keep_trace = keep_trace
        self.trace: list[torch.Tensor] = []

    def _classifier_rows(self) -> int:
        return int(getattr(self.classifier, "rows", 0)) if self.classifier is not None else 0

    def _oracle_rows(self, o0: dict, phase: str, *cs) -> dict:  # oracle rows since o0, plus cs', as ledger fields
        r = {k: self._oracle.oracle_rows[k] - o0[k] + sum(c.oracle_rows[k] for c in cs) for k in ORACLE_METHODS}
        return {"oracle_posterior" + phase: r["sigma_log_posterior"], "oracle_log_prob" + phase: r["log_prob"]}

    def init_chains(self) -> None:
        """The paper's initialisation: KAR2 from sigma_max, a noise kick and a sigma-update (:meth:`burn_in` next)."""
        cfg, C = self.config, self.config.n_chains
        counter = CountingDenoiser(self.model, n_samples=C)
        c0, o0 = self._classifier_rows(), dict(self._oracle.oracle_rows)
        x = normal((C, *self.data_shape), self.generator, self.dtype, self.device) * cfg.sigma_max
        if cfg.init_steps > 0:
            x, _ = kar2(counter, x, cfg.sigma_max, cfg.sigma_min, cfg.init_steps, generator=self.generator)
        x = x + cfg.init_kick * normal(x.shape, self.generator, self.dtype, self.device)
        self.state = dlg_init(x, self.sigma_update(x, self.grid, self.generator), self.grid)
        self.burn_in_done = 0
        self.ledger.add(init=counter.rows, classifier_init=self._classifier_rows() - c0,
                        **self._oracle_rows(o0, "_init", counter))

    def burn_in(self, max_steps: int | None = None) -> bool:
        """Take up to ``max_steps`` (default: all) of the burn-in's Gibbs steps; True once the burn-in is done."""
        cfg = self.config
        if self.state is None:
            self.init_chains()
        etas = [cfg.eta if eta is None else eta for n, eta in cfg.burn_in for _ in range(int(n))][self.burn_in_done:]
        counter, c0 = CountingDenoiser(self.model, n_samples=cfg.n_chains), self._classifier_rows()
        o0 = dict(self._oracle.oracle_rows)
        for eta in etas[:max_steps]:
            self.state, _ = dlg_step(counter, self.state, self.sigma_update, generator=self.generator,
                                     eta=step_size(eta, cfg.eta_rel, self.state.sigma), x_update=cfg.x_update)
            self.burn_in_done += 1
        self.ledger.add(init=counter.rows, classifier_init=self._classifier_rows() - c0,
                        **self._oracle_rows(o0, "_init", counter))
        return len(etas[:max_steps]) == len(etas)

    def next_round(self):
        """n_skip Gibbs steps, the pick, denoising, Tweedie: returns ``(outputs [C, ...], chosen_sigma [C])``."""
        cfg, C = self.config, self.config.n_chains
        self.burn_in()
        gibbs = CountingDenoiser(self.model, n_samples=C)
        c0, o0 = self._classifier_rows(), dict(self._oracle.oracle_rows)
        state = self.state
        start = (state.x, state.index) if cfg.pick == "authors" else None
        xs, idxs = [], []
        for _ in range(cfg.n_skip):
            state, info = dlg_step(gibbs, state, self.sigma_update, eta=step_size(cfg.eta, cfg.eta_rel, state.sigma),
                                   generator=self.generator, x_update=cfg.x_update)
            if self.keep_trace:
                self.trace.append(state.sigma.detach().cpu())
            xs.append(state.x)
            idxs.append(state.index)
        best_x, best_idx = pick_smallest_sigma(xs, idxs, start)
        self.state = state
        sigma0 = self.grid[best_idx].to(self.dtype)
        den = CountingDenoiser(self.model, n_samples=C)
        out, info = self._denoise(den, best_x, sigma0)
        tw = CountingDenoiser(self.model, n_samples=C)
        out, _ = finish_with_tweedie(tw, out, info.sigma_end, cfg.tweedie_sigma or cfg.sigma_min, cfg.final_tweedie)
        self.ledger.add(gibbs=gibbs.rows, denoise=den.rows, tweedie=tw.rows, classifier=self._classifier_rows() - c0,
                        n_outputs=C, **self._oracle_rows(o0, "", gibbs, den, tw))
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
        """Run the integrator from each chain's own sigma, one batch per number of steps."""
        cfg = self.config
        steps = self.denoising_steps(sigma0)
        out, info = torch.empty_like(x), None
        for k in torch.unique(steps).tolist():
            idx = (steps == k).nonzero().flatten()
            out[idx], info = self.integrator(den, x[idx], sigma0[idx], cfg.sigma_min, int(k), generator=self.generator,
                                             **cfg.integrator_options)
        return out, info

    def run(self, rounds: int | None = None, progress=None) -> DMCMCResult:
        """Run ``rounds`` output rounds (default ``outputs_per_chain``); ``progress`` may wrap them (``tqdm.tqdm``)."""
        rounds = self.config.outputs_per_chain if rounds is None else rounds
        outs, sigs = [], []
        for _ in (progress or iter)(range(rounds)):
            o, s = self.next_round()
            outs.append(o)
            sigs.append(s)
        chain = torch.arange(self.config.n_chains).repeat(rounds)
        trace = torch.stack(self.trace) if self.trace else None
        return DMCMCResult(torch.cat(outs), torch.cat(sigs), chain, self.ledger, trace)
