"""Tests of dmcmc_edu.targets.mixture: the exact Gaussian-mixture target.

Tolerances: closed-form identities are checked to ~1e-9 relative in float64;
Monte Carlo checks state their tolerance next to the assertion.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.testing import assert_close

from dmcmc_edu.core.contract import CountingDenoiser, score_from_denoiser
from dmcmc_edu.targets import GaussianMixture, grid, load_target, lowrank, preset, ring

F64 = torch.float64
TIGHT = dict(rtol=1e-9, atol=1e-9)



@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Single-threaded torch for these small tensors: on a loaded 2-core machine, intra-op threads
    oversubscribe and make each call 10-20x slower.  Restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# per-sample noise levels from tiny to huge, including exactly 0
SIGMAS = torch.tensor([0.0, 1e-3, 0.05, 0.3, 1.0, 4.0, 30.0, 1e3], dtype=F64)


def _full_mixture(seed: int = 0, K: int = 3, d: int = 3) -> GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(K, d, d, generator=g, dtype=F64)
    cov = A @ A.transpose(-1, -2) * 0.3 + 0.05 * torch.eye(d, dtype=F64)
    means = 2.0 * torch.randn(K, d, generator=g, dtype=F64)
    weights = torch.rand(K, generator=g, dtype=F64) + 0.2
    return GaussianMixture(weights, means, cov)


def _lowrank_pair(iso: bool, seed: int = 1, K: int = 3, d: int = 5, r: int = 2):
    """The same mixture built low-rank (F F^T + diag D) and with full covariances."""
    g = torch.Generator().manual_seed(seed)
    F = 0.8 * torch.randn(K, d, r, generator=g, dtype=F64)
    if iso:
        D = (0.05 + 0.1 * torch.rand(K, 1, generator=g, dtype=F64)).expand(K, d).clone()
    else:
        D = 0.02 + 0.3 * torch.rand(K, d, generator=g, dtype=F64)
    means = 1.5 * torch.randn(K, d, generator=g, dtype=F64)
    weights = torch.tensor([1.0, 2.0, 3.0], dtype=F64)[:K]
    lr = GaussianMixture(weights, means, factors=F, diagonal=D)
    full = GaussianMixture(weights, means, F @ F.transpose(-1, -2) + torch.diag_embed(D))
    return lr, full


def _points(m: GaussianMixture, n_per_sigma: int, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy points: x = x0 + sigma z with sigma cycling through SIGMAS, plus a few far-away points."""
    g = torch.Generator().manual_seed(seed)
    sig = SIGMAS.repeat(n_per_sigma)
    x0 = m.sample(sig.shape[0], generator=g)
    x = x0 + sig[:, None] * torch.randn(x0.shape, generator=g, dtype=F64)
    return x, sig


# --------------------------------------------------------------------------- score / denoiser


@pytest.mark.parametrize("which", ["ring", "full3d", "lowrank_iso", "lowrank_general"])
def test_score_equals_autograd_gradient_of_log_prob(which):
    m = {
        "ring": lambda: ring(),
        "full3d": lambda: _full_mixture(),
        "lowrank_iso": lambda: _lowrank_pair(True)[0],
        "lowrank_general": lambda: _lowrank_pair(False)[0],
    }[which]()
    x, sig = _points(m, 4)
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(m.log_prob(x, sig).sum(), x)
    assert_close(m.score(x.detach(), sig), grad, rtol=1e-8, atol=1e-10)


def test_denoiser_is_tweedie_and_identity_at_sigma_zero():
    for m in (ring(), _full_mixture(), _lowrank_pair(False)[0]):
        x, sig = _points(m, 3)
        den = m.denoise(x, sig)
        pos = sig > 0
        assert_close(den[pos], (x + sig[:, None] ** 2 * m.score(x, sig))[pos], rtol=1e-8, atol=1e-8)
        assert torch.equal(den[~pos], x[~pos])
        assert torch.equal(m(x, sig), den)


