"""FID as the paper measured it: pytorch-fid's FID Inception on image folders (optional extra ``fid``).

The paper reports FID computed with pytorch-fid (``pytorch_fid``) on 50k
CIFAR10 / 10k CelebA-HQ samples written as JPEG files
(:func:`dmcmc_edu.evaluation.images.save_images`).  This module calls pytorch-fid's own
network, activations and Frechet distance; it adds only

* **offline weights**: pytorch-fid downloads its Inception weights
  (``pt_inception-2015-12-05-6726825d.pth``, about 92 MB) from GitHub through
  ``torch.hub``'s cache the first time.  Without network access that fails;
  :class:`InceptionWeightsUnavailable` then says where to put the file
  (``<torch hub dir>/checkpoints/``) or to pass it explicitly
  (``inception_weights=PATH`` / ``--inception-weights PATH``).  A given file
  is read with ``torch.load(weights_only=True)``.
* reference statistics: the second argument may be a folder or a
  ``.npz`` with ``mu`` and ``sigma`` (:func:`save_fid_stats` writes one);
* no number for broken inputs: statistics holding NaN or inf (a damaged
  ``.npz``, a network that produced NaN features) and a distance that comes
  out NaN, inf or negative beyond round-off raise ``ValueError``, and
  such statistics are never written to a ``.npz``.

``dims`` selects pytorch-fid's feature block: 2048 (pool3, the standard FID),
768, 192 or 64.  Only 2048 gives numbers comparable with the literature; the
small blocks are for tests and quick checks.

:func:`save_random_inception_weights` writes a *random-weight* FID Inception
state dict (pytorch-fid's own architecture) -- for tests and offline demos
only: FID values computed with it mean nothing.
"""

from __future__ import annotations

import contextlib
import urllib.error
from pathlib import Path

import numpy as np
import torch

from dmcmc_edu.evaluation.checks import checked_frechet, require_finite_stats
from dmcmc_edu.evaluation.images import list_images
from dmcmc_edu.models.files import read_torch_file
from dmcmc_edu.runs import atomic_write

__all__ = [
    "FID_EXTRA_HINT",
    "FID_WEIGHTS_FILENAME",
    "InceptionWeightsUnavailable",
    "require_pytorch_fid",
    "default_weights_path",
    "build_fid_inception",
    "fid_statistics",
    "compute_fid",
    "save_fid_stats",
    "save_random_inception_weights",
]

FID_EXTRA_HINT = "install the optional extra 'fid': pip install 'dmcmc_edu[fid]' (or: pip install pytorch-fid)"
FID_WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
DIMS = (64, 192, 768, 2048)


class InceptionWeightsUnavailable(RuntimeError):
    """pytorch-fid's Inception weights are neither cached nor downloadable (e.g. no network)."""


def require_pytorch_fid():
    """Import ``pytorch_fid`` lazily; a clear ``ImportError`` naming the extra when it is missing."""
    try:
        import pytorch_fid.fid_score
        import pytorch_fid.inception
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise ImportError(f"FID needs the 'pytorch-fid' package: {FID_EXTRA_HINT}") from err
    return pytorch_fid


def default_weights_path() -> Path:
    """Where torch.hub (hence pytorch-fid) caches the FID Inception weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_FILENAME


def _no_weights_message(err: BaseException) -> str:
    pf = require_pytorch_fid()
    return (
        f"could not obtain pytorch-fid's Inception weights ({type(err).__name__}: {err}).\n"
        f"They are downloaded from {pf.inception.FID_WEIGHTS_URL} on first use; without network access:\n"
        f"  * copy the file {FID_WEIGHTS_FILENAME} into {default_weights_path().parent}/ "
        "(torch.hub's checkpoint cache; set TORCH_HOME to move it), or\n"
        "  * pass it explicitly: inception_weights=PATH / python -m dmcmc_edu fid ... --inception-weights PATH")


@contextlib.contextmanager
def _weights_from_file(path):
    """Make pytorch-fid's ``load_state_dict_from_url`` read ``path`` (weights_only) instead of downloading."""
    pf = require_pytorch_fid()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--inception-weights {path}: no such file (expected {FID_WEIGHTS_FILENAME} "
                                "or a state dict of pytorch-fid's FID Inception)")

    def load(url, *args, **kwargs):
        return read_torch_file(path)  # a damaged or refused file is named (never torch's weights_only advice)

    orig = pf.inception.load_state_dict_from_url
    pf.inception.load_state_dict_from_url = load
    try:
        yield
    finally:
        pf.inception.load_state_dict_from_url = orig


def build_fid_inception(dims: int = 2048, *, inception_weights=None, device="cpu"):
    """pytorch-fid's ``InceptionV3`` for the feature block of ``dims``, in eval mode on ``device``.

    With ``inception_weights`` the weights come from that file; otherwise
    from torch.hub's cache, downloading them if needed.  A failed download
    raises :class:`InceptionWeightsUnavailable` with instructions.
    """
    pf = require_pytorch_fid()
    if dims not in DIMS:
        raise ValueError(f"dims must be one of {DIMS} (pytorch-fid's feature blocks), got {dims!r}")
    block = pf.inception.InceptionV3.BLOCK_INDEX_BY_DIM[dims]
    ctx = _weights_from_file(inception_weights) if inception_weights is not None else contextlib.nullcontext()
    try:
        with ctx:
            model = pf.inception.InceptionV3([block])
    except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
        raise InceptionWeightsUnavailable(_no_weights_message(err)) from err
    except OSError as err:
        if inception_weights is not None:
            raise
        raise InceptionWeightsUnavailable(_no_weights_message(err)) from err
    return model.to(device).eval()


