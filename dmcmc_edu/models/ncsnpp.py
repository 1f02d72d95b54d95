"""NCSN++ (continuous-time, VE) written from scratch in plain PyTorch.

This module re-implements the NCSN++ score network of Song et al., *Score-Based
Generative Modeling through Stochastic Differential Equations* (ICLR 2021), in
the variant used by the two pretrained VE checkpoints that the Denoising MCMC
paper (Kim & Ye, arXiv 2209.14593) builds on:

* ``cifar10_ncsnpp_continuous``       (32x32, residual input pyramid), and
* ``celebahq_256_ncsnpp_continuous``  (256x256, input/output skip pyramids).

The layer graph, the parameter names and the state_dict order follow the
public reference implementation (``yang-song/score_sde_pytorch``) so that its
``.pth`` checkpoints load directly (see :mod:`dmcmc_edu.models.score_sde`), but the
code here is our own.  Only plain PyTorch operators are used; in particular
the StyleGAN2-style FIR resampling (``upfirdn2d`` in the reference) is written
with ordinary (transposed) depthwise convolutions.

Call convention of :class:`NCSNpp` (identical to the reference network):

* ``net(x, sigma)`` with ``x`` of shape ``[B, C, H, W]`` and ``sigma`` of shape
  ``[B]`` -- the marginal standard deviation of the VE SDE, one per sample
  (not ``t`` and not ``log sigma``);
* when ``config.centered`` is false the data live in ``[0, 1]`` and the network
  applies ``x -> 2x - 1`` itself;
* the noise level enters through Gaussian Fourier features of ``log sigma``;
* with ``scale_by_sigma`` the output is divided by ``sigma``; the returned
  tensor is then the score estimate ``grad_x log p_sigma(x)``.

The denoiser adapter ``D(x, sigma) = x + sigma**2 * score`` lives in
:mod:`dmcmc_edu.models.score_sde`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dmcmc_edu.core.contract import per_sample

__all__ = [
    "NCSNppConfig",
    "NCSNpp",
    "GaussianFourierFeatures",
    "ChannelDense",
    "SelfAttentionBlock",
    "BigGANResBlock",
    "FIRConvDownsample",
    "PyramidCombine",
    "fir_kernel_2d",
    "fir_upsample_2x",
    "fir_downsample_2x",
    "fir_conv_downsample_2x",
    "geometric_sigmas",
]

_SQRT2 = math.sqrt(2.0)


# ---------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NCSNppConfig:
    """Hyper-parameters of an NCSN++ network (the ``model``/``data`` part of a score_sde config).

    Field names and meanings follow score_sde's ``config.model.*`` and
    ``config.data.*`` entries.  Only the combination used by the continuous VE
    NCSN++ models is supported (BigGAN residual blocks, FIR resampling,
    Gaussian Fourier noise embedding, GroupNorm, swish); :meth:`validate`
    rejects anything else with an explicit message instead of building a
    network that would silently differ from the reference.
    """

    image_size: int = 32
    num_channels: int = 3
    centered: bool = False
    nf: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 4
    attn_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.1
    resamp_with_conv: bool = True
    fir: bool = True
    fir_kernel: tuple[int, ...] = (1, 3, 3, 1)
    skip_rescale: bool = True
    resblock_type: str = "biggan"
    progressive: str = "none"
    progressive_input: str = "residual"
    progressive_combine: str = "sum"
    attention_type: str = "ddpm"
    embedding_type: str = "fourier"
    fourier_scale: float = 16.0
    init_scale: float = 0.0
    conv_size: int = 3
    conditional: bool = True
    scale_by_sigma: bool = True
    sigma_min: float = 0.01
    sigma_max: float = 50.0
    num_scales: int = 1000
    normalization: str = "GroupNorm"
    nonlinearity: str = "swish"
    ema_rate: float = 0.999
    name: str = "ncsnpp"
    sde: str = "vesde"
    continuous: bool = True

    # -- construction --------------------------------------------------------

    @classmethod
    def from_score_sde(cls, full_config: Mapping[str, Any]) -> "NCSNppConfig":
        """Build a config from a score_sde configuration dict.

        ``full_config`` is the nested layout of an ``ml_collections`` config
        dumped to JSON (``{"data": {...}, "model": {...}, "training": {...}}``),
        as stored under ``full_config`` in the fixtures' ``config.json``.
        Unknown entries are ignored; the result is validated.
        """
        if not isinstance(full_config, Mapping) or "model" not in full_config or "data" not in full_config:
            raise ValueError("a score_sde config needs at least the sections 'model' and 'data'")
        model = dict(full_config["model"])
        data = dict(full_config["data"])
        training = dict(full_config.get("training", {}))
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {k: v for k, v in model.items() if k in known}
        for key in ("image_size", "num_channels", "centered"):
            if key in data:
                kwargs[key] = data[key]
        if "sde" in training:
            kwargs["sde"] = training["sde"]
        if "continuous" in training:
            kwargs["continuous"] = training["continuous"]
        for key in ("ch_mult", "attn_resolutions", "fir_kernel"):
            if key in kwargs:
                kwargs[key] = tuple(int(v) for v in kwargs[key])
        cfg = cls(**kwargs)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict:
        """Plain-dict view (JSON friendly)."""
        return asdict(self)

    # -- checks ---------------------------------------------------------------

    def validate(self) -> "NCSNppConfig":
        """Raise ``ValueError`` listing every setting this implementation does not support."""
        problems = []

        def need(cond: bool, msg: str) -> None:
            if not cond:
                problems.append(msg)

        need(self.name.lower() == "ncsnpp", f"model.name must be 'ncsnpp', got {self.name!r}")
        need(self.embedding_type.lower() == "fourier",
             f"model.embedding_type must be 'fourier' (continuous VE), got {self.embedding_type!r}")
        need(self.conditional, "model.conditional must be true")
        need(self.resblock_type.lower() == "biggan",
             f"model.resblock_type must be 'biggan', got {self.resblock_type!r}")
        need(self.progressive.lower() in ("none", "output_skip"),
             f"model.progressive must be 'none' or 'output_skip', got {self.progressive!r}")
        need(self.progressive_input.lower() in ("none", "input_skip", "residual"),
             f"model.progressive_input must be 'none', 'input_skip' or 'residual', got {self.progressive_input!r}")
        need(self.progressive_combine.lower() in ("sum", "cat"),
             f"model.progressive_combine must be 'sum' or 'cat', got {self.progressive_combine!r}")
        need(self.fir, "model.fir must be true (FIR up/down-sampling)")
        need(len(self.fir_kernel) % 2 == 0 and len(self.fir_kernel) >= 2,
             f"model.fir_kernel must have an even number of taps, got {list(self.fir_kernel)}")
        need(self.attention_type.lower() == "ddpm", f"model.attention_type must be 'ddpm', got {self.attention_type!r}")
        need(self.normalization == "GroupNorm", f"model.normalization must be 'GroupNorm', got {self.normalization!r}")
        need(self.nonlinearity.lower() == "swish", f"model.nonlinearity must be 'swish', got {self.nonlinearity!r}")
        need(self.conv_size == 3, f"model.conv_size must be 3, got {self.conv_size}")
        need(self.sde.lower() == "vesde", f"training.sde must be 'vesde', got {self.sde!r}")
        need(bool(self.continuous), "training.continuous must be true")
        need(len(self.ch_mult) >= 1, "model.ch_mult must not be empty")
        need(self.nf >= 4 and self.num_res_blocks >= 1, "model.nf must be >= 4 and model.num_res_blocks >= 1")
        need(0 < self.sigma_min < self.sigma_max,
             f"need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")
        if self.ch_mult:
            need(self.image_size % (2 ** (len(self.ch_mult) - 1)) == 0,
                 f"data.image_size {self.image_size} is not divisible by 2**(len(ch_mult)-1)")
        if problems:
            raise ValueError("unsupported NCSN++ configuration:\n  - " + "\n  - ".join(problems))
        return self

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the images the network was built for."""
        return (self.num_channels, self.image_size, self.image_size)

    @property
    def resolutions(self) -> list[int]:
        """Spatial size at each level of the U-Net, from the input down."""
        return [self.image_size // (2**i) for i in range(len(self.ch_mult))]


def geometric_sigmas(sigma_max: float, sigma_min: float, num_scales: int) -> torch.Tensor:
    """The float64 grid ``exp(linspace(log sigma_max, log sigma_min, num_scales))``.

    This is the ``sigmas`` buffer stored in score_sde checkpoints; the
    continuous-time forward pass does not use it.
    """
    return torch.exp(torch.linspace(math.log(sigma_max), math.log(sigma_min), num_scales, dtype=torch.float64))


# ---------------------------------------------------------------------------
# FIR resampling with plain convolutions
# ---------------------------------------------------------------------------


def fir_kernel_2d(taps: Sequence[float], gain: float = 1.0, *, dtype=None, device=None) -> torch.Tensor:
    """Separable 2-D FIR kernel: outer product of ``taps`` with itself, normalised to sum ``gain``."""
    k1 = torch.as_tensor(list(taps), dtype=torch.float64)
    k2 = torch.outer(k1, k1)
    k2 = k2 * (gain / k2.sum())
    return k2.to(dtype=dtype or torch.get_default_dtype(), device=device)


def _per_channel(x: torch.Tensor, op) -> torch.Tensor:
    """Apply a single-channel op to every channel by folding channels into the batch axis.

    Faster than a grouped (depthwise) convolution on CPU, where grouped
    float64 convolutions are split into one call per group.
    """
    b, c, h, w = x.shape
    y = op(x.reshape(b * c, 1, h, w))
    return y.reshape(b, c, y.shape[-2], y.shape[-1])


def fir_upsample_2x(x: torch.Tensor, taps: Sequence[float] = (1, 3, 3, 1)) -> torch.Tensor:
    """Upsample ``[B, C, H, W] -> [B, C, 2H, 2W]`` with a FIR filter (StyleGAN2 ``upsample_2d``).

    Zero-insertion followed by a true convolution with the kernel (gain 4, so
    constant images stay constant), pixels outside the image being zero.  This
    is exactly one transposed convolution with stride 2 per channel.
    """
    n = len(taps)
    if n % 2:
        raise ValueError("fir_upsample_2x needs an even number of taps")
    k = fir_kernel_2d(taps, gain=4.0, dtype=x.dtype, device=x.device)[None, None]
    return _per_channel(x, lambda t: F.conv_transpose2d(t, k, stride=2, padding=n // 2 - 1))


def fir_downsample_2x(x: torch.Tensor, taps: Sequence[float] = (1, 3, 3, 1)) -> torch.Tensor:
    """Downsample ``[B, C, H, W] -> [B, C, H/2, W/2]`` with a FIR filter (StyleGAN2 ``downsample_2d``).

    Zero padding of ``(n - 2) / 2`` pixels on each side, convolution with the
    unit-gain kernel, then every second pixel -- one strided conv per channel.
    """
    n = len(taps)
    if n % 2:
        raise ValueError("fir_downsample_2x needs an even number of taps")
    k = fir_kernel_2d(taps, gain=1.0, dtype=x.dtype, device=x.device).flip(0, 1)[None, None]
    return _per_channel(x, lambda t: F.conv2d(t, k, stride=2, padding=(n - 2) // 2))


def fir_conv_downsample_2x(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, taps: Sequence[float] = (1, 3, 3, 1)
) -> torch.Tensor:
    """FIR blur followed by a stride-2 ``k x k`` convolution (StyleGAN2 ``conv_downsample_2d``).

    The blur pads by ``(n - 2 + k - 1) / 2`` so that the strided valid
    convolution that follows yields ``H/2 x W/2``.
    """
    n = len(taps)
    ksize = weight.shape[-1]
    pad_total = (n - 2) + (ksize - 1)
    pad_lo, pad_hi = (pad_total + 1) // 2, pad_total // 2
    k = fir_kernel_2d(taps, gain=1.0, dtype=x.dtype, device=x.device).flip(0, 1)[None, None]
    if pad_lo == pad_hi:
        x = _per_channel(x, lambda t: F.conv2d(t, k, padding=pad_lo))
    else:
        x = _per_channel(F.pad(x, (pad_lo, pad_hi, pad_lo, pad_hi)), lambda t: F.conv2d(t, k))
    x = F.conv2d(x, weight, stride=2)
    if bias is not None:
        x = x + bias.reshape(1, -1, 1, 1)
    return x


# ---------------------------------------------------------------------------
# building blocks (parameter names follow the reference checkpoints)
# ---------------------------------------------------------------------------


def _group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with ``min(C // 4, 32)`` groups and eps 1e-6, as in NCSN++."""
    return nn.GroupNorm(num_groups=min(channels // 4, 32), num_channels=channels, eps=1e-6)


def _conv3x3(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1)


def _conv1x1(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=1)


class GaussianFourierFeatures(nn.Module):
    """Random Fourier features ``[sin(2 pi v W), cos(2 pi v W)]`` of a scalar per sample.

    ``W`` (shape ``[embedding_size]``) is drawn once as ``N(0, scale^2)`` and
    never trained (``requires_grad=False``), but it is part of the state_dict
    and has to come from the checkpoint.  NCSN++ feeds ``v = log sigma``.
    """

    def __init__(self, embedding_size: int, scale: float = 16.0):
        super().__init__()
        self.W = nn.Parameter(torch.randn(embedding_size) * scale, requires_grad=False)

    def extra_repr(self) -> str:
        return f"embedding_size={self.W.shape[0]}"

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        """Map ``[B]`` to ``[B, 2 * embedding_size]`` (sine block first)."""
        phase = (v[:, None] * self.W[None, :]) * (2.0 * math.pi)
        return torch.cat([phase.sin(), phase.cos()], dim=-1)


class ChannelDense(nn.Module):
    """A dense layer over the channel axis, storing its weight as ``W[in, out]`` (the reference's ``NIN``).

    Note the layout: ``y = x @ W + b``, the transpose of ``nn.Linear``.
    :meth:`forward` acts on the last axis of its input.
    """

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.W = nn.Parameter(torch.empty(in_dim, out_dim))
        self.b = nn.Parameter(torch.zeros(out_dim))
        nn.init.xavier_uniform_(self.W)

    def extra_repr(self) -> str:
        return f"in_dim={self.W.shape[0]}, out_dim={self.W.shape[1]}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x[..., in] -> x @ W + b``."""
        return x @ self.W + self.b


class SelfAttentionBlock(nn.Module):
    """Single-head spatial self-attention with a residual connection (the reference's ``AttnBlockpp``).

    GroupNorm, then query/key/value via :class:`ChannelDense` (``NIN_0..2``),
    softmax over all ``H*W`` positions with scale ``C**-0.5``, an output
    projection ``NIN_3``, and ``(x + h) / sqrt(2)`` when ``skip_rescale``.
    """

    def __init__(self, channels: int, skip_rescale: bool = True):
        super().__init__()
        self.GroupNorm_0 = _group_norm(channels)
        self.NIN_0 = ChannelDense(channels, channels)
        self.NIN_1 = ChannelDense(channels, channels)
        self.NIN_2 = ChannelDense(channels, channels)
        self.NIN_3 = ChannelDense(channels, channels)
        self.skip_rescale = skip_rescale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, C, H, W]``."""
        b, c, hgt, wid = x.shape
        tokens = self.GroupNorm_0(x).flatten(2).transpose(1, 2)  # [B, HW, C]
        q, k, v = self.NIN_0(tokens), self.NIN_1(tokens), self.NIN_2(tokens)
        weights = torch.softmax((q @ k.transpose(1, 2)) * (c**-0.5), dim=-1)  # [B, HW(query), HW(key)]
        h = self.NIN_3(weights @ v)  # [B, HW, C]
        h = h.transpose(1, 2).reshape(b, c, hgt, wid)
        return (x + h) / _SQRT2 if self.skip_rescale else x + h


class BigGANResBlock(nn.Module):
    """BigGAN-style residual block with optional FIR up/down-sampling (the reference's ``ResnetBlockBigGANpp``).

    ``GroupNorm_0 -> swish -> [resample] -> Conv_0 -> + Dense_0(swish(temb)) ->
    GroupNorm_1 -> swish -> Dropout_0 -> Conv_1``; the skip branch is resampled
    the same way and goes through the 1x1 ``Conv_2`` when the channel count
    changes or the block resamples.  Output ``(skip + h) / sqrt(2)`` when
    ``skip_rescale``.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int | None = None,
        *,
        temb_dim: int,
        up: bool = False,
        down: bool = False,
        dropout: float = 0.0,
        fir_kernel: Sequence[int] = (1, 3, 3, 1),
        skip_rescale: bool = True,
    ):
        super().__init__()
        if up and down:
            raise ValueError("a block cannot both upsample and downsample")
        out_ch = out_ch or in_ch
        self.GroupNorm_0 = _group_norm(in_ch)
        self.Conv_0 = _conv3x3(in_ch, out_ch)
        self.Dense_0 = nn.Linear(temb_dim, out_ch)
        self.GroupNorm_1 = _group_norm(out_ch)
        self.Dropout_0 = nn.Dropout(dropout)
        self.Conv_1 = _conv3x3(out_ch, out_ch)
        if in_ch != out_ch or up or down:
            self.Conv_2 = _conv1x1(in_ch, out_ch)
        else:
            self.Conv_2 = None
        self.up, self.down = up, down
        self.fir_kernel = tuple(fir_kernel)
        self.skip_rescale = skip_rescale
        self.in_ch, self.out_ch = in_ch, out_ch

    def forward(self, x: torch.Tensor, temb_act: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, in_ch, H, W]``, ``temb_act`` = swish of the noise embedding ``[B, temb_dim]``."""
        h = F.silu(self.GroupNorm_0(x))
        if self.up:
            h, x = fir_upsample_2x(h, self.fir_kernel), fir_upsample_2x(x, self.fir_kernel)
        elif self.down:
            h, x = fir_downsample_2x(h, self.fir_kernel), fir_downsample_2x(x, self.fir_kernel)
        h = self.Conv_0(h) + self.Dense_0(temb_act)[:, :, None, None]
        h = self.Conv_1(self.Dropout_0(F.silu(self.GroupNorm_1(h))))
        if self.Conv_2 is not None:
            x = self.Conv_2(x)
        return (x + h) / _SQRT2 if self.skip_rescale else x + h


class FIRConvDownsample(nn.Module):
    """Learned 2x downsampling: FIR blur + stride-2 3x3 conv (the reference's ``Downsample(with_conv, fir)``).

    Used for the ``residual`` input pyramid; its parameters are
    ``Conv2d_0.weight`` ``[out, in, 3, 3]`` and ``Conv2d_0.bias``.
    """

    def __init__(self, in_ch: int, out_ch: int, fir_kernel: Sequence[int] = (1, 3, 3, 1)):
        super().__init__()
        self.Conv2d_0 = _PlainConvParams(in_ch, out_ch, 3)
        self.fir_kernel = tuple(fir_kernel)

    def extra_repr(self) -> str:
        return f"fir_kernel={list(self.fir_kernel)}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, in, H, W] -> [B, out, H/2, W/2]``."""
        return fir_conv_downsample_2x(x, self.Conv2d_0.weight, self.Conv2d_0.bias, self.fir_kernel)


class _PlainConvParams(nn.Module):
    """Holder for a conv ``weight [out, in, k, k]`` and ``bias [out]`` used by a custom op."""

    def __init__(self, in_ch: int, out_ch: int, ksize: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_ch, in_ch, ksize, ksize))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def extra_repr(self) -> str:
        out_ch, in_ch, k, _ = self.weight.shape
        return f"{in_ch}, {out_ch}, kernel_size={k}"


class PyramidCombine(nn.Module):
    """Merge the downsampled input image into the feature map (the reference's ``Combine``).

    ``Conv_0`` is a 1x1 conv from the image channels to the feature channels;
    the result is added to (``sum``) or concatenated with (``cat``) the features.
    """

    def __init__(self, pyramid_ch: int, feature_ch: int, method: str = "sum"):
        super().__init__()
        if method not in ("sum", "cat"):
            raise ValueError(f"unknown combine method {method!r}")
        self.Conv_0 = _conv1x1(pyramid_ch, feature_ch)
        self.method = method

    def forward(self, pyramid: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Combine ``pyramid`` ``[B, pyramid_ch, H, W]`` with ``h`` ``[B, feature_ch, H, W]``."""
        p = self.Conv_0(pyramid)
        return p + h if self.method == "sum" else torch.cat([p, h], dim=1)


# ---------------------------------------------------------------------------
# the network
# ---------------------------------------------------------------------------


class NCSNpp(nn.Module):
    """NCSN++ score network for continuous-time VE SDEs.

    The state_dict has the same keys, shapes and order as the reference model
    without its ``DataParallel`` prefix: a float64 ``sigmas`` buffer, then
    ``all_modules.<i>.*`` for a flat list of layers in execution order.  Build
    it on the ``meta`` device (``with torch.device("meta"): NCSNpp(cfg)``) to
    inspect the architecture without allocating memory.

    ``forward(x, sigma)`` returns the reference network's output: the score
    estimate when ``config.scale_by_sigma`` is true.  The network only works at
    the image size it was built for (where attention is applied depends on it).
    """

    def __init__(self, config: NCSNppConfig):
        super().__init__()
        config.validate()
        self.config = cfg = config
        self.register_buffer("sigmas", geometric_sigmas(cfg.sigma_max, cfg.sigma_min, cfg.num_scales))

        nf, n_levels, chans = cfg.nf, len(cfg.ch_mult), cfg.num_channels
        temb_dim = 4 * nf
        self.progressive = cfg.progressive.lower()
        self.progressive_input = cfg.progressive_input.lower()
        combine = cfg.progressive_combine.lower()
        self.attn_at_level = [res in cfg.attn_resolutions for res in cfg.resolutions]

        def block(in_ch: int, out_ch: int | None = None, **kw) -> BigGANResBlock:
            return BigGANResBlock(in_ch, out_ch, temb_dim=temb_dim, dropout=cfg.dropout,
                                  fir_kernel=cfg.fir_kernel, skip_rescale=cfg.skip_rescale, **kw)

        def attention(ch: int) -> SelfAttentionBlock:
            return SelfAttentionBlock(ch, skip_rescale=cfg.skip_rescale)

        layers: list[nn.Module] = [
            GaussianFourierFeatures(nf, cfg.fourier_scale),
            nn.Linear(2 * nf, temb_dim),
            nn.Linear(temb_dim, temb_dim),
            _conv3x3(chans, nf),
        ]

        # encoder
        skip_ch = [nf]
        ch, pyramid_ch = nf, chans
        for level in range(n_levels):
            width = nf * cfg.ch_mult[level]
            for _ in range(cfg.num_res_blocks):
                layers.append(block(ch, width))
                ch = width
                if self.attn_at_level[level]:
                    layers.append(attention(ch))
                skip_ch.append(ch)
            if level != n_levels - 1:
                layers.append(block(ch, down=True))
                if self.progressive_input == "input_skip":
                    layers.append(PyramidCombine(chans, ch, combine))
                    if combine == "cat":
                        ch *= 2
                elif self.progressive_input == "residual":
                    layers.append(FIRConvDownsample(pyramid_ch, ch, cfg.fir_kernel))
                    pyramid_ch = ch
                skip_ch.append(ch)

        # bottleneck
        layers += [block(ch), attention(ch), block(ch)]

        # decoder
        for level in reversed(range(n_levels)):
            width = nf * cfg.ch_mult[level]
            for _ in range(cfg.num_res_blocks + 1):
                layers.append(block(ch + skip_ch.pop(), width))
                ch = width
            if self.attn_at_level[level]:
                layers.append(attention(ch))
            if self.progressive == "output_skip":
                layers += [_group_norm(ch), _conv3x3(ch, chans)]
            if level != 0:
                layers.append(block(ch, up=True))
        assert not skip_ch

        if self.progressive != "output_skip":
            layers += [_group_norm(ch), _conv3x3(ch, chans)]
        self.all_modules = nn.ModuleList(layers)

    # -- helpers ---------------------------------------------------------------

    def noise_embedding(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(fourier_features, temb)`` for noise levels ``sigma`` ``[B]``.

        ``fourier_features = [sin, cos](2 pi log(sigma) W)`` ``[B, 2nf]`` and
        ``temb = Linear(swish(Linear(fourier_features)))`` ``[B, 4nf]``.
        """
        feats = self.all_modules[0](torch.log(sigma))
        temb = self.all_modules[2](F.silu(self.all_modules[1](feats)))
        return feats, temb

    # -- forward ---------------------------------------------------------------

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Reference-network output for images ``x`` ``[B, C, H, W]`` at noise levels ``sigma`` ``[B]``."""
        cfg = self.config
        if tuple(x.shape[1:]) != cfg.image_shape:
            raise ValueError(
                f"this NCSN++ was built for images of shape {cfg.image_shape}, got x of shape {tuple(x.shape)}"
            )
        if sigma.shape != (x.shape[0],):
            raise ValueError(f"sigma must have shape [B] = [{x.shape[0]}], got {tuple(sigma.shape)}")

        layers: Iterator[nn.Module] = iter(self.all_modules)
        nxt = lambda: next(layers)
        feats = nxt()(torch.log(sigma))
        temb = nxt()(feats)
        temb = nxt()(F.silu(temb))
        temb_act = F.silu(temb)  # every residual block consumes swish(temb)

        if not cfg.centered:
            x = 2 * x - 1.0  # data in [0, 1] -> [-1, 1]

        n_levels = len(cfg.ch_mult)
        pyramid = x
        h = nxt()(x)
        skips = [h]
        for level in range(n_levels):
            for _ in range(cfg.num_res_blocks):
                h = nxt()(h, temb_act)
                if self.attn_at_level[level]:
                    h = nxt()(h)
                skips.append(h)
            if level != n_levels - 1:
                h = nxt()(h, temb_act)
                if self.progressive_input == "input_skip":
                    pyramid = fir_downsample_2x(pyramid, cfg.fir_kernel)
                    h = nxt()(pyramid, h)
                elif self.progressive_input == "residual":
                    pyramid = nxt()(pyramid) + h
                    pyramid = pyramid / _SQRT2 if cfg.skip_rescale else pyramid
                    h = pyramid
                skips.append(h)

        h = nxt()(h, temb_act)
        h = nxt()(h)
        h = nxt()(h, temb_act)

        out_pyramid = None
        for level in reversed(range(n_levels)):
            for _ in range(cfg.num_res_blocks + 1):
                h = nxt()(torch.cat([h, skips.pop()], dim=1), temb_act)
            if self.attn_at_level[level]:
                h = nxt()(h)
            if self.progressive == "output_skip":
                norm, conv = nxt(), nxt()
                branch = conv(F.silu(norm(h)))
                out_pyramid = branch if out_pyramid is None else fir_upsample_2x(out_pyramid, cfg.fir_kernel) + branch
            if level != 0:
                h = nxt()(h, temb_act)

        if self.progressive == "output_skip":
            h = out_pyramid
        else:
            norm, conv = nxt(), nxt()
            h = conv(F.silu(norm(h)))
        if next(layers, None) is not None:  # pragma: no cover - construction and forward disagree
            raise RuntimeError("NCSN++ forward pass did not consume every layer")

        if cfg.scale_by_sigma:
            h = h / per_sample(sigma, h)
        return h