def test_denoiser_matches_monte_carlo_posterior_mean_1d():
    """E[x0 | x] by self-normalised importance sampling: x0_i ~ p_0, weights N(x; x0_i, sigma^2)."""
    m = GaussianMixture([0.2, 0.5, 0.3], [[-2.0], [0.5], [3.0]], [[[0.1]], [[0.4]], [[0.05]]])
    g = torch.Generator().manual_seed(11)
    x0 = m.sample(200_000, generator=g)[:, 0]
    xq = torch.linspace(-3.0, 4.0, 8, dtype=F64)
    for s in (0.3, 1.0):
        logw = -0.5 * ((xq[:, None] - x0[None, :]) / s) ** 2  # [Q, N]
        w = torch.softmax(logw, dim=1)
        est = (w * x0[None]).sum(1)
        se = ((w**2 * (x0[None] - est[:, None]) ** 2).sum(1)).sqrt()  # Monte Carlo standard error
        exact = m.denoise(xq[:, None], s)[:, 0]
        assert (se < 0.005).all(), se  # observed 0.0007 - 0.0033 with 200k samples
        # tolerance: 5 Monte Carlo standard errors + 1e-3 (at most ~0.018), and never above 0.02
        assert ((est - exact).abs() < 5 * se + 1e-3).all(), (est, exact, se)
        assert (est - exact).abs().max() < 0.02


def test_denoiser_matches_quadrature_1d():
    """E[x0 | x] = int x0 p_0(x0) N(x; x0, s^2) dx0 / int p_0(x0) N(x; x0, s^2) dx0 on a fine grid (tol 1e-8)."""
    m = GaussianMixture([0.2, 0.5, 0.3], [[-2.0], [0.5], [3.0]], [[[0.1]], [[0.4]], [[0.05]]])
    t = torch.linspace(-8.0, 9.0, 40_001, dtype=F64)
    logp0 = m.log_prob(t[:, None])
    xq = torch.linspace(-3.0, 4.0, 8, dtype=F64)
    for s in (0.05, 0.3, 1.0, 3.0):
        w = torch.softmax(logp0[None] - 0.5 * ((xq[:, None] - t[None]) / s) ** 2, dim=1)
        assert_close(m.denoise(xq[:, None], s)[:, 0], (w * t[None]).sum(1), rtol=1e-8, atol=1e-8)


def test_mixture_is_a_contract_denoiser():
    m = ring()
    x, sig = _points(m, 2)
    pos = sig > 0
    counted = CountingDenoiser(m, n_samples=int(pos.sum()))
    s = score_from_denoiser(counted)(x[pos], sig[pos])
    assert counted.nfe == 1.0
    assert_close(s, m.score(x[pos], sig[pos]), rtol=1e-7, atol=1e-9)
    assert counted.log_prob(x, sig).shape == (x.shape[0],)  # attributes forwarded


def test_float_sigma_and_image_shaped_input():
    m = lowrank(d=16, n_components=3, rank=2)
    x = m.sample(6, generator=torch.Generator().manual_seed(0))
    assert_close(m.log_prob(x, 0.7), m.log_prob(x, torch.full((6,), 0.7, dtype=F64)), **TIGHT)
    assert_close(m.log_prob(x, torch.tensor(0.7, dtype=F64)), m.log_prob(x, 0.7), **TIGHT)
    img = x.reshape(6, 1, 4, 4).float()  # contract shape [B, ...], float32 input is cast
    out = m.denoise(img, torch.full((6,), 0.7, dtype=F64))
    assert out.shape == (6, 1, 4, 4) and out.dtype == F64
    assert_close(out.reshape(6, 16), m.denoise(img.reshape(6, 16), 0.7), **TIGHT)


# --------------------------------------------------------------------------- low rank == full


