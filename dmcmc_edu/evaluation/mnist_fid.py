"""MNIST-FID: a Fréchet distance in the feature space of a small MNIST digit classifier trained here.

**This is not the Inception FID** of the literature (pytorch-fid, 2048-d
Inception-v3 pool features of 299 px RGB images).  It uses the 128-d
penultimate layer of :class:`MNISTFeatureNet`, a two-convolution digit
classifier trained in this toolkit, and the statistics of the 10,000 MNIST
test images as reference.  Its values are on their own scale: they are
comparable only between runs of this toolkit that use the same feature
network and reference file, and never with CIFAR10 / CelebA-HQ FIDs (the
paper's numbers) or with MNIST FIDs of other papers.

The Fréchet distance between ``N(mu1, S1)`` and ``N(mu2, S2)``::

    d^2 = ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1^{1/2} S2 S1^{1/2})^{1/2})

(the last trace equals ``tr((S1 S2)^{1/2})``).  :func:`frechet_distance`
evaluates it with symmetric eigendecompositions in float64, which stay real
and stable for singular (positive semi-definite) covariances, where
``scipy.linalg.sqrtm(S1 @ S2)`` of the usual implementation can return
complex values.

Estimated from ``n`` samples the FID is biased upwards (roughly by a term of
order ``d / n``); compare values only at equal ``n``, and compare with the
FID of ``n`` real training images (:func:`real_data_fid`), the floor at that
sample size.

Broken inputs get no FID: images, feature statistics or a distance that are
NaN or inf (or a distance negative by more than round-off) raise a
``ValueError`` (:mod:`dmcmc_edu.evaluation.checks`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn
from tqdm import tqdm

from dmcmc_edu.datasets import default_weights_dir, load_mnist
from dmcmc_edu.evaluation.checks import checked_frechet, require_finite, require_finite_stats
from dmcmc_edu.models.files import read_torch_file
from dmcmc_edu.runs import atomic_write

__all__ = ["frechet_distance", "gaussian_stats", "MNISTFeatureNet", "train_feature_net", "extract_features",
           "reference_stats", "save_feature_net", "load_feature_net", "load_reference", "mnist_fid",
           "real_data_fid", "fid_interval", "FEATURE_NET_NAME", "REFERENCE_NAME"]

FEATURE_NET_NAME = "mnist_feature_net.pt"
REFERENCE_NAME = "mnist_fid_ref_test.pt"


# ----------------------------------------------------------------------------- the distance


def _sqrt_psd(a: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (negative round-off eigenvalues -> 0)."""
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet (2-Wasserstein) distance squared between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

    ``||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1^{1/2} S2 S1^{1/2})^{1/2})``, in
    float64 with symmetric eigendecompositions (see the module docstring).
    Accepts numpy arrays or tensors: ``mu`` of shape ``[d]``, ``sigma`` ``[d, d]``.
    Raises ``ValueError`` for statistics holding NaN or inf and for a result
    that is not finite or is negative beyond round-off.
    """
    mu1, mu2 = (np.asarray(torch.as_tensor(m).double().cpu(), dtype=np.float64) for m in (mu1, mu2))
    s1, s2 = (np.asarray(torch.as_tensor(s).double().cpu(), dtype=np.float64) for s in (sigma1, sigma2))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"shapes must be mu [d], sigma [d, d]; got {mu1.shape}, {s1.shape}, {mu2.shape}, {s2.shape}")
    require_finite_stats(mu1, s1, "frechet_distance (first set)")
    require_finite_stats(mu2, s2, "frechet_distance (second set)")
    r1 = _sqrt_psd(s1)
    m = r1 @ s2 @ r1
    eig = np.linalg.eigvalsh((m + m.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(eig, 0, None)).sum())
    diff = mu1 - mu2
    terms = diff @ diff + np.trace(s1) + np.trace(s2)
    return checked_frechet(terms - 2.0 * tr_covmean, terms, "frechet_distance")


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[d]`` and (unbiased, ``n - 1``) covariance ``[d, d]`` of features ``[n, d]``, float64."""
    f = np.asarray(torch.as_tensor(features).double().cpu(), dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must have shape [n >= 2, d], got {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


# ----------------------------------------------------------------------------- the feature network


class MNISTFeatureNet(nn.Module):
    """A small MNIST digit classifier; its 128-d penultimate layer (after ReLU) gives the FID features.

    conv3x3(1 -> 32) + ReLU + maxpool 2, conv3x3(32 -> 64) + ReLU + maxpool 2,
    flatten 64 x 7 x 7, Linear(3136, 128) + ReLU (the features), dropout,
    Linear(128, 10).  Inputs are images in [0, 1], standardised inside.
    """

    def __init__(self, feature_dim: int = 128, dropout: float = 0.25):
        super().__init__()
        self.arch_kwargs = {"feature_dim": feature_dim, "dropout": dropout}
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc = nn.Linear(64 * 7 * 7, feature_dim)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(feature_dim, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features ``[B, feature_dim]`` of images ``[B, 1, 28, 28]`` in [0, 1]."""
        x = (x.to(self.conv1.weight.dtype) - 0.1307) / 0.3081
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        return F.relu(self.fc(h.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``[B, 10]``."""
        return self.head(self.drop(self.features(x)))


def train_feature_net(images: torch.Tensor, labels: torch.Tensor, *, epochs: float = 2.0, batch_size: int = 128,
                      lr: float = 1e-3, seed: int = 0, device="cpu", max_minutes: float | None = None,
                      progress: bool = True) -> tuple[MNISTFeatureNet, dict]:
    """Train :class:`MNISTFeatureNet` with cross-entropy (Adam, cosine rate over the run); stops at ``max_minutes``."""
    t0 = time.time()
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**62, (), generator=g)))
        net = MNISTFeatureNet()
    net.to(device).train()
    N = images.shape[0]
    steps = int(epochs * N / batch_size)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    images, labels = images.to(device), labels.to(device)
    perm, pos, losses = None, N, []
    stopped_by = "steps"
    done = 0
    for step in tqdm(range(steps), desc="feature net", disable=not progress):
        if max_minutes is not None and time.time() - t0 > 60.0 * max_minutes:
            stopped_by = "budget"
            break
        if pos + batch_size > N:
            perm, pos = torch.randperm(N, generator=g).to(device), 0
        idx = perm[pos:pos + batch_size]
        pos += batch_size
        with torch.random.fork_rng(devices=[]):  # dropout masks from the run's seed, not the global RNG
            torch.manual_seed(seed * 1_000_003 + step)
            loss = F.cross_entropy(net(images[idx]), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.detach())
        done += 1
    net.eval()
    info = {"steps_done": done, "steps_target": steps, "epochs": epochs, "batch_size": batch_size, "lr": lr,
            "seed": seed, "stopped_by": stopped_by, "seconds": round(time.time() - t0, 2),
            "loss_last": float(torch.stack(losses[-100:]).mean()) if losses else None, "device": str(device)}
    return net, info


