"""The checks of assignment A3 (posterior over noise levels, Langevin): model answers pass, stubs and mistakes fail.

The model answers are the solution cells of the source notebook and the mistakes those of
``tests/assignment_mistakes/a3_posterior_and_langevin.py``, so these tests see exactly what nbgrader grades.
The references the checks build themselves (the MALA ratio, the draws of the ULA step) are checked against
:mod:`dmcmc_edu.core.langevin` here.
"""
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from dmcmc_edu.core.langevin import langevin_stability_bound, mala_step, ula_step
from dmcmc_edu.core.random import normal, uniform
from dmcmc_edu.grading import CheckFailed
from dmcmc_edu.grading import a3_posterior_langevin as a3
from dmcmc_edu.targets import ExactLevelClassifier, GaussianMixture, ring

ROOT = Path(__file__).resolve().parents[1]
NAME = "a3_posterior_and_langevin"
NOTEBOOK = ROOT / f"notebooks/assignments/source/{NAME}/{NAME}.ipynb"
CHECKS = {"log_p_sigma": a3.check_log_p_sigma, "log_sigma_posterior": a3.check_log_sigma_posterior,
          "ula_step": a3.check_ula_step, "stability_bound": a3.check_stability_bound,
          "mala_log_acceptance": a3.check_mala_log_acceptance}


def _assert_close(got, want, rtol=1e-7, atol=1e-9):
    """Like torch.testing.assert_close (whose first call costs seconds of imports), for float64 tensors."""
    assert got.shape == want.shape and torch.allclose(got, want, rtol=rtol, atol=atol), (got, want)


def _cells() -> dict:
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    return {c["metadata"]["nbgrader"]["grade_id"]: "".join(c["source"]) for c in cells if c["cell_type"] == "code"}


def _namespace(sources: list[str]) -> dict:
    ns: dict = {}
    for src in sources:
        exec(compile(src, "<cell>", "exec"), ns)
    return ns