@pytest.mark.parametrize("iso", [True, False])
def test_lowrank_path_equals_full_covariance_path(iso):
    lr, full = _lowrank_pair(iso)
    assert lr.is_low_rank and not full.is_low_rank and lr.rank == 2
    x, sig = _points(full, 3)
    assert_close(lr.component_log_prob(x, sig), full.component_log_prob(x, sig), **TIGHT)
    assert_close(lr.log_prob(x, sig), full.log_prob(x, sig), **TIGHT)
    assert_close(lr.responsibilities(x, sig), full.responsibilities(x, sig), **TIGHT)
    assert_close(lr.score(x, sig), full.score(x, sig), rtol=1e-9, atol=1e-8)
    assert_close(lr.denoise(x, sig), full.denoise(x, sig), **TIGHT)
    levels = torch.logspace(-2, 2, 17, dtype=F64)
    assert_close(lr.sigma_log_posterior(x, levels), full.sigma_log_posterior(x, levels), **TIGHT)
    labels = torch.arange(x.shape[0]) % 3
    assert_close(lr.mahalanobis_sq(x, labels), full.mahalanobis_sq(x, labels), **TIGHT)
    assert torch.equal(lr.assign(x), full.assign(x))
    assert_close(lr.covariances, full.covariances, **TIGHT)
    assert math.isclose(lr.default_sigma_max(), full.default_sigma_max(), rel_tol=1e-10)
    assert math.isclose(lr.default_sigma_min(), full.default_sigma_min(), rel_tol=1e-10)


def test_chunking_does_not_change_results():
    lr, full = _lowrank_pair(False)
    x, sig = _points(full, 3)
    for m in (lr, full):
        ref = (m.log_prob(x, sig), m.score(x, sig), m.denoise(x, sig))
        m.max_chunk_elements = 50  # forces many small chunks
        assert_close(m.log_prob(x, sig), ref[0], **TIGHT)
        assert_close(m.score(x, sig), ref[1], **TIGHT)
        assert_close(m.denoise(x, sig), ref[2], **TIGHT)


# --------------------------------------------------------------------------- densities and sigma posterior


@pytest.mark.parametrize("sigma,half,step", [(0.0, 6.0, 0.03), (1.0, 11.0, 0.06)])
def test_ring_density_integrates_to_one(sigma, half, step):
    m = ring()
    t = torch.arange(-half, half + step / 2, step, dtype=F64)
    gx, gy = torch.meshgrid(t, t, indexing="ij")
    pts = torch.stack([gx.flatten(), gy.flatten()], 1)
    mass = torch.exp(m.log_prob(pts, sigma)).sum().item() * step**2
    assert abs(mass - 1.0) < 1e-6, mass  # Riemann sum of a smooth density, tails beyond 6.8 std


def test_sigma_posterior_normalised_and_matches_brute_force():
    m = _full_mixture()
    levels = torch.logspace(-2, 1.5, 25, dtype=F64).flip(0)
    x, _ = _points(m, 2)
    lp = m.sigma_log_posterior(x, levels)
    assert lp.shape == (x.shape[0], levels.shape[0])
    assert_close(lp.exp().sum(1), torch.ones(x.shape[0], dtype=F64), **TIGHT)
    brute = torch.stack([m.log_prob(x, float(s)) for s in levels], dim=1)  # uniform prior
    assert_close(lp, brute - torch.logsumexp(brute, 1, keepdim=True), **TIGHT)
    assert_close(m.sigma_log_posterior(x, levels.tolist()), lp, **TIGHT)  # plain list: read as float64
    prior = torch.linspace(-3.0, 1.0, levels.shape[0], dtype=F64)  # unnormalised log prior
    lp2 = m.sigma_log_posterior(x, levels, log_prior=prior)
    b2 = brute + prior[None]
    assert_close(lp2, b2 - torch.logsumexp(b2, 1, keepdim=True), **TIGHT)
    m.max_chunk_elements = 64  # several levels per block, and blocks of levels
    assert_close(m.sigma_log_posterior(x, levels), lp, **TIGHT)


