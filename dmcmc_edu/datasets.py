"""Data shipped with the toolkit: the MNIST idx files (in the repository) and the trained weights (in the package).

:func:`load_mnist` reads the four original idx files (LeCun et al.), shipped
gzipped in ``data/MNIST/raw/`` (about 11.6 MB), gunzipping them next to
themselves on first use (torchvision's ``MNIST`` class reads the uncompressed
files).  Images come as float32 ``[N, 1, 28, 28]`` in ``[0, 1]``, the data
range of the paper's variance-exploding (VE) setting.

:func:`default_weights_dir` is the one place that knows where the shipped
networks live: ``dmcmc_edu/weights/``, package data, so they come with a
``pip install`` from a wheel as well as with a clone.  The MNIST images are
not package data (11.6 MB); they stay in the repository's ``data/MNIST/raw/``.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import torch
from torchvision.datasets import MNIST

__all__ = ["REPO_ROOT", "PIXEL_MEAN", "PIXEL_STD", "RAW_FILES", "WEIGHT_FILES", "load_mnist", "max_pairwise_distance",
           "default_weights_dir"]

REPO_ROOT = Path(__file__).resolve().parents[1]
"""The folder above the package: the repository for a clone or an editable install (it holds ``data/MNIST``)."""

PIXEL_MEAN = 0.1307
"""Mean pixel value of the MNIST training images in [0, 1] (used to centre the data inside the score model)."""

PIXEL_STD = 0.3081
"""Standard deviation of the MNIST training pixels in [0, 1] (the score model's sigma_data)."""

RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
"""The idx files torchvision's MNIST needs (it checks all four, whichever split is read); shipped as ``<name>.gz``."""


def _ensure_raw(root: Path) -> None:
    """Gunzip ``root/MNIST/raw/<name>.gz`` next to itself where ``<name>`` is missing; clear error if neither exists."""
    raw = root / "MNIST" / "raw"
    missing = []
    for name in RAW_FILES:
        target, packed = raw / name, raw / (name + ".gz")
        if target.exists():
            continue
        if packed.exists():
            tmp = raw / f".{name}.{os.getpid()}.tmp"
            with gzip.open(packed, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(tmp, target)  # atomic: a concurrent reader never sees half a file
        else:
            missing.append(name)
    if missing:
        raise FileNotFoundError(
            f"MNIST files missing in {raw}: {', '.join(m + '[.gz]' for m in missing)}. "
            "Get them from a clone of the dmcmc_edu repository (it ships data/MNIST/raw/*.gz; pass "
            "root='<clone>/data'), or, with internet access, let torchvision download them: "
            "load_mnist(root, download=True)."
        )


def load_mnist(root: str | os.PathLike = "data", train: bool = True, *, download: bool = False,
               return_labels: bool = False):
    """MNIST images as float32 ``[N, 1, 28, 28]`` in ``[0, 1]`` (and labels ``[N]`` int64 if asked).

    Parameters
    ----------
    root : path
        The folder that holds ``MNIST/raw/`` (torchvision's layout); by default
        ``data`` relative to the working directory (the repository's ``data/``
        when run from a clone's root).
    train : bool
        The 60,000 training images, or the 10,000 test images.
    download : bool
        Let torchvision download the files into ``root`` (needs internet).
        Without it, the gzipped files shipped in ``root/MNIST/raw`` are
        unpacked next to themselves if needed, and nothing is fetched.

    Raises
    ------
    FileNotFoundError
        Naming the missing files and the two ways to get them.
    """
    root = Path(root)
    if not download:
        _ensure_raw(root)
    ds = MNIST(str(root), train=train, download=download)
    images = ds.data.unsqueeze(1).to(torch.float32) / 255.0
    if return_labels:
        return images, ds.targets.clone().long()
    return images


@torch.no_grad()
def max_pairwise_distance(images: torch.Tensor, batch: int = 2000) -> dict:
    """Largest and median Euclidean distance between the rows of ``images`` ([N, ...]); exact over all pairs.

    Song & Ermon (2020), technique 1: choose sigma_max about the largest
    distance.  Cost is N^2 d; 10,000 MNIST images take a few seconds.
    Returns ``{"max", "median", "n"}`` (the median over a 2,000-row block).
    """
    x = images.reshape(images.shape[0], -1).to(torch.float64)
    sq = (x * x).sum(1)
    best = 0.0
    med = None
    for s in range(0, x.shape[0], batch):
        d2 = (sq[s:s + batch, None] + sq[None, :] - 2 * x[s:s + batch] @ x.T).clamp(min=0)
        best = max(best, float(d2.max().sqrt()))
        if med is None:
            off = ~torch.eye(d2.shape[0], d2.shape[1], dtype=torch.bool)
            med = float(d2[off].sqrt().median())
    return {"max": best, "median": med, "n": int(x.shape[0])}


WEIGHT_FILES = {
    "score": "mnist_score_unet.pt",  # + mnist_score_unet.json (config, training log)
    "classifier": "mnist_noise_classifier.pt",  # + .json (training, test calibration)
    "features": "mnist_feature_net.pt",  # + .json (test accuracy); statistics in mnist_fid_ref_test.pt
}
"""The shipped networks in ``dmcmc_edu/weights/`` (written by bench/train_mnist_gpu.sh or the train-* commands)."""


def default_weights_dir() -> Path:
    """The shipped weights: the package's ``weights/`` folder (package data, so also inside an installed wheel)."""
    return Path(__file__).resolve().parent / "weights"
