"""The DMCMC sampler: persistent DLG chains, smallest-sigma pick, denoising, Tweedie, an honest ledger.

What happens (the paper's algorithm, every constant a parameter):

1. **Initialisation** -- ``x = sigma_max z``; a short KAR2 run (``init_steps``; the paper's "20-step" run is 19
   steps = 37 NFE); add ``init_kick * z``; a sigma-update; then the burn-in, a list of :class:`BurnInPhase`
   ``(steps, eta)`` (``eta=None`` means the main eta; plain pairs are accepted and converted).
2. **Per output round** -- each (persistent) chain takes ``n_skip`` Gibbs steps; its smallest-sigma state
   (``pick``) is denoised from its own sigma to ``sigma_min`` by any integrator, then the Tweedie step.

**Mode weights.**  Chains near the data manifold rarely switch modes, so the mode weights are set by the chains'
*initialisation* and the effective sample size is about ``n_chains``: raise ``n_chains`` first for more outputs.

**State.**  The Gibbs steps are one :class:`~dmcmc_edu.core.dlg.DLGKernel` built at construction (one per
burn-in step size); divergence is checked once per :meth:`DMCMCSampler.burn_in` / :meth:`~DMCMCSampler.next_round`
call.  :meth:`DMCMCSampler.state_dict` / :meth:`~DMCMCSampler.load_state_dict` save and restore everything a run
needs to continue.  With ``per_chain_seeds`` every chain draws from its own generator (seeded from ``seed`` and the
chain's number, as EDM seeds each sample), so chain k's outputs do not depend on how many chains run beside it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from dmcmc_edu.core.contract import ORACLE_METHODS, CountingDenoiser
from dmcmc_edu.core.dlg import DivergenceMonitor, DLGKernel
from dmcmc_edu.core.integrators import INTEGRATORS, get_integrator, kar2
from dmcmc_edu.core.langevin import X_UPDATES, StepSize
from dmcmc_edu.core.ledger import NFELedger
from dmcmc_edu.core.pick import PICK_RULES, pick_smallest_sigma
from dmcmc_edu.core.random import normal
from dmcmc_edu.core.schedules import noise_level_grid
from dmcmc_edu.core.sigma_updates import SIGMA_UPDATES, check_classifier_fits, make_sigma_update
from dmcmc_edu.core.tweedie import FINAL_TWEEDIE, finish_with_tweedie

__all__ = ["DMCMCConfig", "DMCMCSampler", "DMCMCResult", "BurnInPhase", "chain_seed", "STATE_FORMAT"]
STATE_FORMAT = "dmcmc_edu.dmcmc_checkpoint/1"  # the format of DMCMCSampler.state_dict()


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class BurnInPhase:
    """A block of the burn-in: ``steps`` Gibbs steps of step size ``eta`` (None: the run's main eta)."""

    steps: int
    eta: float | None = None

    def __iter__(self):  # unpacks as the (steps, eta) pair that configs and older code use
        return iter((self.steps, self.eta))


def _phase(v):
    """A ``(steps, eta)`` pair as a :class:`BurnInPhase`; anything else is left for ``validate`` to refuse."""
    return BurnInPhase(*v) if isinstance(v, (list, tuple)) and len(v) == 2 else v


def _plain(v):
    """A config value as JSON would give it back (tuples and phases as lists), for comparisons."""
    if isinstance(v, (list, tuple, BurnInPhase)):
        return [_plain(e) for e in v]
    return {k: _plain(e) for k, e in v.items()} if isinstance(v, dict) else v


def chain_seed(seed: int, chain: int) -> int:
    """The seed of chain ``chain``'s own generator: a 63-bit hash of ``(seed, chain)`` (numpy's SeedSequence)."""
    return int(np.random.SeedSequence([seed, chain]).generate_state(1, np.uint64)[0] >> np.uint64(1))


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
    burn_in: list = field(default_factory=lambda: [BurnInPhase(10)])  # BurnInPhase or (steps, eta); None = main eta
    final_tweedie: str = "auto"  # auto (only if the integrator ends above 0) | always (paper) | never
    tweedie_sigma: float | None = None  # default: sigma_min (paper: 1e-2 CIFAR10, 1e-3 CelebA-HQ)
    seed: int = 0
    per_chain_seeds: bool = False  # one generator per chain (chain_seed): outputs independent of n_chains; slower

    def __post_init__(self):
        if isinstance(self.burn_in, (list, tuple)):
            self.burn_in = [_phase(v) for v in self.burn_in]

    def validate(self, integrators=None) -> "DMCMCConfig":
        """Check every setting's type, finiteness, range and name (the integrator's in ``integrators`` when given,
        else in the core's table); a ``ValueError`` names the first bad one."""
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
                            ("final_tweedie", FINAL_TWEEDIE), ("integrator", integrators or INTEGRATORS)):
            value = getattr(self, name)
            _need(value in known, f"unknown {name.replace('_', '-')} {value!r}; known: {', '.join(known)}")
        _need(isinstance(self.integrator_options, dict),
              f"integrator_options must be a dict, got {type(self.integrator_options).__name__}")
        _need(isinstance(self.per_chain_seeds, bool), f"per_chain_seeds must be True or False, got "
                                                      f"{self.per_chain_seeds!r}")
        _need(isinstance(self.burn_in, (list, tuple)), f"burn_in must be a list of (steps, eta), got {self.burn_in!r}")
        self.burn_in = [_phase(v) for v in self.burn_in]
        for p in self.burn_in:
            ok = isinstance(p, BurnInPhase) and isinstance(p.steps, int) and not isinstance(p.steps, bool)
            _need(ok and p.steps >= 0 and (p.eta is None or (_finite(p.eta) and p.eta > 0)),
                  f"burn_in entries must be (steps >= 0, eta > 0 or None), got {_plain(p)!r}")
        return self

    def to_dict(self) -> dict:
        """The settings as plain data (burn-in phases as ``[steps, eta]``).  ``per_chain_seeds`` appears only when
        set, so the records and fingerprints of runs made before it existed are unchanged."""
        d = self._all()
        if not self.per_chain_seeds:
            del d["per_chain_seeds"]
        return d

    def diff(self, saved: dict) -> list[str]:
        """The settings of ``saved`` (a :meth:`to_dict`; a missing key is its default) that differ from these,
        one ``"key: saved (saved) vs now (now)"`` line each."""
        now, base = self._all(), DMCMCConfig()._all()
        return [f"{k}: {saved.get(k)!r} (saved) vs {now.get(k)!r} (now)" for k in sorted(set(saved) | set(now))
                if _plain(saved.get(k, base.get(k))) != _plain(now.get(k))]

    def _all(self) -> dict:
        return dataclasses.asdict(self) | {"burn_in": _plain(self.burn_in)}

    def burn_in_etas(self) -> list[float]:
        """The step size of every Gibbs step of the burn-in, in order (a phase's eta, or the main eta)."""
        return [self.eta if p.eta is None else p.eta for p in map(_phase, self.burn_in) for _ in range(int(p.steps))]

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
    """Persistent DLG chains that stream denoised outputs (see the module docstring).

    ``generator`` is the sampler's ``torch.Generator``, or with ``per_chain_seeds`` a list of one per chain.
    ``integrators``: the table in which ``config.integrator`` is looked up (default: the core's six); pass
    ``dmcmc_edu.registry.integrator_table()`` to name the solvers of :mod:`dmcmc_edu.solvers` without registering
    anything.
    """

    def __init__(self, model, config: DMCMCConfig, *, data_shape, classifier=None, sigma_update=None,
                 log_prior=None, device="cpu", dtype=torch.float64, keep_trace=True, integrators=None):
        self.config = cfg = config.validate(integrators)
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
        # names resolve in ``integrators`` when given (e.g. dmcmc_edu.registry.integrator_table(), which adds the
        # solvers), else in the core's table
        self.integrator = integrators[config.integrator] if integrators else get_integrator(config.integrator)
        # the Gibbs steps: one kernel, built here, evaluating the model through one counter of its rows
        self._chains = CountingDenoiser(model, n_samples=cfg.n_chains)
        self.kernel = DLGKernel(self._chains, self.sigma_update, self.grid, step_size=StepSize(cfg.eta, cfg.eta_rel),
                                x_update=cfg.x_update)
        self._burn_kernels = {eta: self.kernel.with_step_size(StepSize(eta, cfg.eta_rel))
                              for eta in set(cfg.burn_in_etas())}
        # noise is drawn where the chains live (a CPU generator would copy every draw to the GPU)
        seeds = [chain_seed(cfg.seed, k) for k in range(cfg.n_chains)] if cfg.per_chain_seeds else [cfg.seed]
        gens = [torch.Generator(device=self.device).manual_seed(sd) for sd in seeds]
        self.generator = gens if cfg.per_chain_seeds else gens[0]
        self.ledger = NFELedger(n_chains=config.n_chains)
        self.state, self.burn_in_done, self.rounds_done = None, 0, 0
        self.keep_trace = keep_trace
        self.trace: list[torch.Tensor] = []  # sigma [C] after each Gibbs step of the output rounds, on the device

    def _classifier_rows(self) -> int:
        return int(getattr(self.classifier, "rows", 0)) if self.classifier is not None else 0

    def _tally(self) -> tuple:
        """The counters now, to be subtracted at the end of a phase (:meth:`_counted`)."""
        return (self._chains.rows, dict(self._chains.oracle_rows), dict(self._oracle.oracle_rows),
                self._classifier_rows())

    def _counted(self, t0: tuple, phase: str, *cs) -> dict:
        """Since the tally ``t0``: the oracle rows (sigma-update, Gibbs steps and the counters ``cs``) as ledger
        fields, and the classifier's rows; the Gibbs rows are :meth:`_gibbs_rows`."""
        g, o = t0[1], t0[2]
        r = {k: self._oracle.oracle_rows[k] - o[k] + self._chains.oracle_rows[k] - g[k]
             + sum(c.oracle_rows[k] for c in cs) for k in ORACLE_METHODS}
        return {"oracle_posterior" + phase: r["sigma_log_posterior"], "oracle_log_prob" + phase: r["log_prob"],
                "classifier" + phase: self._classifier_rows() - t0[3]}

    def _gibbs_rows(self, t0: tuple) -> int:
        return self._chains.rows - t0[0]

    def init_chains(self) -> None:
        """The paper's initialisation: KAR2 from sigma_max, a noise kick and a sigma-update (:meth:`burn_in` next)."""
        cfg, C = self.config, self.config.n_chains
        counter = CountingDenoiser(self.model, n_samples=C)
        t0 = self._tally()
        x = normal((C, *self.data_shape), self.generator, self.dtype, self.device) * cfg.sigma_max
        if cfg.init_steps > 0:
            x, _ = kar2(counter, x, cfg.sigma_max, cfg.sigma_min, cfg.init_steps, generator=self.generator)
        x = x + cfg.init_kick * normal(x.shape, self.generator, self.dtype, self.device)
        self.state = self.kernel.init(x, self.sigma_update(x, self.grid, self.generator))
        self.burn_in_done = 0
        self.ledger.add(init=counter.rows, **self._counted(t0, "_init", counter))

    def burn_in(self, max_steps: int | None = None) -> bool:
        """Take up to ``max_steps`` (default: all) of the burn-in's Gibbs steps; True once the burn-in is done.

        A chain that diverges raises ``FloatingPointError`` at the end of the call (one check per call)."""
        if self.state is None:
            self.init_chains()
        etas = self.config.burn_in_etas()[self.burn_in_done:]
        t0, monitor = self._tally(), DivergenceMonitor()
        for eta in etas[:max_steps]:
            state, info = self._burn_kernels[eta].step(self.state, self.generator)
            monitor.update(self.state, info)
            self.state = state
            self.burn_in_done += 1
        monitor.check()
        self.ledger.add(init=self._gibbs_rows(t0), **self._counted(t0, "_init"))
        return len(etas[:max_steps]) == len(etas)

    def next_round(self):
        """n_skip Gibbs steps, the pick, denoising, Tweedie: returns ``(outputs [C, ...], chosen_sigma [C])``."""
        cfg, C = self.config, self.config.n_chains
        self.burn_in()
        t0, monitor = self._tally(), DivergenceMonitor()
        state = self.state
        start = (state.x, state.index) if cfg.pick == "authors" else None
        xs, idxs = [], []
        for _ in range(cfg.n_skip):
            new, info = self.kernel.step(state, self.generator)
            monitor.update(state, info)
            state = new
            if self.keep_trace:
                self.trace.append(state.sigma.detach())
            xs.append(state.x)
            idxs.append(state.index)
        monitor.check()
        best_x, best_idx = pick_smallest_sigma(xs, idxs, start)
        self.state = state
        sigma0 = self.grid[best_idx].to(self.dtype)
        den = CountingDenoiser(self.model, n_samples=C)
        out, info = self._denoise(den, best_x, sigma0)
        tw = CountingDenoiser(self.model, n_samples=C)
        out, _ = finish_with_tweedie(tw, out, info.sigma_end, cfg.tweedie_sigma or cfg.sigma_min, cfg.final_tweedie)
        self.ledger.add(gibbs=self._gibbs_rows(t0), denoise=den.rows, tweedie=tw.rows, n_outputs=C,
                        **self._counted(t0, "", den, tw))
        self.rounds_done += 1
        return out, sigma0

    def state_dict(self) -> dict:
        """Everything needed to continue this sampler (in another process): the config, the progress (burn-in
        steps and rounds done), the chains (on the CPU), the generator state(s), the ledger and the sigma trace.
        Plain tensors and numbers, for ``torch.save`` / ``torch.load(weights_only=True)``."""
        st, g = self.state, self.generator
        return {"format": STATE_FORMAT, "config": self.config.to_dict(), "rounds_done": self.rounds_done,
                "burn_in_done": self.burn_in_done, "x": None if st is None else st.x.cpu(),
                "index": None if st is None else st.index.cpu(), "step": 0 if st is None else st.step,
                "generator": [h.get_state() for h in g] if isinstance(g, list) else g.get_state(),
                "ledger": self.ledger.to_dict(), "trace": torch.stack(self.trace).cpu() if self.trace else None}

    def load_state_dict(self, d: dict) -> None:
        """Continue from :meth:`state_dict`'s dict; one made with other settings is refused (``ValueError``)."""
        if not isinstance(d, dict) or d.get("format") != STATE_FORMAT:
            raise ValueError(f"not a DMCMC checkpoint (format {d.get('format') if isinstance(d, dict) else d!r})")
        diff = self.config.diff(d["config"])
        if diff:
            raise ValueError("checkpoint was made with different settings: " + "; ".join(diff))
        gens = self.generator if isinstance(self.generator, list) else [self.generator]
        saved = d["generator"] if isinstance(d["generator"], (list, tuple)) else [d["generator"]]
        if len(saved) != len(gens):
            raise ValueError(f"checkpoint holds {len(saved)} generator states, the sampler has {len(gens)}")
        self.rounds_done = int(d["rounds_done"])
        # checkpoints written before the burn-in was checkpointed hold chains whose burn-in is complete
        self.burn_in_done = int(d.get("burn_in_done", len(self.config.burn_in_etas())))
        self.state = None
        if d["x"] is not None:
            self.state = self.kernel.init(d["x"].to(self.device, self.dtype), d["index"].to(self.device))
            self.state.step = int(d["step"])
        for g, state in zip(gens, saved):
            g.set_state(state)
        self.ledger = NFELedger.from_dict(d["ledger"])
        self.trace = [t.to(self.device) for t in d["trace"]] if d.get("trace") is not None else []

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
        per_chain = isinstance(self.generator, list)
        for k in torch.unique(steps).tolist():
            idx = (steps == k).nonzero().flatten()
            gen = [self.generator[i] for i in idx.tolist()] if per_chain else self.generator
            out[idx], info = self.integrator(den, x[idx], sigma0[idx], cfg.sigma_min, int(k), generator=gen,
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
        trace = torch.stack(self.trace).cpu() if self.trace else None
        return DMCMCResult(torch.cat(outs), torch.cat(sigs), chain, self.ledger, trace)
