"""The paper's loop, checked against a reimplementation of the authors' code; the pick rules; the burn-in checkpoint."""

import math

import pytest
import torch

from dmcmc_edu.core.integrators import kar2
from dmcmc_edu.core.pick import pick_smallest_sigma
from dmcmc_edu.core.sampler import DMCMCConfig, DMCMCSampler
from dmcmc_edu.paper import NOT_IN_THE_CODE, PRESETS
from dmcmc_edu.runs import restore_sampler, sampler_checkpoint
from dmcmc_edu.targets import ExactLevelClassifier, ring

# the CelebA-HQ preset, shrunk to the ring: a step size the ring survives, short burn-in, fewer chains
SMALL = dict(eta=0.01, burn_in=[[5, 0.02], [3, None]], n_chains=60, outputs_per_chain=3, n_skip=4, steps=5, seed=11)


def authors_loop(mix, cfg: DMCMCConfig, classifier) -> torch.Tensor:
    """The authors' DLG loop written out: ULA, argmax, the running minimum from the state before each block."""
    g = torch.Generator().manual_seed(cfg.seed)
    grid = cfg.grid()
    C = cfg.n_chains

    def score(x, idx):
        s = grid[idx]
        return (mix(x, s) - x) / s[:, None] ** 2

    def langevin(x, idx, eta):
        z = torch.randn(x.shape, generator=g, dtype=x.dtype)
        return x + 0.5 * eta * score(x, idx) + math.sqrt(eta) * z

    def argmax(x):
        return classifier.log_probs(x).argmax(dim=1)

    x = torch.randn((C, 2), generator=g, dtype=torch.float64) * cfg.sigma_max
    x, _ = kar2(mix, x, cfg.sigma_max, cfg.sigma_min, cfg.init_steps, generator=g)
    x = x + cfg.init_kick * torch.randn(x.shape, generator=g, dtype=x.dtype)
    idx = argmax(x)
    for n, eta in cfg.burn_in:
        for _ in range(n):
            x = langevin(x, idx, cfg.eta if eta is None else eta)
            idx = argmax(x)
    outputs = []
    for _ in range(cfg.outputs_per_chain):
        x_min, idx_min = x, idx  # the authors' code: the state before the block is a candidate
        for _ in range(cfg.n_skip):
            x = langevin(x, idx, cfg.eta)
            idx = argmax(x)
            smaller = idx > idx_min  # a larger index is a smaller sigma; only a strictly smaller one replaces
            x_min = torch.where(smaller[:, None], x, x_min)
            idx_min = torch.where(smaller, idx, idx_min)
        out, _ = kar2(mix, x_min, grid[idx_min], cfg.sigma_min, cfg.steps, generator=g)
        # the final step x + eps^2 score(x, eps), evaluated as D(x, eps): the same quantity without the round-off
        outputs.append(mix(out, torch.full((C,), cfg.tweedie_sigma, dtype=torch.float64)))
    return torch.cat(outputs)


def test_paper_preset_follows_the_authors_loop_bitwise():
    mix = ring()
    cfg = DMCMCConfig(**{**PRESETS["paper-celebahq"], **SMALL})
    assert cfg.pick == "authors" and cfg.integrator == "kar2" and cfg.sigma_update == "classifier-argmax"
    clf = ExactLevelClassifier(mix, cfg.grid())
    ours = DMCMCSampler(mix, cfg, data_shape=(2,), classifier=clf).run().samples
    assert torch.equal(ours, authors_loop(mix, cfg, clf))
    # and the toolkit's own pick rule gives other outputs from the same chains
    block = DMCMCSampler(mix, DMCMCConfig(**{**PRESETS["paper-celebahq"], **SMALL, "pick": "block"}),
                         data_shape=(2,), classifier=clf).run().samples
    assert not torch.equal(block, ours)


def test_presets_say_what_is_not_the_papers():
    assert set(NOT_IN_THE_CODE) == set(PRESETS)
    for name, preset in PRESETS.items():
        assert preset["pick"] == "authors" and preset["sigma_update"] == "classifier-argmax"
        assert not set(NOT_IN_THE_CODE[name]) & set(preset)  # a value not in the code is not pretended
        DMCMCConfig(**preset).validate()
    assert set(NOT_IN_THE_CODE["paper-cifar10"]) == {"eta", "n_skip", "integrator", "steps"}