def test_sigma_posterior_concentrates_on_true_level():
    m = lowrank(d=64)
    g = torch.Generator().manual_seed(5)
    levels = torch.logspace(-2, 1.5, 60, dtype=F64).flip(0)
    idx = torch.tensor([5, 20, 35, 50])
    x = m.sample(4, generator=g) + levels[idx][:, None] * torch.randn(4, 64, generator=g, dtype=F64)
    post = m.sigma_log_posterior(x, levels).exp()
    assert ((post.argmax(1) - idx).abs() <= 3).all(), post.argmax(1)


def test_responsibilities_and_assign():
    m = ring()
    x, labels = m.sample_with_labels(2000, generator=torch.Generator().manual_seed(2))
    r = m.responsibilities(x, 0.0)
    assert_close(r.sum(1), torch.ones(2000, dtype=F64), **TIGHT)
    assert (m.assign(x) == labels).float().mean() > 0.999  # modes 3.06 apart, std 0.25
    # Mahalanobis radius of a component's own samples is chi-square(d = 2): mean 2
    assert abs(m.mahalanobis_sq(x, labels).mean().item() - 2.0) < 0.15


def test_log_prob_stable_in_784d():
    m = lowrank(d=784)
    g = torch.Generator().manual_seed(0)
    x = m.sample(32, generator=g)
    lp0 = m.log_prob(x, 0.0)
    assert torch.isfinite(lp0).all()
    assert lp0.min() > 1000  # exp() of this overflows even float64: the logsumexp is what makes it work
    for s in (1e-3, 0.1, 1.0, 50.0):
        xs = x + s * torch.randn(x.shape, generator=g, dtype=F64)
        assert torch.isfinite(m.log_prob(xs, s)).all()
        assert torch.isfinite(m.score(xs, s)).all() and torch.isfinite(m.denoise(xs, s)).all()
        assert_close(m.responsibilities(xs, s).sum(1), torch.ones(32, dtype=F64), **TIGHT)
    m32 = m.to(dtype=torch.float32)
    lp32 = m32.log_prob(x, 0.0)
    assert lp32.dtype == torch.float32 and torch.isfinite(lp32).all()
    assert_close(lp32.double(), lp0, rtol=1e-4, atol=0.5)


# --------------------------------------------------------------------------- sampling


def test_sample_moments_match():
    m = ring()
    x, labels = m.sample_with_labels(100_000, generator=torch.Generator().manual_seed(0))
    mean, cov = m.moments()
    # per-coordinate std ~ 2.9: standard error of the mean ~ 0.01, of covariance entries ~ 0.04
    assert_close(x.mean(0), mean, rtol=0, atol=0.05)
    assert_close(torch.cov(x.T), cov, rtol=0, atol=0.2)
    freq = torch.bincount(labels, minlength=8).double() / labels.shape[0]
    assert_close(freq, m.weights, rtol=0, atol=0.006)

    lr = lowrank(d=16, n_components=4, rank=2)
    x = lr.sample(50_000, generator=torch.Generator().manual_seed(1))
    mean, cov = lr.moments()
    assert_close(x.mean(0), mean, rtol=0, atol=0.03)
    assert_close(torch.cov(x.T), cov, rtol=0, atol=0.05)

    lr, full = _lowrank_pair(False)
    xa = lr.sample(50_000, generator=torch.Generator().manual_seed(2))
    xb = full.sample(50_000, generator=torch.Generator().manual_seed(3))
    assert_close(torch.cov(xa.T), torch.cov(xb.T), rtol=0, atol=0.1)


def test_same_seed_same_samples():
    for m in (ring(), lowrank(d=8, n_components=3, rank=2)):
        a, la = m.sample_with_labels(500, generator=torch.Generator().manual_seed(7))
        b, lb = m.sample_with_labels(500, generator=torch.Generator().manual_seed(7))
        c = m.sample(500, generator=torch.Generator().manual_seed(8))
        assert torch.equal(a, b) and torch.equal(la, lb)
        assert torch.equal(m.sample(500, generator=torch.Generator().manual_seed(7)), a)
        assert not torch.equal(a, c)
        assert la.dtype == torch.long and a.shape == (500, m.d)
    assert ring().sample(0).shape == (0, 2)