@torch.no_grad()
def extract_features(net: MNISTFeatureNet, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Features ``[n, d]`` (float64, CPU) of images ``[n, 1, 28, 28]`` in [0, 1] (clamped to [0, 1] first)."""
    dev = next(net.parameters()).device
    was = net.training
    net.eval()
    out = [net.features(images[s:s + batch_size].to(dev).clamp(0, 1)).double().cpu()
           for s in range(0, images.shape[0], batch_size)]
    net.train(was)
    return torch.cat(out)


@torch.no_grad()
def accuracy(net: MNISTFeatureNet, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy of the feature network's classifier head."""
    dev = next(net.parameters()).device
    net.eval()
    correct = sum(int((net(images[s:s + batch_size].to(dev)).argmax(1).cpu() == labels[s:s + batch_size]).sum())
                  for s in range(0, images.shape[0], batch_size))
    return correct / images.shape[0]


def reference_stats(net: MNISTFeatureNet, images: torch.Tensor) -> dict:
    """``{"mu", "sigma", "n"}`` of the network's features on ``images`` (the MNIST test set for the shipped file)."""
    mu, sigma = gaussian_stats(extract_features(net, images))
    return {"mu": torch.from_numpy(mu), "sigma": torch.from_numpy(sigma), "n": int(images.shape[0])}


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save_feature_net(net: MNISTFeatureNet, out_dir, *, info: dict, ref: dict) -> dict:
    """Write ``mnist_feature_net.pt`` (+ ``.json``: config, accuracy, training) and ``mnist_fid_ref_test.pt``.

    The reference file records the SHA-256 of the weights file, so a feature
    network and statistics that do not belong together are refused by :func:`load_reference`.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    w = out / FEATURE_NET_NAME
    atomic_write(w, lambda tmp: torch.save({k: v.detach().cpu().clone() for k, v in net.state_dict().items()}, tmp))
    meta = {"format": "dmcmc_edu.mnist_feature_net/1", "arch_kwargs": net.arch_kwargs, **info}
    atomic_write(w.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2)))
    payload = {"mu": ref["mu"], "sigma": ref["sigma"], "n": ref["n"], "feature_net_sha256": _sha256(w),
               "source": "MNIST test set (10,000 images, t10k-images-idx3-ubyte)"}
    atomic_write(out / REFERENCE_NAME, lambda tmp: torch.save(payload, tmp))
    return meta


def load_feature_net(path: str | os.PathLike | None = None, map_location="cpu") -> MNISTFeatureNet:
    """Load the feature network (default: the shipped ``dmcmc_edu/weights/mnist_feature_net.pt``).

    ``.info`` of the returned network holds its JSON record.
    """
    path = Path(path) if path is not None else default_weights_dir() / FEATURE_NET_NAME
    meta_path = path.with_suffix(".json")
    if not path.exists() or not meta_path.exists():
        raise FileNotFoundError(f"need {path} and {meta_path}; train them with: python -m dmcmc_edu "
                                "train-mnist-features --out DIR")
    meta = json.loads(meta_path.read_text())
    net = MNISTFeatureNet(**meta["arch_kwargs"])
    net.load_state_dict(read_torch_file(path, map_location=map_location))
    net.info = meta
    return net.eval()


def load_reference(path: str | os.PathLike | None = None, feature_net_path: str | os.PathLike | None = None) -> dict:
    """Load reference statistics and check they were computed with the given (default: shipped) feature network."""
    path = Path(path) if path is not None else default_weights_dir() / REFERENCE_NAME
    net_path = Path(feature_net_path) if feature_net_path is not None else path.parent / FEATURE_NET_NAME
    ref = read_torch_file(path)
    if not isinstance(ref, dict) or not {"mu", "sigma"} <= set(ref):
        raise ValueError(f"{path}: not MNIST-FID reference statistics (expected a dict with 'mu' and 'sigma'); "
                         "recompute it with train-mnist-features")
    if ref.get("feature_net_sha256") != _sha256(net_path):
        raise ValueError(f"{path} was computed with another feature network than {net_path} (SHA-256 differs); "
                         "recompute it with train-mnist-features")
    return ref


_CACHE: dict = {}


def _default_net_and_ref():
    key = str(default_weights_dir())
    if key not in _CACHE:
        _CACHE[key] = (load_feature_net(), load_reference())
    return _CACHE[key]


def mnist_fid(samples: torch.Tensor, feature_net: MNISTFeatureNet | None = None,
              reference: dict | None = None) -> float:
    """MNIST-FID of ``samples`` (``[n, 1, 28, 28]`` in [0, 1]; clamped) against the MNIST test-set statistics.

    Defaults: the shipped feature network and reference file in
    ``dmcmc_edu/weights``.  Not Inception FID (see the module docstring); biased
    upwards at small ``n`` -- compare at equal ``n`` and against
    :func:`real_data_fid`.
    """
    if feature_net is None or reference is None:
        net0, ref0 = _default_net_and_ref()
        feature_net, reference = feature_net or net0, reference or ref0
    samples = torch.as_tensor(samples)
    if samples.ndim != 4 or tuple(samples.shape[1:]) != (1, 28, 28):
        raise ValueError(f"samples must have shape [n, 1, 28, 28], got {tuple(samples.shape)}")
    require_finite(samples, "mnist_fid", "images")
    mu, sigma = gaussian_stats(extract_features(feature_net, samples.float()))
    return frechet_distance(mu, sigma, reference["mu"], reference["sigma"])


def fid_interval(features, reference: dict, *, groups=None, n_resamples: int = 999, confidence: float = 0.95,
                 seed: int = 0) -> dict:
    """The FID of a feature set ``[n, d]`` with its bootstrap interval over the samples.

    The samples are resampled with replacement (:func:`scipy.stats.bootstrap`, percentile interval) and the FID
    recomputed against the fixed ``reference`` (``{"mu", "sigma"}``) each time.  ``groups`` (one id per row, e.g.
    the chain each DLG output came from) makes it a block bootstrap: whole groups are resampled, because the
    outputs of one chain are correlated and resampling them one by one would understate the spread.

    Returns ``{"fid", "low", "high", "confidence", "n", "n_groups", "n_resamples", "method", "replicates"}``;
    ``replicates`` is the bootstrap distribution (a list of floats), kept so that two sets can be compared later
    (:func:`dmcmc_edu.evaluation.uncertainty.difference_verdict`).  A resampled set repeats rows, which moves its
    FID up like a smaller sample would (``bootstrap_shift``, the median replicate minus ``fid``); ``low`` and
    ``high`` are the percentile interval moved back by that shift, i.e. the bootstrap's spread around the
    measured value.  Compare sets of equal size.
    """
    f = np.asarray(torch.as_tensor(features).double().cpu(), dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"fid_interval: features must have shape [n >= 2, d], got {f.shape}")
    require_finite(torch.from_numpy(f), "fid_interval", "features")
    if not 0 < confidence < 1:
        raise ValueError(f"fid_interval: confidence must lie in (0, 1), got {confidence}")
    g = np.arange(f.shape[0]) if groups is None else np.asarray(torch.as_tensor(groups).cpu()).ravel()
    if g.shape[0] != f.shape[0]:
        raise ValueError(f"fid_interval: {g.shape[0]} group ids for {f.shape[0]} feature rows")
    ids, inverse = np.unique(g, return_inverse=True)
    if ids.size < 2:
        raise ValueError("fid_interval: a bootstrap needs at least two groups (samples or chains)")
    rows = [np.flatnonzero(inverse == k) for k in range(ids.size)]
    mu_r, sigma_r = np.asarray(reference["mu"], dtype=np.float64), np.asarray(reference["sigma"], dtype=np.float64)

    def fid_of(sel):
        pick = f[np.concatenate([rows[int(k)] for k in sel])]
        return frechet_distance(pick.mean(axis=0), np.cov(pick, rowvar=False), mu_r, sigma_r)

    value = fid_of(np.arange(ids.size))
    res = stats.bootstrap((np.arange(ids.size),), fid_of, vectorized=False, n_resamples=n_resamples,
                          confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed))
    reps = np.asarray(res.bootstrap_distribution, dtype=float)
    shift = float(np.median(reps) - value)  # a resampled set repeats rows and scores worse: remove that shift
    low, high = float(res.confidence_interval.low) - shift, float(res.confidence_interval.high) - shift
    return {"fid": float(value), "low": min(low, float(value)), "high": max(high, float(value)),
            "confidence": confidence, "n": int(f.shape[0]), "n_groups": int(ids.size), "n_resamples": n_resamples,
            "bootstrap_shift": shift, "method": "percentile, centred on the estimate"
            + (", whole groups resampled" if groups is not None else ""), "replicates": reps.tolist()}


def real_data_fid(n: int, *, root="data", seed: int = 0, feature_net=None, reference=None) -> float:
    """MNIST-FID of ``n`` random *training* images: the floor of the metric at sample size ``n``."""
    x = load_mnist(root, train=True)
    idx = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
    return mnist_fid(x[idx], feature_net, reference)
