"""A small U-Net score model for 1x28x28 images with EDM preconditioning: the module *is* a denoiser D(x, sigma).

Preconditioning (Karras et al. 2022, "Elucidating the design space", Table 1;
the factors ``c_skip, c_out, c_in, c_noise`` come from
:mod:`dmcmc_edu.models.preconditioning`)::

    D(x, sigma) = m + c_skip (x - m) + c_out F(c_in (x - m), c_noise)

Adaptation to data in [0, 1] (the paper's VE setting): EDM derives these
factors for data of mean 0 and standard deviation sigma_data.  We keep ``x``
and ``sigma`` in [0, 1] units (the contract's units, so sigma_max and the
noise-level grid are the same numbers the samplers see) and centre
internally by the mean pixel value ``m = 0.1307``, with ``sigma_data = 0.3081``
(the pixel standard deviation of MNIST in [0, 1]).  Centring by a constant is
exact: ``x_sigma - m = (x0 - m) + sigma z``.  EDM's own choice for images in
[-1, 1] (sigma_data = 0.5) would be sigma_data = 0.25 in these units; the
measured value is closer to the data.

Network ``F``: a plain U-Net (our own small design, in the spirit of the
DDPM/NCSN++ family): 3x3 convolutions, residual blocks with GroupNorm and
SiLU, the noise embedding (Fourier features of c_noise -> MLP) entering each
block as a per-channel scale and shift, stride-2 convolutions down (28 -> 14
-> 7), nearest-neighbour upsampling plus a convolution up, one skip
connection per block, and optional self-attention at the 7x7 level.  Default
channels 24/48/96, one block per level, attention: 1.25 M parameters (5 MB in
float32).

Inputs of any float dtype are accepted (the integrators work in float64);
the network runs in its parameter dtype and the output is returned in x's
dtype.  Wrap sampling in ``torch.no_grad()`` -- the module does not switch
autograd off by itself.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dmcmc_edu.core.contract import check_sigma, per_sample
from dmcmc_edu.models.files import read_json_file, read_torch_file
from dmcmc_edu.models.preconditioning import edm_loss_weight, edm_scalings
from dmcmc_edu.runs import atomic_write

__all__ = ["UNetConfig", "ScoreUNet", "save_score_model", "load_score_model", "WEIGHTS_FORMAT"]

WEIGHTS_FORMAT = "dmcmc_edu.score_unet/1"


@dataclass
class UNetConfig:
    """Architecture and preconditioning of :class:`ScoreUNet` (saved as JSON beside the weights)."""

    in_channels: int = 1
    image_size: int = 28
    channels: list = field(default_factory=lambda: [24, 48, 96])  # one entry per resolution (28, 14, 7)
    blocks_per_level: int = 1
    attention: bool = True  # one self-attention layer at the lowest resolution (and in the middle)
    emb_dim: int = 128
    dropout: float = 0.0
    sigma_data: float = 0.3081  # pixel std of MNIST in [0, 1]
    data_mean: float = 0.1307  # pixel mean of MNIST in [0, 1]; the data are centred by it inside D

    def validate(self) -> "UNetConfig":
        if len(self.channels) < 1 or any(int(c) < 8 or int(c) % 8 for c in self.channels):
            raise ValueError(f"channels must be multiples of 8 (>= 8), got {self.channels}")
        if self.image_size % (2 ** (len(self.channels) - 1)):
            raise ValueError(f"image_size {self.image_size} is not divisible by 2^(levels-1) for {self.channels}")
        if self.blocks_per_level < 1 or self.emb_dim < 8 or self.sigma_data <= 0:
            raise ValueError("need blocks_per_level >= 1, emb_dim >= 8, sigma_data > 0")
        return self


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, c // 4), c)


class _FourierEmbedding(nn.Module):
    """sin/cos of c_noise at fixed log-spaced frequencies (1 .. 1000 rad per unit), then an MLP."""

    def __init__(self, emb_dim: int):
        super().__init__()
        half = emb_dim // 4
        self.register_buffer("freqs", torch.exp(torch.linspace(0.0, math.log(1000.0), half)), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * half, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim), nn.SiLU())

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        a = c_noise[:, None] * self.freqs[None, :]
        return self.mlp(torch.cat([a.sin(), a.cos()], dim=1))


class _ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, FiLM by the noise embedding, GroupNorm-SiLU-(dropout)-conv, plus a skip."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * c_out)
        self.norm2, self.conv2 = _norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity (plus its skip)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.norm2(h) * (1 + scale) + shift)
        h = self.conv2(self.dropout(h))
        return self.skip(x) + h


class _Attention(nn.Module):
    """Multi-head self-attention over the pixels of a feature map (residual)."""

    def __init__(self, c: int, head_dim: int = 32):
        super().__init__()
        self.heads = max(1, c // head_dim)
        self.norm, self.qkv, self.proj = _norm(c), nn.Conv2d(c, 3 * c, 1), nn.Conv2d(c, c, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.proj(out.transpose(-1, -2).reshape(B, C, H, W))


class ScoreUNet(nn.Module):
    """EDM-preconditioned U-Net denoiser ``D(x, sigma)`` for ``[B, C, H, W]`` images in [0, 1], sigma ``[B]``.

    See the module docstring for the preconditioning and the architecture.
    ``forward(x, sigma)`` returns the denoised estimate of ``x0`` (same shape
    and dtype as ``x``); :meth:`raw` exposes the bare network ``F``.
    """

    def __init__(self, config: UNetConfig | dict | None = None):
        super().__init__()
        cfg = UNetConfig(**config) if isinstance(config, dict) else (config or UNetConfig())
        self.config = cfg.validate()
        ch, nb, E = [int(c) for c in cfg.channels], cfg.blocks_per_level, cfg.emb_dim
        self.embed = _FourierEmbedding(E)
        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)
        self.down_blocks, self.downsample = nn.ModuleList(), nn.ModuleList()
        c = ch[0]
        skip_channels = []
        for level, c_out in enumerate(ch):
            blocks = nn.ModuleList()
            for _ in range(nb):
                blocks.append(_ResBlock(c, c_out, E, cfg.dropout))
                c = c_out
                skip_channels.append(c)
            self.down_blocks.append(blocks)
            self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1) if level < len(ch) - 1 else nn.Identity())
        self.mid1 = _ResBlock(c, c, E, cfg.dropout)
        self.mid_attn = _Attention(c) if cfg.attention else nn.Identity()
        self.mid2 = _ResBlock(c, c, E, cfg.dropout)
        self.up_blocks, self.upsample = nn.ModuleList(), nn.ModuleList()
        for level in reversed(range(len(ch))):
            blocks = nn.ModuleList()
            for _ in range(nb):
                blocks.append(_ResBlock(c + skip_channels.pop(), ch[level], E, cfg.dropout))
                c = ch[level]
            self.up_blocks.append(blocks)
            self.upsample.append(nn.Conv2d(c, c, 3, padding=1) if level > 0 else nn.Identity())
        self.low_attn = _Attention(ch[-1]) if cfg.attention and len(ch) > 1 else nn.Identity()
        self.norm_out = _norm(c)
        self.conv_out = nn.Conv2d(c, cfg.in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    # ------------------------------------------------------------------ the bare network F
    def raw(self, x_in: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        """The network F of the preconditioning: ``F(c_in (x - m), c_noise)``."""
        emb = self.embed(c_noise)
        h = self.conv_in(x_in)
        skips = []
        n_levels = len(self.down_blocks)
        for level, (blocks, down) in enumerate(zip(self.down_blocks, self.downsample)):
            for blk in blocks:
                h = blk(h, emb)
                if level == n_levels - 1:
                    h = self.low_attn(h)
                skips.append(h)
            h = down(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for blocks, up in zip(self.up_blocks, self.upsample):
            for blk in blocks:
                h = blk(torch.cat([h, skips.pop()], dim=1), emb)
            if not isinstance(up, nn.Identity):
                h = up(F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))

    # ------------------------------------------------------------------ preconditioning
    def precond(self, sigma: torch.Tensor) -> dict:
        """EDM factors ``c_skip, c_out, c_in, c_noise`` for per-sample sigma ``[B]``."""
        return edm_scalings(sigma, self.config.sigma_data)._asdict()

    def loss_weight(self, sigma: torch.Tensor) -> torch.Tensor:
        """EDM loss weight ``lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 = 1 / c_out^2``."""
        return edm_loss_weight(sigma, self.config.sigma_data)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Denoised estimate ``D(x, sigma)`` of shape and dtype ``x``; ``sigma`` of shape ``[B]``, > 0."""
        check_sigma(sigma, x.shape[0])
        if tuple(x.shape[1:]) != (self.config.in_channels, self.config.image_size, self.config.image_size):
            c, s = self.config.in_channels, self.config.image_size
            raise ValueError(f"x has shape {tuple(x.shape)}, expected [B, {c}, {s}, {s}]")
        p = self.precond(sigma.to(x.dtype))
        m = self.config.data_mean
        wdt = self.conv_in.weight.dtype
        f = self.raw((per_sample(p["c_in"], x) * (x - m)).to(wdt), p["c_noise"].to(wdt)).to(x.dtype)
        return m + per_sample(p["c_skip"], x) * (x - m) + per_sample(p["c_out"], x) * f

    def n_params(self) -> int:
        """Number of parameters of the network."""
        return sum(p.numel() for p in self.parameters())


