"""Tests of the image rung: experiments.mnist (data), unet (score model), train, fid, cli.mnist, shipped weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dmcmc_edu.core.contract import CountingDenoiser
from dmcmc_edu.core.integrators import sample_from_noise
from dmcmc_edu.datasets import RAW_FILES, load_mnist
from dmcmc_edu.evaluation.mnist_fid import (
    MNISTFeatureNet,
    accuracy,
    frechet_distance,
    gaussian_stats,
    load_reference,
    mnist_fid,
    reference_stats,
    save_feature_net,
)
from dmcmc_edu.experiments.mnist import SIGMA_MAX, SIGMA_MIN, load_shipped_models
from dmcmc_edu.models.unet import ScoreUNet, UNetConfig, load_score_model
from dmcmc_edu.training.losses import score_matching_loss
from dmcmc_edu.training.score import ScoreTrainingConfig, train_score_model

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
TINY = UNetConfig(channels=[8, 16, 16], attention=True, emb_dim=32)  # a fast U-Net for the contract tests


@pytest.fixture(scope="module")
def test_set():
    return load_mnist(DATA, train=False, return_labels=True)


# ----------------------------------------------------------------------------- data


def test_loader_shapes_and_ranges(test_set):
    x, y = test_set
    assert x.shape == (10000, 1, 28, 28) and x.dtype == torch.float32
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert y.shape == (10000,) and y.dtype == torch.int64 and set(y.unique().tolist()) == set(range(10))
    train = load_mnist(DATA, train=True)
    assert train.shape == (60000, 1, 28, 28)
    assert abs(float(train.mean()) - 0.1307) < 1e-3 and abs(float(train.std()) - 0.3081) < 1e-3
    assert 0 < SIGMA_MIN < SIGMA_MAX


def test_shipped_gz_files_unpack_next_to_themselves(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in RAW_FILES:
        shutil.copy(DATA / "MNIST" / "raw" / (name + ".gz"), raw)
    x = load_mnist(tmp_path, train=False)
    assert x.shape == (10000, 1, 28, 28)
    assert all((raw / name).exists() for name in RAW_FILES)


def test_missing_files_give_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_mnist(tmp_path, train=True)
    msg = str(e.value)
    assert "train-images-idx3-ubyte" in msg and "t10k-labels-idx1-ubyte" in msg
    assert "download=True" in msg and "data/" in msg


# ----------------------------------------------------------------------------- the U-Net in the contract


def test_unet_is_a_denoiser_with_per_sample_sigma():
    torch.manual_seed(0)
    model = ScoreUNet(TINY)
    for p in model.conv_out.parameters():  # make F non-zero (it starts at zero by design)
        torch.nn.init.normal_(p, std=0.1)
    x = torch.rand(3, 1, 28, 28, dtype=torch.float64)
    sigma = torch.tensor([0.02, 0.5, 15.0], dtype=torch.float64)
    with torch.no_grad():
        d = model(x, sigma)
        rows = torch.cat([model(x[i:i + 1], sigma[i:i + 1]) for i in range(3)])
    assert d.shape == x.shape and d.dtype == torch.float64
    torch.testing.assert_close(d, rows, rtol=1e-5, atol=1e-6)  # each sample uses its own sigma
    with pytest.raises(ValueError, match="shape"):
        model(x, sigma[:2])
    with pytest.raises(ValueError, match="> 0"):
        model(x, torch.tensor([0.1, 0.0, 1.0], dtype=torch.float64))


def test_unet_preconditioning_at_initialisation():
    model = ScoreUNet(TINY)  # conv_out is zero-initialised: F = 0, so D = m + c_skip (x - m)
    x = torch.rand(2, 1, 28, 28)
    sigma = torch.tensor([0.1, 3.0])
    sd, m = TINY.sigma_data, TINY.data_mean
    with torch.no_grad():
        d = model(x, sigma)
    expect = m + (sd**2 / (sigma**2 + sd**2)).reshape(-1, 1, 1, 1) * (x - m)
    torch.testing.assert_close(d, expect)
    torch.testing.assert_close(model.loss_weight(sigma), 1 / model.precond(sigma)["c_out"] ** 2)


def test_unet_runs_in_an_integrator_with_counted_nfe():
    model = ScoreUNet(TINY).eval()
    counter = CountingDenoiser(model)
    with torch.no_grad():
        x, info = sample_from_noise(counter, (4, 1, 28, 28), integrator="kar1", steps=3, sigma_max=SIGMA_MAX,
                                    sigma_min=SIGMA_MIN, generator=torch.Generator().manual_seed(0))
    assert x.shape == (4, 1, 28, 28) and torch.isfinite(x).all()
    assert info.nfe == 5 and counter.calls == 5


def test_a_few_training_steps_on_one_batch_lower_the_loss(test_set):
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = ScoreUNet(TINY)
    x0 = test_set[0][:16]
    sigma = torch.exp(torch.empty(16).uniform_(np.log(0.05), np.log(5.0), generator=g))
    noise = torch.randn(x0.shape, generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    before = score_matching_loss(model, x0, sigma, noise).item()
    for _ in range(5):
        loss = score_matching_loss(model, x0, sigma, noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = score_matching_loss(model, x0, sigma, noise).item()
    assert after < 0.9 * before, (before, after)


def test_train_score_model_checkpoints_resumes_and_honours_the_budget(tmp_path, test_set):
    data = test_set[0][:256]
    cfg = ScoreTrainingConfig(steps=3, batch_size=4, warmup_steps=2)
    s = train_score_model(tmp_path, data, model_config=TINY, config=cfg, progress=False, log_every=1)
    assert s["steps_done"] == 3 and s["stopped_by"] == "steps"
    first = load_score_model(tmp_path / "score_model.pt")
    assert first.config == TINY and first.info["weights"] == "EMA"
    cfg.steps = 5  # resume and continue
    s = train_score_model(tmp_path, data, model_config=TINY, config=cfg, progress=False, log_every=1)
    assert s["steps_done"] == 5 and s["steps_this_call"] == 2
    log = json.loads((tmp_path / "train_log.json").read_text())["log"]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5]
    cfg.steps = 50
    s = train_score_model(tmp_path, data, model_config=TINY, config=cfg, progress=False, max_minutes=0.0)
    assert s["stopped_by"] == "budget" and s["steps_done"] == 5
    cfg.batch_size = 8  # other settings: refused
    with pytest.raises(ValueError, match="batch_size"):
        train_score_model(tmp_path, data, model_config=TINY, config=cfg, progress=False)


def test_training_is_reproducible(tmp_path, test_set):
    data = test_set[0][:64]
    cfg = ScoreTrainingConfig(steps=2, batch_size=4)
    a = train_score_model(tmp_path / "a", data, model_config=TINY, config=cfg, progress=False)
    b = train_score_model(tmp_path / "b", data, model_config=TINY, config=cfg, progress=False)
    assert a["loss_last"] == b["loss_last"]
    sa = torch.load(tmp_path / "a" / "score_model.pt", weights_only=True)
    sb = torch.load(tmp_path / "b" / "score_model.pt", weights_only=True)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_noise_classifier_training_saves_a_loadable_classifier(tmp_path, test_set):
    from dmcmc_edu.models.classifier import NoiseLevelClassifier
    from dmcmc_edu.training.score import train_mnist_noise_classifier

    clf, info = train_mnist_noise_classifier(test_set[0][:64], sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, n_levels=50,
                                             steps=3, batch_size=8, probe_steps=2, progress=False)
    assert info["steps_done"] == 3 and info["stopped_by"] == "steps"
    clf.save(tmp_path / "c.pt")
    back = NoiseLevelClassifier.load(tmp_path / "c.pt")  # weights_only: the config must be plain data
    assert back.config["training"]["steps_done"] == 3 and back.n_levels == 50


# ----------------------------------------------------------------------------- Fréchet distance


def test_frechet_distance_of_identical_gaussians_is_zero():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20, 20))
    s = a @ a.T / 20
    mu = rng.normal(size=20)
    assert abs(frechet_distance(mu, s, mu, s)) < 1e-9
    # singular covariance: still real; round-off eigenvalues ~1e-16 tr(S) enter through a square root,
    # so the zero is met to ~1e-7 relative to tr(S)
    low_rank = a[:, :5] @ a[:, :5].T
    assert abs(frechet_distance(mu, low_rank, mu, low_rank)) < 1e-6 * np.trace(low_rank)


def test_frechet_distance_closed_form_for_diagonal_covariances():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    a, b = rng.uniform(0.1, 3, size=8), rng.uniform(0.1, 3, size=8)
    expect = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expect, rel=1e-10)
    # rotating both covariances by the same orthogonal matrix changes nothing
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    assert frechet_distance(q @ mu1, q @ np.diag(a) @ q.T, q @ mu2, q @ np.diag(b) @ q.T) == pytest.approx(
        expect, rel=1e-9)


def test_frechet_distance_matches_scipy_sqrtm():
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(10, 10)), rng.normal(size=(10, 10))
    s1, s2 = a @ a.T + 0.1 * np.eye(10), b @ b.T + 0.1 * np.eye(10)
    mu1, mu2 = rng.normal(size=10), rng.normal(size=10)
    ref = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * np.real(sqrtm(s1 @ s2)))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-8)
    mu, cov = gaussian_stats(torch.from_numpy(rng.normal(size=(50, 3))))
    assert mu.shape == (3,) and cov.shape == (3, 3)


def test_reference_statistics_are_tied_to_their_feature_net(tmp_path, test_set):
    torch.manual_seed(0)
    net = MNISTFeatureNet().eval()
    ref = reference_stats(net, test_set[0][:100])
    save_feature_net(net, tmp_path, info={}, ref=ref)
    load_reference(tmp_path / "mnist_fid_ref_test.pt")
    torch.manual_seed(1)
    other = MNISTFeatureNet()
    torch.save(other.state_dict(), tmp_path / "mnist_feature_net.pt")
    with pytest.raises(ValueError, match="another feature network"):
        load_reference(tmp_path / "mnist_fid_ref_test.pt")


# ----------------------------------------------------------------------------- shipped weights


@pytest.fixture(scope="module")
def shipped():
    return load_shipped_models()


def test_shipped_feature_net_reproduces_its_recorded_accuracy(shipped, test_set):
    """Accuracy on a random 3,000-image subset of the test set within 0.015 (about 5 standard errors) of the record."""
    x, y = test_set
    idx = torch.randperm(10000, generator=torch.Generator().manual_seed(0))[:3000]
    acc = accuracy(shipped["feature_net"], x[idx], y[idx])
    recorded = shipped["info"]["features"]["test_accuracy"]
    assert recorded > 0.97
    assert abs(acc - recorded) < 0.015, (acc, recorded)


def test_shipped_noise_classifier_reproduces_its_recorded_calibration(shipped, test_set):
    """The recorded test calibration (2,000 noisy test images, seed 12345) within 0.02."""
    from dmcmc_edu.evaluation.calibration import calibration

    rec = shipped["info"]["classifier"]["test_calibration"]
    clf = shipped["classifier"]
    assert clf.n_levels == 1000 and clf.input_shape == (1, 28, 28)
    torch.testing.assert_close(clf.grid[0].item(), SIGMA_MAX)
    cal = calibration(clf, test_set[0], n=rec["n"], generator=torch.Generator().manual_seed(rec["seed"]))
    assert abs(cal["accuracy_within"] - rec["accuracy_within"]) < 0.02
    assert abs(cal["mean_abs_log_error"] - rec["mean_abs_log_error"]) < 0.02 * max(1.0, rec["mean_abs_log_error"])
    assert cal["mean_abs_log_error"] < 0.5  # far better than guessing (about 2.6 for a uniform guess)


def test_shipped_score_model_denoises(shipped, test_set):
    x0 = test_set[0][:64].double()
    g = torch.Generator().manual_seed(0)
    for s in (0.1, 0.5):
        noisy = x0 + s * torch.randn(x0.shape, generator=g, dtype=torch.float64)
        with torch.no_grad():
            d = shipped["score"](noisy, torch.full((64,), s, dtype=torch.float64))
        assert float(((d - x0) ** 2).mean()) < 0.5 * s**2  # better than the noisy input itself


def test_mnist_fid_separates_real_images_from_noise(shipped, test_set):
    real = mnist_fid(test_set[0][:300])
    noise = mnist_fid(torch.rand(300, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
    assert real < 0.2 * noise
    with pytest.raises(ValueError, match="shape"):
        mnist_fid(torch.rand(10, 28, 28))


# ----------------------------------------------------------------------------- CLI


def test_cli_has_the_mnist_commands():
    from dmcmc_edu.cli import build_parser

    p = build_parser()
    a = p.parse_args(["train-score", "--out", "x", "--steps", "20", "--device", "cpu", "--max-minutes", "1"])
    assert a.dataset == "mnist" and a.steps == 20 and a.max_minutes == 1.0
    assert p.parse_args(["train-mnist-classifier", "--out", "x"]).sigma_max == SIGMA_MAX
    assert p.parse_args(["train-mnist-features", "--out", "x", "--epochs", "1"]).epochs == 1.0
