"""The DMCMC sampler: persistent DLG chains, smallest-sigma pick, denoising, Tweedie, an honest ledger.

What happens (the paper's algorithm, every constant a parameter):

1. **Initialisation** -- ``x = sigma_max z``; a short KAR2 run (``init_steps``; the paper's "20-step" run is 19
   steps = 37 NFE); add ``init_kick * z``; a sigma-update; then the burn-in, a list of ``(steps, eta)`` pairs
   (``eta=None`` means the main eta).
2. **Per output round** -- every chain takes ``n_skip`` Gibbs steps; per chain the state with the smallest sigma
   in the block (a strictly smaller sigma replaces) is denoised by any integrator of the registry from that
   sigma down to ``sigma_min`` (``steps`` steps), then the Tweedie step.
3. Chains are persistent: each round yields one output per chain.

**Mode weights.**  Chains that stay near the data manifold rarely switch modes, so the outputs of one chain are
strongly correlated and the mode weights of the outputs are set by the *initialisation* of the chains: the
effective sample size is about ``n_chains``, not ``n_chains * outputs_per_chain``.  Ask for more outputs by
raising ``n_chains`` first (as :func:`dmcmc_edu.targets.dlg_config` does); :mod:`dmcmc_edu.evaluation.diagnostics`
measures the autocorrelation and effective sample size of a run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from dmcmc_edu.core.contract import CountingDenoiser
from dmcmc_edu.core.dlg import dlg_init, dlg_step
from dmcmc_edu.core.integrators import get_integrator, kar2
from dmcmc_edu.core.langevin import step_size
from dmcmc_edu.core.ledger import NFELedger
from dmcmc_edu.core.pick import pick_smallest_sigma
from dmcmc_edu.core.random import normal
from dmcmc_edu.core.schedules import noise_level_grid
from dmcmc_edu.core.sigma_updates import check_classifier_fits, make_sigma_update
from dmcmc_edu.core.tweedie import finish_with_tweedie

__all__ = ["DMCMCConfig", "DMCMCSampler", "DMCMCResult", "PRESETS"]


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
"""The paper's settings as :class:`DMCMCConfig` keywords (eta/n_skip for CIFAR10 vary by figure; set them)."""


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
        self.sigma_update = make_sigma_update(sigma_update or config.sigma_update, model=model,
                                              classifier=classifier, log_prior=log_prior)
        if classifier is not None:
            check_classifier_fits(classifier, self.grid, self.data_shape)
        self.integrator = get_integrator(config.integrator)
        # noise is drawn where the chains live (a CPU generator would copy every draw to the GPU)
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        self.ledger = NFELedger(n_chains=config.n_chains)
        self.state = None
        self.rounds_done = 0
        self.keep_trace = keep_trace
        self.trace: list[torch.Tensor] = []

    def _classifier_rows(self) -> int:
        return int(getattr(self.classifier, "rows", 0)) if self.classifier is not None else 0

    def init_chains(self) -> None:
        """The paper's initialisation: KAR2 from sigma_max, a noise kick, a sigma-update, the burn-in."""
        cfg, C = self.config, self.config.n_chains
        counter = CountingDenoiser(self.model, n_samples=C)
        c0 = self._classifier_rows()
        x = normal((C, *self.data_shape), self.generator, self.dtype, self.device) * cfg.sigma_max
        if cfg.init_steps > 0:
            x, _ = kar2(counter, x, cfg.sigma_max, cfg.sigma_min, cfg.init_steps, generator=self.generator)
        x = x + cfg.init_kick * normal(x.shape, self.generator, self.dtype, self.device)
        index = self.sigma_update(x, self.grid, self.generator)
        state = dlg_init(x, index, self.grid)
        for n_steps, eta in cfg.burn_in:
            for _ in range(int(n_steps)):
                state, _ = dlg_step(counter, state, self.sigma_update,
                                    eta=step_size(eta if eta is not None else cfg.eta, cfg.eta_rel, state.sigma),
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
            state, info = dlg_step(gibbs, state, self.sigma_update, eta=step_size(cfg.eta, cfg.eta_rel, state.sigma),
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
        out, _ = finish_with_tweedie(tw, out, info.sigma_end, cfg.tweedie_sigma or cfg.sigma_min, cfg.final_tweedie)
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