def test_pick_rules_on_a_block():
    """The authors' rule keeps the state before the block when no new state is strictly smaller in sigma."""
    x0, i0 = torch.zeros(3, 2), torch.tensor([5, 5, 5])
    xs = [torch.full((3, 2), 1.0), torch.full((3, 2), 2.0)]
    idx = [torch.tensor([4, 5, 7]), torch.tensor([3, 6, 7])]
    x, i = pick_smallest_sigma(xs, idx)
    assert i.tolist() == [4, 6, 7] and x[:, 0].tolist() == [1.0, 2.0, 1.0]
    x, i = pick_smallest_sigma(xs, idx, start=(x0, i0))
    assert i.tolist() == [5, 6, 7] and x[:, 0].tolist() == [0.0, 2.0, 1.0]  # chain 0: the old state wins


def test_authors_pick_can_denoise_one_state_twice():
    """At n_skip = 1 a chain whose sigma rises hands the same state to the integrator again (KAR1 is deterministic,
    so two outputs are equal); the block rule never does."""
    mix = ring()
    base = dict(sigma_min=0.01, sigma_max=80.0, n_levels=200, eta=0.01, n_skip=1, steps=3, n_chains=200,
                outputs_per_chain=4, init_steps=4, burn_in=[[3, None]], seed=2)
    repeats = {}
    for rule in ("authors", "block"):
        out = DMCMCSampler(mix, DMCMCConfig(**base, pick=rule), data_shape=(2,)).run().samples.reshape(4, 200, 2)
        repeats[rule] = int((out[1:] == out[:-1]).all(dim=2).sum())
    assert repeats["authors"] > 0 and repeats["block"] == 0


@pytest.mark.parametrize("kw,match", [
    (dict(eta=math.inf), "eta must be a finite number > 0"), (dict(sigma_max=math.inf), "sigma_max"),
    (dict(init_kick=math.nan), "init_kick"), (dict(init_kick=-1.0), "init_kick"),
    (dict(tweedie_sigma=-1e-3), "tweedie_sigma"), (dict(sigma_update="classifer-argmax"), "unknown sigma-update"),
    (dict(x_update="mlaa"), "unknown x-update"), (dict(pick="first"), "unknown pick"),
    (dict(n_levels=2.5), "n_levels must be an integer"), (dict(steps=True), "steps must be an integer"),
    (dict(burn_in=[[2.5, None]]), "burn_in entries"), (dict(eta_rel=math.nan), "eta_rel"),
])
def test_config_refuses_bad_values(kw, match):
    with pytest.raises(ValueError, match=match):
        DMCMCConfig(**kw).validate()


def test_burn_in_resumes_from_a_checkpoint_to_the_same_outputs():
    """A sampler stopped in the middle of its burn-in and restored from the checkpoint gives identical outputs."""
    mix = ring()
    cfg = DMCMCConfig(sigma_min=0.01, sigma_max=80.0, n_levels=100, eta=0.01, n_chains=20, outputs_per_chain=2,
                      init_steps=3, burn_in=[[4, 0.02], [3, None]], seed=4)
    whole = DMCMCSampler(mix, cfg, data_shape=(2,)).run()
    first = DMCMCSampler(mix, cfg, data_shape=(2,))
    assert not first.burn_in(max_steps=5) and first.burn_in_done == 5
    saved = sampler_checkpoint(first)
    second = DMCMCSampler(mix, cfg, data_shape=(2,))
    restore_sampler(second, saved)
    resumed = second.run()
    assert torch.equal(resumed.samples, whole.samples)
    assert resumed.ledger.per_output() == whole.ledger.per_output()


def test_diverging_chains_raise_naming_eta_sigma_and_the_bound():
    """--dlg --eta 1e6 used to finish with samples around 1e25; a chain far beyond sigma_max now stops the run."""
    cfg = DMCMCConfig(sigma_min=0.01, sigma_max=10.0, n_levels=50, eta=1e6, n_chains=8, outputs_per_chain=1,
                      init_steps=2, burn_in=[[20, None]], x_update="ula", seed=0)
    pattern = r"at Gibbs step \d+ diverged \(sigma .*eta \[1000000\.0.*4 \(tau \+ sigma\^2\)"
    with pytest.raises(FloatingPointError, match=pattern):
        DMCMCSampler(ring(), cfg, data_shape=(2,)).run()
