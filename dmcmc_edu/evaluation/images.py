"""Writing samples as image files for FID, the paper's way or losslessly.

The authors' code saves every sample as ``torch.clamp(x, 0, 1)``, then
``(255 * x).astype(np.uint8)`` -- **truncation**, not rounding -- and
``PIL.Image.save("{i}.jpg")`` with PIL's default JPEG settings (quality 75,
4:2:0 chroma subsampling).  Their FID numbers (pytorch-fid on those JPEGs)
therefore include JPEG artefacts.  :func:`save_images` reproduces that with
``format="jpeg"``.

The default here is ``format="png"``: the same clamp and truncation, but a
lossless file, so the FID measures the sampler and not the codec.  Report
which one a number used; they differ by a small but visible amount.

Samples are expected in ``[0, 1]`` (``value_range`` maps other data ranges,
e.g. ``(-1, 1)`` of a DDPM model, onto it before the clamp).  Files are named
``{index:06d}.png`` / ``{index:06d}.jpg`` (zero-padded so a listing sorts in
sample order; the name does not enter the FID) and are written atomically,
so an interrupted export never leaves a half-written image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from dmcmc_edu.runs import atomic_write

__all__ = ["IMAGE_FORMATS", "to_uint8", "save_images", "load_images", "list_images"]

IMAGE_FORMATS = {"png": ".png", "jpeg": ".jpg", "jpg": ".jpg"}
_READ_EXTENSIONS = {".bmp", ".jpg", ".jpeg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp"}


def to_uint8(x: torch.Tensor, value_range: Sequence[float] = (0.0, 1.0)) -> np.ndarray:
    """``[B, C, H, W]`` floats -> ``[B, H, W, C]`` uint8: map ``value_range`` to [0, 1], clamp, ``floor(255 x)``.

    The conversion truncates (``astype(uint8)`` of ``255 x``) exactly as the
    paper's code does; 1.0 maps to 255 and anything below 1/255 to 0.
    """
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x))
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape [B, C, H, W] with C = 1 or 3, got {tuple(x.shape)}")
    lo, hi = (float(v) for v in value_range)
    if not hi > lo:
        raise ValueError(f"value_range must be (low, high) with high > low, got {value_range!r}")
    x = x.detach().to("cpu", torch.float64)
    if not torch.isfinite(x).all():
        raise ValueError("images contain NaN or inf values")
    x = ((x - lo) / (hi - lo)).clamp(0.0, 1.0)
    return (255.0 * x.permute(0, 2, 3, 1).numpy()).astype(np.uint8)


def save_images(x: torch.Tensor, folder, format: str = "png", start_index: int = 0, *,
                value_range: Sequence[float] = (0.0, 1.0), overwrite: bool = False) -> list[Path]:
    """Write a batch ``[B, C, H, W]`` as image files ``folder/{start_index + i:06d}.{png|jpg}``.

    ``format="png"`` (default, lossless) or ``"jpeg"`` (the paper's files:
    PIL's default quality 75).  Both clamp to [0, 1] and truncate to uint8
    (:func:`to_uint8`).  An existing file is never replaced unless
    ``overwrite=True`` (a resumed export gives ``start_index`` = the number
    already written).  Returns the paths written.
    """
    fmt = format.lower()
    if fmt not in IMAGE_FORMATS:
        raise ValueError(f"format must be 'png' or 'jpeg', got {format!r}")
    if not isinstance(start_index, int) or start_index < 0:
        raise ValueError(f"start_index must be an integer >= 0, got {start_index!r}")
    arr = to_uint8(x, value_range)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ext = IMAGE_FORMATS[fmt]
    paths = []
    for i, img in enumerate(arr):
        path = folder / f"{start_index + i:06d}{ext}"
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass start_index past the images already written "
                                  "(or overwrite=True)")
        pil = Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)
        # PIL's defaults for JPEG, as the paper's code: quality 75, 4:2:0 chroma subsampling
        atomic_write(path, lambda tmp, pil=pil: pil.save(tmp, format="PNG" if fmt == "png" else "JPEG"))
        paths.append(path)
    return paths


def list_images(folder) -> list[Path]:
    """The image files directly inside ``folder`` (the extensions pytorch-fid reads), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in _READ_EXTENSIONS and not p.name.startswith("."))


def load_images(folder, limit: int | None = None) -> torch.Tensor:
    """Read the images of a folder back as a float tensor ``[B, C, H, W]`` in [0, 1] (RGB)."""
    files = list_images(folder)[:limit]
    if not files:
        raise FileNotFoundError(f"no image files in {folder}")
    arrs = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).float() / 255.0