def save_score_model(model: ScoreUNet, path: str | os.PathLike, info: dict | None = None) -> None:
    """Write ``path`` (a weights-only state dict, ``torch.save``) and ``path`` with suffix ``.json`` (config, info)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    meta = {"format": WEIGHTS_FORMAT, "config": asdict(model.config), "n_params": model.n_params(), **(info or {})}
    atomic_write(path, lambda tmp: torch.save(state, tmp))
    atomic_write(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2)))


def load_score_model(path: str | os.PathLike, map_location="cpu") -> ScoreUNet:
    """Load a :class:`ScoreUNet` saved by :func:`save_score_model` (config from the ``.json`` beside it); eval mode."""
    path = Path(path)
    meta_path = path.with_suffix(".json")
    if not path.exists() or not meta_path.exists():
        raise FileNotFoundError(f"need both {path} and {meta_path} (weights and config)")
    meta = read_json_file(meta_path)
    if not isinstance(meta, dict) or meta.get("format") != WEIGHTS_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"{meta_path}: format {found!r}, expected {WEIGHTS_FORMAT!r}")
    try:
        model = ScoreUNet(UNetConfig(**meta["config"]))
    except (KeyError, TypeError) as err:
        raise ValueError(f"{meta_path}: no usable U-Net 'config' entry ({type(err).__name__}: {err})") from None
    state = read_torch_file(path, map_location=map_location)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: the weights do not fit the network {meta_path} describes "
                         f"({' '.join(str(err).split())[:300]})") from None
    model.info = meta
    return model.eval()