# --------------------------------------------------------------------------- presets and defaults


def test_presets():
    r = ring()
    assert (r.K, r.d) == (8, 2)
    assert_close(r.weights, torch.arange(1, 9, dtype=F64) / 36, **TIGHT)
    assert_close(r.means.norm(dim=1), torch.full((8,), 4.0, dtype=F64), **TIGHT)
    # ring: 20 x the RMS norm of the data dominates Song's max-distance rule (8 + 6 * 0.25)
    mean, cov = r.moments(0.0)
    assert r.default_sigma_max() == pytest.approx(20 * math.sqrt(mean.square().sum() + cov.trace()))
    assert r.default_sigma_max() > 8.0 + 6 * 0.25
    assert r.default_sigma_min() == pytest.approx(0.01)
    gr = grid()
    assert (gr.K, gr.d) == (25, 2)
    assert_close(gr.means.mean(0), torch.zeros(2, dtype=F64), rtol=0, atol=1e-12)
    assert gr.means.abs().max().item() == pytest.approx(4.0)
    assert gr.default_sigma_min() == pytest.approx(0.01)
    lr = lowrank()
    assert (lr.K, lr.d, lr.rank) == (10, 64, 4) and lr.is_low_rank
    assert torch.equal(lowrank().means, lr.means)  # deterministic
    assert not torch.equal(lowrank(seed=1).means, lr.means)
    assert lr.default_sigma_min() == pytest.approx(0.1 * math.sqrt(1e-3))
    assert lr.default_sigma_max() > torch.cdist(lr.means, lr.means).max().item()
    assert preset("grid", side=3).K == 9
    with pytest.raises(ValueError, match="unknown preset"):
        preset("moons")


def test_load_target(tmp_path):
    assert load_target("ring").K == 8
    assert load_target("lowrank", d=32).d == 32
    m = _full_mixture()
    assert load_target(m) is m
    p = tmp_path / "t.json"
    m.save(p)
    assert torch.equal(load_target(str(p)).means, m.means)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_target(str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="unknown target"):
        load_target("swissroll")


def test_to_device_dtype():
    m = _lowrank_pair(False)[0]
    m32 = m.to(dtype=torch.float32)
    assert m32.dtype == torch.float32 and m32.weights.dtype == torch.float32
    x, sig = _points(m, 2)
    assert m32.log_prob(x, sig).dtype == torch.float32
    assert_close(m32.log_prob(x, sig).double(), m.log_prob(x, sig), rtol=1e-4, atol=1e-3)
    back = m32.to(dtype=F64)
    assert torch.equal(back.means, m.means)  # parameters kept in float64
    assert m.to(device="cpu").device == torch.device("cpu")


# --------------------------------------------------------------------------- serialisation


@pytest.mark.parametrize("make", [ring, lambda: _lowrank_pair(False)[0], lambda: lowrank(d=32)])
def test_json_round_trip_exact(make, tmp_path):
    m = make()
    p = tmp_path / "m.json"
    m.save(p)
    data = json.loads(p.read_text())
    if m.is_low_rank:
        assert set(data) - {"name"} == {"weights", "means", "factors", "diagonal"}
        assert len(data["factors"][0][0]) == m.rank
    else:
        assert set(data) - {"name"} == {"weights", "means", "covariances"}
    m2 = GaussianMixture.load(p)
    assert m2.to_dict() == m.to_dict()
    for a in ("weights", "means", "covariances"):
        assert torch.equal(getattr(m2, a), getattr(m, a))
    m3 = GaussianMixture.from_dict(m.to_dict())
    x, sig = _points(m, 1)
    assert torch.equal(m3.log_prob(x, sig), m.log_prob(x, sig))
    assert m2.name == m.name