def _check_folder(path) -> int:
    """Number of images in a folder (0 for a ``.npz``); errors for a missing path or fewer than 2 images."""
    if str(path).endswith(".npz"):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such statistics file")
        _check_stats_file(path)
        return 0
    n = len(list_images(path))
    if n < 2:
        raise ValueError(f"{path} holds {n} image(s); FID needs at least 2 (and thousands for a meaningful value)")
    return n


def _check_stats_file(path) -> None:
    """Refuse (ValueError naming it) a ``.npz`` that cannot be read or lacks a vector ``mu`` and a matrix ``sigma``."""
    try:
        with np.load(path, allow_pickle=False) as stats:
            shapes = {k: stats[k].shape for k in ("mu", "sigma") if k in stats.files}
            names = list(stats.files)
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{path}: cannot be read as FID statistics ({' '.join(str(err).split())})") from None
    missing = [k for k in ("mu", "sigma") if k not in shapes]
    if missing:
        raise ValueError(f"{path}: not FID statistics -- it has no {' and no '.join(map(repr, missing))} (it holds "
                         f"{names or 'nothing'}); make one with save_fid_stats or python -m dmcmc_edu fid --save-stats")
    mu, sigma = shapes["mu"], shapes["sigma"]
    if len(mu) != 1 or sigma != (mu[0], mu[0]):
        raise ValueError(f"{path}: FID statistics need mu of shape [d] and sigma of shape [d, d], got "
                         f"{list(mu)} and {list(sigma)}")


def fid_statistics(path, model, *, batch_size: int = 50, device="cpu", num_workers: int = 0):
    """``(mu, sigma)`` of the Inception features of an image folder, or those stored in a ``.npz``.

    Statistics holding NaN or inf raise ``ValueError`` naming ``path``.
    """
    pf = require_pytorch_fid()
    n = _check_folder(path)
    dims = _model_dims(model)
    batch_size = min(batch_size, n) if n else batch_size  # pytorch-fid would warn and do the same
    mu, sigma = pf.fid_score.compute_statistics_of_path(str(path), model, batch_size, dims, device, num_workers)
    require_finite_stats(mu, sigma, f"FID statistics of {path}")
    return mu, sigma


def _model_dims(model) -> int:
    block = model.output_blocks[0]
    return {v: k for k, v in model.BLOCK_INDEX_BY_DIM.items()}[block]


def compute_fid(path_a, path_b, *, inception_weights=None, device="cpu", batch_size: int = 50, dims: int = 2048,
                num_workers: int = 0) -> float:
    """FID between two image folders (or a folder and a ``.npz`` of reference statistics), with pytorch-fid.

    Images are read as pytorch-fid reads them (RGB, ``ToTensor`` to [0, 1],
    resized to 299x299 inside the network).  ``num_workers`` is the data
    loader's (0: in this process).  Broken statistics or a distance that is
    NaN, inf or negative beyond round-off raise ``ValueError``.
    """
    pf = require_pytorch_fid()
    _check_folder(path_a), _check_folder(path_b)  # fail before any network evaluation
    model = build_fid_inception(dims, inception_weights=inception_weights, device=device)
    m1, s1 = fid_statistics(path_a, model, batch_size=batch_size, device=device, num_workers=num_workers)
    m2, s2 = fid_statistics(path_b, model, batch_size=batch_size, device=device, num_workers=num_workers)
    if m1.shape != m2.shape:
        raise ValueError(f"feature sizes differ ({m1.shape[0]} vs {m2.shape[0]}): a .npz made with other dims?")
    terms = float((m1 - m2) @ (m1 - m2) + np.trace(s1) + np.trace(s2))
    return checked_frechet(pf.fid_score.calculate_frechet_distance(m1, s1, m2, s2), terms, "FID")


def save_fid_stats(folder, out_npz, *, inception_weights=None, device="cpu", batch_size: int = 50, dims: int = 2048,
                   num_workers: int = 0) -> Path:
    """Write ``mu`` and ``sigma`` of a folder's Inception features to ``out_npz`` (never overwrites)."""
    out = Path(out_npz)
    if out.exists():
        raise FileExistsError(f"{out} exists; choose another file name")
    _check_folder(folder)
    model = build_fid_inception(dims, inception_weights=inception_weights, device=device)
    mu, sigma = fid_statistics(folder, model, batch_size=batch_size, device=device, num_workers=num_workers)
    atomic_write(out, lambda tmp: _savez(tmp, mu=mu, sigma=sigma))
    return out


def _savez(path, **arrays) -> None:
    """``np.savez_compressed`` into exactly ``path`` (through a file object: no ``.npz`` is appended)."""
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def save_random_inception_weights(path, seed: int = 0) -> Path:
    """Write a random-weight state dict of pytorch-fid's FID Inception to ``path`` (tests / offline demos only).

    The network is built by pytorch-fid's own ``fid_inception_v3``; only its
    download is replaced by the freshly initialised weights.  FID values
    computed with these weights are meaningless.
    """
    pf = require_pytorch_fid()
    built = {}
    orig_builder = pf.inception._inception_v3
    orig_loader = pf.inception.load_state_dict_from_url

    def builder(*args, **kwargs):
        built["net"] = orig_builder(*args, **kwargs)
        return built["net"]

    def loader(url, *args, **kwargs):  # the patched network's own (random) weights
        return built["net"].state_dict()

    rng_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    pf.inception._inception_v3, pf.inception.load_state_dict_from_url = builder, loader
    try:
        net = pf.inception.fid_inception_v3()
    finally:
        pf.inception._inception_v3, pf.inception.load_state_dict_from_url = orig_builder, orig_loader
        torch.random.set_rng_state(rng_state)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return path
