"""Commands of the image/GPU rung.

train-image-classifier  train the paper's noise-level classifier (SimpleCNN / SimpleCNN256) on CIFAR10 or a folder
save-images             write samples (.npy of a run, or a distributed run's manifest) as PNG or the paper's JPEG
fid                     FID between two image folders (or a folder and a .npz) with pytorch-fid (extra 'fid')

``sample-distributed`` (DLG across processes) is in :mod:`dmcmc_edu.cli.distributed`.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

from dmcmc_edu.cli.common import (
    CommandError,
    add_command,
    check_sigma_order,
    check_torch_files,
    device,
    int_at_least,
    nonnegative_int,
    positive_float,
    positive_int,
    read_npy,
    refuse_existing,
    seed,
    value_range,
)

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image

# torch, torchvision, PIL and the library are imported by the handlers, so that --help stays fast

__all__ = ["add_parsers", "GRIDS", "load_image_dataset", "EpochSampler", "cmd_train_image_classifier", "cmd_fid",
           "cmd_save_images"]

GRIDS = {32: (0.01, 50.0), 256: (0.01, 348.0)}
"""Default noise-level grids by image size: CIFAR10 (sigma_max 50) and CelebA-HQ-256 (sigma_max 348), 1000 levels."""

_IMAGE_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm"}


# ----------------------------------------------------------------------------- data


def _cifar10_uint8(root) -> torch.Tensor:
    """The CIFAR10 training images as ``[N, 3, 32, 32]`` uint8; a missing data set is an error with instructions."""
    import numpy as np
    import torch
    from torchvision.datasets import CIFAR10

    try:
        ds = CIFAR10(root=str(root), train=True, download=False)
    except RuntimeError as err:
        raise CommandError(
            f"CIFAR10 not found under --root {root} ({err}). Expected {Path(root) / 'cifar-10-batches-py'}/ "
            "(the python version of the data set). Get it once, where there is network access, with "
            f"python -c \"import torchvision; torchvision.datasets.CIFAR10('{root}', download=True)\" "
            "or download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz and extract it into --root."
        ) from None
    return torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()


def _square(img: Image.Image, size: int) -> Image.Image:
    """Resize the short side to ``size`` (bicubic), then crop the centre ``size x size``."""
    from PIL import Image

    if img.size == (size, size):
        return img
    w, h = img.size
    s = size / min(w, h)
    img = img.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BICUBIC)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


def _folder_uint8(root, image_size: int, max_images: int | None) -> torch.Tensor:
    """Every image file under ``root`` (recursively, sorted), as RGB ``[N, 3, S, S]`` uint8."""
    import numpy as np
    import torch
    from PIL import Image

    root = Path(root)
    if not root.is_dir():
        raise CommandError(f"--root {root} is not a folder")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in _IMAGE_EXT and p.is_file())
    if max_images is not None:
        files = files[:max_images]
    if not files:
        raise CommandError(f"no image files ({', '.join(sorted(_IMAGE_EXT))}) under {root}")
    out = torch.empty((len(files), 3, image_size, image_size), dtype=torch.uint8)
    for i, f in enumerate(files):
        img = _square(Image.open(f).convert("RGB"), image_size)
        out[i] = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
    return out


def load_image_dataset(dataset: str, root, image_size: int, max_images: int | None = None) -> torch.Tensor:
    """Training images as a uint8 tensor ``[N, 3, S, S]``: torchvision's CIFAR10 (train split) or an image folder.

    A folder is searched recursively (an ``ImageFolder`` layout with class
    sub-folders works, the classes are ignored); images are converted to RGB,
    resized (short side) and centre-cropped to ``image_size``.  Kept as uint8
    (CelebA-HQ-256: 30k images = 5.9 GB) and converted per batch.
    """
    if dataset == "cifar10":
        data = _cifar10_uint8(root)
        if image_size != 32:
            raise CommandError("CIFAR10 images are 32 px: use --image-size 32")
        return data[:max_images] if max_images else data
    if dataset == "folder":
        return _folder_uint8(root, image_size, max_images)
    raise CommandError(f"unknown --dataset {dataset!r} (cifar10 | folder)")


class EpochSampler:
    """``sampler(n, generator) -> [n, C, H, W]`` floats in [0, 1] from uint8 images, one random permutation per epoch.

    Every image is used once per epoch (the last batch of an epoch continues
    into the next permutation), which is what ``train_noise_level_classifier``
    does with tensor data, without holding the set as floats.
    """

    def __init__(self, images_uint8: torch.Tensor):
        import torch

        self.images = images_uint8
        self.perm = torch.empty(0, dtype=torch.long)
        self.pos = 0

    def __call__(self, n: int, generator: torch.Generator) -> torch.Tensor:
        import torch

        idx = []
        while n > 0:
            if self.pos >= self.perm.numel():
                self.perm = torch.randperm(self.images.shape[0], generator=generator, device=generator.device).cpu()
                self.pos = 0
            take = self.perm[self.pos:self.pos + n]
            self.pos += take.numel()
            n -= take.numel()
            idx.append(take)
        return self.images[torch.cat(idx)].float() / 255.0


# ----------------------------------------------------------------------------- train-image-classifier


def _image_grid_range(args) -> tuple[float, float]:
    """``(sigma_min, sigma_max)``: the options, else the default grid of the image size (:data:`GRIDS`)."""
    check_sigma_order(args.sigma_min, args.sigma_max)
    smin, smax = GRIDS.get(args.image_size, (0.01, None))
    smin = args.sigma_min if args.sigma_min is not None else smin
    smax = args.sigma_max if args.sigma_max is not None else smax
    if smax is None:
        raise CommandError(f"no default grid for --image-size {args.image_size}: give --sigma-max")
    if not smin < smax:
        raise CommandError(f"--sigma-min {smin:g} must be smaller than the sigma_max {smax:g} of the grid")
    return smin, smax


def cmd_train_image_classifier(args) -> int:
    """train the paper's noise-level classifier on images

    Cross-entropy on x0 + sigma_y z, y uniform over a 1000-level grid (sigma_min 0.01; sigma_max 50 at 32 px,
    348 at 256 px), Adam lr 1e-3, batch 100, as in the paper. SimpleCNN for 32 px, SimpleCNN256 for 256 px.
    Images in [0, 1].  An existing --out file is never replaced: the same call again (same settings, same
    images by content) reports it, another call is refused.
    """
    import numpy as np
    import torch

    from dmcmc_edu.core.schedules import noise_level_grid
    from dmcmc_edu.models.classifier import NoiseLevelClassifier, SimpleCNN, SimpleCNN256
    from dmcmc_edu.runs import fingerprint, saved_output, sha256_tensors
    from dmcmc_edu.training.classifier import train_noise_level_classifier

    size = args.image_size
    smin, smax = _image_grid_range(args)
    images = load_image_dataset(args.dataset, args.root, size, args.max_images)
    dev = device(args.device)
    steps_per_epoch = math.ceil(images.shape[0] / args.batch_size)
    steps = args.steps if args.steps is not None else args.epochs * steps_per_epoch
    data_sha256 = sha256_tensors({"images": images})
    fp = fingerprint("train-image-classifier",
                     {"image_size": size, "n_images": int(images.shape[0]), "steps": steps,
                      "batch_size": args.batch_size, "lr": args.lr, "n_levels": args.n_levels, "sigma_min": smin,
                      "sigma_max": smax, "seed": args.seed, "device": dev.type}, hashes={"data": data_sha256})
    if saved_output(args.out, fp, lambda p: NoiseLevelClassifier.load(p).config.get("fingerprint")):
        print(json.dumps({"saved": str(args.out), "steps": steps,
                          "note": "trained earlier with the same settings and images; nothing was written"}))
        return 0
    refuse_existing(args.out)
    torch.manual_seed(args.seed)  # network initialisation
    net = (SimpleCNN256 if size >= 128 else SimpleCNN)(3, args.n_levels, size)
    grid = noise_level_grid(smin, smax, args.n_levels)
    config = {"dataset": args.dataset, "root": str(args.root), "image_size": size, "n_images": int(images.shape[0]),
              "epochs": args.epochs if args.steps is None else None, "steps": steps, "batch_size": args.batch_size,
              "lr": args.lr, "seed": args.seed, "sigma_min": smin, "sigma_max": smax, "data_range": [0.0, 1.0],
              "data_sha256": data_sha256, "fingerprint": fp}
    clf = NoiseLevelClassifier(net, grid, config=config).to(dev)
    g = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    hist = train_noise_level_classifier(clf, EpochSampler(images), steps=steps, batch_size=args.batch_size,
                                        lr=args.lr, generator=g, progress=not args.quiet)
    clf.save(args.out)
    w = min(100, len(hist["loss"]))
    summary = {"saved": str(args.out), "architecture": type(net).__name__, "images": int(images.shape[0]),
               "steps": steps, "epochs": steps / steps_per_epoch, "device": str(dev),
               "final_loss": float(np.mean(hist["loss"][-w:])),
               f"final_accuracy_within_{hist['within_levels']}_levels": float(np.mean(hist["accuracy_within"][-w:])),
               "seconds": round(time.time() - t0, 2)}
    print(json.dumps(summary, indent=1))
    return 0


# ----------------------------------------------------------------------------- save-images


def _load_samples(path) -> np.ndarray:
    """Samples from a ``.npy``, a run folder (``samples.npy``) or a distributed run folder (``manifest.json``)."""
    from dmcmc_edu.experiments.distributed import load_distributed_samples

    path = Path(path)
    if path.is_dir():
        if (path / "manifest.json").is_file():
            return load_distributed_samples(path)
        if (path / "samples.npy").is_file():
            return read_npy(path / "samples.npy")
        raise CommandError(f"{path} holds neither samples.npy nor a distributed manifest.json")
    if path.suffix == ".npy":
        return read_npy(path)
    raise CommandError(f"{path}: give a samples .npy, a run folder or a distributed run folder")


def cmd_save_images(args) -> int:
    """write samples as image files (PNG, or the paper's JPEG)

    Clamp to [0, 1], uint8 by truncation (as the paper), then PNG (lossless, the default) or JPEG (the paper's
    files, PIL quality 75). Names {index:06d}.png/.jpg.
    """
    import torch

    from dmcmc_edu.evaluation.images import save_images

    x = torch.from_numpy(_load_samples(args.samples))
    if x.ndim != 4:
        raise CommandError(f"{args.samples}: samples have shape {tuple(x.shape)}; images need [N, C, H, W]")
    lo, hi = args.value_range
    folder = Path(args.folder)
    if args.limit:
        x = x[:args.limit]
    done = 0
    for s in range(0, x.shape[0], 1000):
        done += len(save_images(x[s:s + 1000], folder, format=args.format, start_index=args.start_index + s,
                                value_range=(lo, hi)))
    print(json.dumps({"folder": str(folder), "images": done, "format": args.format}))
    return 0


# ----------------------------------------------------------------------------- fid


def cmd_fid(args) -> int:
    """FID with pytorch-fid (optional extra 'fid')

    FID between FOLDER_A and FOLDER_B or STATS.npz, with pytorch-fid's Inception. Its weights
    (pt_inception-2015-12-05-6726825d.pth) are downloaded once into torch.hub's checkpoints folder; offline, put
    the file there or pass --inception-weights PATH.
    """
    from dmcmc_edu.evaluation.inception_fid import compute_fid, save_fid_stats

    if args.inception_weights is not None:  # read by pytorch-fid's loader: refuse a damaged file by its name
        check_torch_files(Path(args.inception_weights).parent, [Path(args.inception_weights).name])
    dev = str(device(args.device or "auto"))
    options = dict(inception_weights=args.inception_weights, device=dev, batch_size=args.batch_size,
                   dims=args.dims, num_workers=args.num_workers)
    if args.save_stats:
        out = save_fid_stats(args.path_a, args.path_b, **options)
        print(json.dumps({"saved_stats": str(out), "dims": args.dims}))
        return 0
    value = compute_fid(args.path_a, args.path_b, **options)
    print(json.dumps({"fid": value, "dims": args.dims, "a": str(args.path_a), "b": str(args.path_b)}))
    return 0


# ----------------------------------------------------------------------------- parsers


def _add_train_image_classifier(sub) -> None:
    t = add_command(sub, "train-image-classifier", cmd_train_image_classifier,
                    example="--dataset cifar10 --root data/cifar10 --out runs/cifar10_classifier.pt --device cuda")
    t.add_argument("--dataset", required=True, choices=["cifar10", "folder"])
    t.add_argument("--root", required=True, help="CIFAR10: the folder holding cifar-10-batches-py; folder: images")
    t.add_argument("--out", required=True, help="output classifier file (.pt); must not exist yet")
    t.add_argument("--image-size", type=int_at_least(8), default=32, help="32 (CIFAR10) or 256 (CelebA-HQ)")
    t.add_argument("--epochs", type=positive_int, default=100, help="paper: 100-200")
    t.add_argument("--steps", type=positive_int, default=None, help="train this many steps instead of --epochs")
    t.add_argument("--batch-size", type=positive_int, default=100)
    t.add_argument("--lr", type=positive_float, default=1e-3)
    t.add_argument("--n-levels", type=int_at_least(2), default=1000)
    t.add_argument("--sigma-min", type=positive_float, default=None, help="default 0.01")
    t.add_argument("--sigma-max", type=positive_float, default=None, help="default 50 (32 px) / 348 (256 px)")
    t.add_argument("--max-images", type=positive_int, default=None, help="use only the first N images")
    t.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:1 ...")
    t.add_argument("--seed", type=seed, default=0)
    t.add_argument("--quiet", action="store_true")


def _add_save_images(sub) -> None:
    s = add_command(sub, "save-images", cmd_save_images, example="runs/dist runs/dist_png")
    s.add_argument("samples", help="a samples .npy, a run folder (samples.npy) or a distributed run folder")
    s.add_argument("folder", help="output image folder (existing images are never overwritten)")
    s.add_argument("--format", default="png", choices=["png", "jpeg"])
    s.add_argument("--value-range", type=value_range, default=(0.0, 1.0),
                   help="data range mapped to [0, 1] (write a negative one as --value-range=-1,1)")
    s.add_argument("--start-index", type=nonnegative_int, default=0)
    s.add_argument("--limit", type=positive_int, default=None, help="write only the first N samples")


def _add_fid(sub) -> None:
    f = add_command(sub, "fid", cmd_fid,
                    example="runs/images_a runs/images_b --inception-weights pt_inception-2015-12-05-6726825d.pth")
    f.add_argument("path_a", help="image folder")
    f.add_argument("path_b", help="image folder or .npz statistics (with --save-stats: the .npz to write)")
    f.add_argument("--inception-weights", default=None, help="the FID Inception weights file (offline use)")
    f.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    f.add_argument("--batch-size", type=positive_int, default=50)
    f.add_argument("--dims", type=int, default=2048, choices=[64, 192, 768, 2048],
                   help="feature block (2048 = the standard FID)")
    f.add_argument("--num-workers", type=nonnegative_int, default=0, help="data-loader workers")
    f.add_argument("--save-stats", action="store_true", help="write the statistics of path_a to path_b (.npz)")


def add_parsers(sub) -> None:
    """Add ``train-image-classifier``, ``save-images`` and ``fid`` to the sub-command parsers."""
    for add in (_add_train_image_classifier, _add_save_images, _add_fid):
        add(sub)