def _good() -> dict:
    return {"weights": [1.0, 2.0], "means": [[0.0, 0.0], [1.0, 1.0]],
            "covariances": [[[1.0, 0.0], [0.0, 1.0]], [[2.0, 0.5], [0.5, 1.0]]]}


def _lr_good() -> dict:
    return {"weights": [1.0, 2.0], "means": [[0.0, 0.0], [1.0, 1.0]],
            "factors": [[[1.0], [0.0]], [[0.5], [0.5]]], "diagonal": [[0.1, 0.1], [0.2, 0.3]]}


def _with(base, **changes):
    d = base()
    for k, v in changes.items():
        if v is ...:
            del d[k]
        else:
            d[k] = v
    return d


MALFORMED = [
    (_with(_good, weights=...), "weights"),
    (_with(_good, means=...), "means"),
    (_with(_good, covariances=...), "covariances"),
    (_with(_lr_good, diagonal=...), "diagonal"),
    (_with(_lr_good, factors=...), "factors"),
    (_with(_good, factors=[[[1.0], [0.0]], [[0.5], [0.5]]]), "covariances"),
    (_with(_good, covariance=[[1.0]]), "covariance"),
    (_with(_good, weights=[1.0, "a"]), r"weights\[1\]"),
    (_with(_good, weights=[1.0, True]), r"weights\[1\]"),
    (_with(_good, weights=[1.0, None]), r"weights\[1\]"),
    (_with(_good, weights=3.0), "weights"),
    (_with(_good, weights=[1.0, -1.0]), "weights"),
    (_with(_good, weights=[1.0, 2.0, 3.0]), "means"),
    (_with(_good, weights=[[1.0, 2.0]]), "weights"),
    (_with(_good, means=[[0.0, 0.0], [1.0]]), r"means\[1\]"),
    (_with(_good, means=[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]), "covariances"),
    (_with(_good, means=[0.0, 1.0]), "means"),
    (_with(_good, covariances=[[[1.0, 0.0], [0.0, 1.0]]]), "covariances"),
    (_with(_good, covariances=[[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0]]]), r"covariances\[1\]\[1\]"),
    (_with(_good, covariances=[[[1.0, 0.3], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]]), "symmetric"),
    (_with(_good, covariances=[[[1.0, 0.0], [0.0, -1.0]], [[1.0, 0.0], [0.0, 1.0]]]), "positive semi-definite"),
    (_with(_good, name=5), "name"),
    (_with(_lr_good, diagonal=[[0.1, 0.0], [0.2, 0.3]]), "diagonal"),
    (_with(_lr_good, diagonal=[[0.1, 0.1]]), "diagonal"),
    (_with(_lr_good, factors=[[1.0, 0.0], [0.5, 0.5]]), "factors"),
    ([1, 2, 3], "JSON object"),
]


@pytest.mark.parametrize("data,field", MALFORMED)
def test_malformed_dict_and_file_name_the_field(data, field, tmp_path):
    with pytest.raises(ValueError, match=field):
        GaussianMixture.from_dict(data)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=field):
        GaussianMixture.load(p)