def _mistakes() -> list[dict]:
    spec = importlib.util.spec_from_file_location("a3_mistakes", ROOT / f"tests/assignment_mistakes/{NAME}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MISTAKES


def _setup() -> str:
    return _cells()["setup"].replace("print(", "(")


@pytest.fixture(scope="module")
def solutions() -> dict:
    return _namespace([_setup()] + [_cells()[name] for name in CHECKS])


@pytest.mark.parametrize("hidden", [False, True])
@pytest.mark.parametrize("name", list(CHECKS))
def test_model_answer_passes(solutions, name, hidden):
    assert CHECKS[name](solutions[name], hidden=hidden).startswith("ok:")


@pytest.mark.parametrize("name", list(CHECKS))
def test_stub_fails(name):
    def stub(*args, **kwargs):
        raise NotImplementedError()

    with pytest.raises(CheckFailed, match="not implemented yet"):
        CHECKS[name](stub)


@pytest.mark.parametrize("mistake", _mistakes(), ids=lambda m: f"{m['cell']}:{m['message']}")
def test_mistake_fails_with_its_message(mistake):
    ns = _namespace([_setup()])
    exec(compile(mistake["source"], "<mistake>", "exec"), ns)
    check = CHECKS[mistake["test"].removeprefix("test_")]
    with pytest.raises(CheckFailed) as err:
        check(ns[mistake["cell"]])
        check(ns[mistake["cell"]], hidden=True)
    assert mistake["message"] in str(err.value), str(err.value)


def test_the_visible_64d_case_underflows_without_logs():
    """The visible case is one where exp(log p_sigma) is 0 in float64, so the naive answer is caught."""
    mix, w, mu, tau = a3.isotropic_mixture(64)
    x, sigma, *_ = a3._log_p_cases(hidden=False)[0]
    logp = mix.log_prob(x, sigma)
    assert torch.isfinite(logp).all() and (logp < -745).any()


def test_posterior_reference_is_the_exact_level_classifier(solutions):
    """With a uniform prior the model answer equals the library's exact noise-level classifier."""
    mix, w, mu, tau = a3.isotropic_mixture(64)
    grid = torch.tensor([3.0, 1.0, 0.3, 0.1, 0.03], dtype=torch.float64)
    x, _ = a3._noised(mix, [0.05, 0.5, 2.0], seed=1)
    got = solutions["log_sigma_posterior"](lambda y, s: solutions["log_p_sigma"](y, s, w, mu, tau), x, grid,
                                           torch.zeros(5, dtype=torch.float64))
    _assert_close(got, ExactLevelClassifier(mix, grid).log_probs(x), rtol=1e-9, atol=1e-9)


def test_ula_draws_match_the_library():
    """The check's z are the draws ula_step makes: x' = x + (eta/2) score + sqrt(eta) z with those z."""
    mix = ring()
    x, s = a3._noised(mix, [0.2, 1.0, 3.0], seed=2)
    eta = torch.full_like(s, 0.1)
    out, _ = ula_step(mix, x, s, eta, torch.Generator().manual_seed(7))
    z = normal(x.shape, torch.Generator().manual_seed(7), x.dtype, x.device)
    _assert_close(out, x + 0.05 * mix.score(x, s) + math.sqrt(0.1) * z, rtol=1e-12, atol=1e-12)


def test_mala_reference_reproduces_mala_step():
    """Accepting where log u < the reference ratio gives mala_step's decisions and states, draw for draw."""
    mix = ring()
    x, s = a3._noised(mix, [0.3] * 40, seed=3)
    eta = 0.5
    new, accepted = mala_step(mix, x, s, torch.full_like(s, eta), torch.Generator().manual_seed(9))
    g = torch.Generator().manual_seed(9)
    z = normal(x.shape, g, x.dtype, x.device)
    u = uniform(x.shape[0], g, x.device)
    prop = x + 0.5 * eta * mix.score(x, s) + math.sqrt(eta) * z
    mine = torch.log(u) < a3.reference_mala_log_acceptance(mix.log_prob, mix.score, x, prop, s, eta)
    assert torch.equal(mine, accepted) and 0 < int(accepted.sum()) < 40
    _assert_close(new, torch.where(mine[:, None], prop, x))


def test_stability_bound_separates_stable_from_divergent():
    """The library's ULA on N(0, v I) stays put a little below the bound and blows up a little above it."""
    tau, sigma = 0.01, 0.1
    gauss = GaussianMixture([1.0], [[0.0] * 8], [(tau * torch.eye(8)).tolist()])
    s = torch.full((16,), sigma, dtype=torch.float64)
    bound = langevin_stability_bound(tau, sigma)
    spread = {}
    for factor in (0.95, 1.05):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(16, 8, generator=g, dtype=torch.float64) * math.sqrt(tau + sigma**2)
        for _ in range(60):
            x, _ = ula_step(gauss, x, s, torch.full_like(s, factor * bound), g)
        spread[factor] = x.norm(dim=1).median().item() / math.sqrt(8 * (tau + sigma**2))
    # below: the stationary spread of ULA, sqrt(1 / (1 - 0.95)) ~ 4.5 times the exact one; above: grows ~1.1^60
    assert spread[0.95] < 10 and spread[1.05] > 100, spread


def test_wrong_answers_get_the_movement_hint():
    """An unlisted wrong step still says how far it moved x, against the reference."""
    def half_noise(D, x, sigma, eta, z):
        return x + 0.5 * eta * (D(x, sigma) - x) / sigma[:, None] ** 2 + 0.5 * math.sqrt(eta) * z

    with pytest.raises(CheckFailed, match=r"your step moved x by .*, the reference by"):
        a3.check_ula_step(half_noise)


def test_log_density_must_get_one_level_per_sample(solutions):
    """Calling log_density with a float level is named (the student's own log_p_sigma needs sigma [B])."""
    def float_levels(log_density, x, grid, log_prior):
        log_joint = torch.stack([log_density(x, float(s)) for s in grid], dim=1) + log_prior[None]
        return log_joint - torch.logsumexp(log_joint, dim=1, keepdim=True)

    with pytest.raises(CheckFailed, match="called with sigma of shape float"):
        a3.check_log_sigma_posterior(float_levels)