def test_bad_files(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text('{"weights": [1.0], ')
    with pytest.raises(ValueError, match="not valid JSON"):
        GaussianMixture.load(p)
    p.write_text('{"weights": [NaN], "means": [[0.0]], "covariances": [[[1.0]]]}')
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture.load(p)
    with pytest.raises(FileNotFoundError):
        GaussianMixture.load(tmp_path / "nope.json")


# --------------------------------------------------------------------------- constructor and call validation


EYE = torch.eye(2, dtype=F64).expand(3, 2, 2)
MU = torch.zeros(3, 2, dtype=F64)


@pytest.mark.parametrize(
    "args,kw,match",
    [
        ((torch.ones(3, 1), MU, EYE), {}, "weights must have shape"),
        ((torch.tensor([1.0, 0.0, 1.0]), MU, EYE), {}, "weights must be > 0"),
        ((torch.tensor([1.0, math.nan, 1.0]), MU, EYE), {}, "weights must be finite"),
        ((torch.tensor([1.0, math.inf, 1.0]), MU, EYE), {}, "weights must be finite"),
        ((torch.ones(3), torch.zeros(4, 2), EYE), {}, r"means must have shape \[K, d\] = \[3, 2\]"),
        ((torch.ones(3), torch.zeros(3), EYE), {}, "means must have shape"),
        ((torch.ones(3), MU, torch.eye(3).expand(3, 3, 3)), {}, r"covariances must have shape \[K, d, d\] = \[3, 2"),
        ((torch.ones(3), MU, EYE * math.nan), {}, "covariances must be finite"),
        ((torch.ones(3), MU, torch.tensor([[1.0, 2.0], [0.0, 1.0]]).expand(3, 2, 2)), {}, "not symmetric"),
        ((torch.ones(3), MU, torch.tensor([[1.0, 2.0], [2.0, 1.0]]).expand(3, 2, 2)), {}, "positive semi-definite"),
        ((torch.ones(3), MU), {}, "give covariances"),
        ((torch.ones(3), MU, EYE), {"factors": torch.zeros(3, 2, 1), "diagonal": torch.ones(3, 2)}, "not both"),
        ((torch.ones(3), MU), {"factors": torch.zeros(3, 2, 1)}, "diagonal is missing"),
        ((torch.ones(3), MU), {"diagonal": torch.ones(3, 2)}, "factors is missing"),
        ((torch.ones(3), MU), {"factors": torch.zeros(3, 5, 1), "diagonal": torch.ones(3, 2)}, "factors must have"),
        ((torch.ones(3), MU), {"factors": torch.zeros(3, 2, 1), "diagonal": torch.ones(3, 3)}, "diagonal must have"),
        ((torch.ones(3), MU), {"factors": torch.zeros(3, 2, 1), "diagonal": torch.zeros(3, 2)}, "diagonal must be > 0"),
        ((["a", "b", "c"], MU, EYE), {}, "weights"),
        ((torch.ones(3), MU, EYE), {"dtype": torch.int64}, "dtype"),
    ],
)
def test_constructor_errors(args, kw, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(*args, **kw)


def test_call_errors_and_singular_covariance():
    m = ring()
    x = torch.zeros(4, 2, dtype=F64)
    with pytest.raises(ValueError, match=r"x must have shape \[B, d\] = \[B, 2\]"):
        m.log_prob(torch.zeros(4, 3), 1.0)
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        m.score(x, -1.0)
    with pytest.raises(ValueError, match=r"sigma must have shape \[B\] = \[4\]"):
        m.denoise(x, torch.ones(3))
    with pytest.raises(ValueError, match="grid"):
        m.sigma_log_posterior(x, torch.ones(2, 2))
    with pytest.raises(ValueError, match="log_prior"):
        m.sigma_log_posterior(x, torch.ones(3), log_prior=torch.zeros(2))
    with pytest.raises(ValueError, match="labels"):
        m.mahalanobis_sq(x, torch.tensor([0, 1, 2, 8]))
    with pytest.raises(ValueError, match="n must be"):
        m.sample(-1)
    # a degenerate (line) component: fine for sigma > 0, refused at sigma = 0, denoise(sigma=0) = x
    s = GaussianMixture([1.0, 1.0], [[0.0, 0.0], [2.0, 0.0]], [[[1.0, 0.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]]])
    assert torch.isfinite(s.log_prob(x, 0.5)).all()
    with pytest.raises(ValueError, match="singular"):
        s.log_prob(x, 0.0)
    assert torch.equal(s.denoise(x, 0.0), x)
    assert s.default_sigma_min() == pytest.approx(0.01)
    assert s.sample(10).shape == (10, 2)
