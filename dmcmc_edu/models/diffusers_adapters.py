"""Hugging Face ``diffusers`` models in the ``D(x, sigma)`` contract (optional extra ``diffusers``).

Two families of ``diffusers.UNet2DModel`` checkpoints are adapted:

**VE NCSN++ (score models; ``google/ncsnpp-celebahq-256`` and kin).**  These
are ``UNet2DModel`` with ``time_embedding_type="fourier"``.  What diffusers'
code does (read from ``models/unets/unet_2d.py``, ``ScoreSdeVePipeline`` and
``ScoreSdeVeScheduler``, diffusers 0.42):

* the ``timestep`` argument *is* the noise level sigma (the pipeline passes
  ``scheduler.sigmas[i]``); the Fourier embedding takes ``log(sigma)``;
* with ``center_input_sample=True`` the model maps ``x -> 2x - 1`` itself, so
  its data live in ``[0, 1]`` (the pipeline clamps its output to ``[0, 1]``);
* the network's raw output is divided by sigma inside ``forward`` (the
  ``if time_embedding_type == "fourier": sample = sample / timesteps`` line),
  and the scheduler treats the returned tensor as the score: its predictor is
  ``x <- x + (sigma^2 - sigma_next^2) * model_output (+ noise)`` and its
  corrector ``x <- x + step * model_output (+ noise)``.

So the model output **is** the score ``grad_x log p_sigma(x)`` (not sigma
times the score), and :class:`DiffusersVEDenoiser` returns
``D(x, sigma) = x + sigma^2 * unet(x, sigma)``.  ``tests/test_diffusers_adapters.py``
checks this numerically against ``ScoreSdeVeScheduler.step_pred``.

**VP DDPM epsilon models (``google/ddpm-cifar10-32`` and kin).**  A DDPM
noises ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``.  Dividing by
``sqrt(abar_t)`` gives the VE form ``x = x_t / sqrt(abar_t) = x0 + sigma eps``
with ``sigma_t = sqrt((1 - abar_t) / abar_t)``.  :class:`DiffusersVPDenoiser`
therefore evaluates, for a VE state ``x`` at noise level ``sigma``::

    x_vp = x / sqrt(1 + sigma^2)          # = sqrt(abar) x
    t    = t(sigma)                        # continuous timestep, see below
    eps  = unet(x_vp, t)
    D    = x - sigma * eps                 # Tweedie / the DDPM's x0-prediction

``t(sigma)``: the discrete schedule gives ``sigma_t`` at the integer
timesteps ``0 .. T-1`` (increasing in t).  By default (``timestep_mode=
"interp"``) ``t`` is the *continuous* timestep obtained by linear
interpolation in ``log sigma`` between the two neighbouring integer
timesteps; the UNet's sinusoidal embedding accepts fractional timesteps.
``timestep_mode="nearest"`` rounds to the integer timestep nearest in
``log sigma`` instead.  Outside ``[sigma_0, sigma_{T-1}]`` the timestep is
clamped to the end of the schedule while the true sigma is kept in the input
scaling and in ``D`` (the network was never trained there: keep
``sigma_min >= adapter.sigma_min`` and ``sigma_max <= adapter.sigma_max``).
``prediction_type`` ``"sample"`` and ``"v_prediction"`` models are converted
the same way (``D = output``, resp. ``D = abar x - sqrt(1 - abar) v`` with
``abar = 1 / (1 + sigma^2)``).  Learned-variance models (twice the
output channels) use the first half of the output, as diffusers' schedulers do.

**Data range.**  Every adapter states its data space in ``data_range``:

* VE NCSN++: ``(0, 1)`` if ``center_input_sample`` is true (score_sde's
  ``data.centered=False``), else ``(-1, 1)``;
* VP DDPM: the DDPM's own space is ``(-1, 1)`` (``data_range=(-1, 1)``, the
  default; sigma is measured in those units, ``sigma_min ~ 0.01``,
  ``sigma_max ~ 157`` for the linear 1e-4..0.02 schedule).  With
  ``data_range=(0, 1)`` the adapter works in ``[0, 1]`` like the score_sde
  models: ``D01(x, s) = (D(2x - 1, 2s) + 1) / 2`` and the sigma range halves.
  Use ``(0, 1)`` to share the paper's ``[0, 1]`` image pipeline
  (:func:`dmcmc_edu.evaluation.images.save_images` clamps to ``[0, 1]``).

Neither adapter clips its prediction (diffusers' DDPM scheduler clips x0 to
``[-1, 1]`` by default; the DMCMC samplers do not).

Loading: :func:`load_diffusers_ve` / :func:`load_diffusers_vp` take a hub id
or a local folder (the model files at the top, or a pipeline folder with
``unet/`` and ``scheduler/`` sub-folders as ``save_pretrained`` of a pipeline
writes them).  The hub needs network access; offline, pass a local folder.
Parameters are frozen (``requires_grad=False``) and the modules are in eval mode.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from dmcmc_edu.core.contract import as_sigma_batch, check_x, per_sample

__all__ = [
    "DIFFUSERS_EXTRA_HINT",
    "require_diffusers",
    "DiffusersVEDenoiser",
    "DiffusersVPDenoiser",
    "vp_sigmas",
    "load_diffusers_ve",
    "load_diffusers_vp",
]

DIFFUSERS_EXTRA_HINT = ("install the optional extra 'diffusers': pip install 'dmcmc_edu[diffusers]' "
                        "(or: pip install diffusers)")


def require_diffusers():
    """Import ``diffusers`` lazily; a clear ``ImportError`` naming the extra when it is missing."""
    try:
        import diffusers
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise ImportError(f"dmcmc_edu.models.diffusers_adapters needs the 'diffusers' package: "
                          f"{DIFFUSERS_EXTRA_HINT}") from err
    return diffusers


def _image_shape(unet) -> tuple[int, int, int]:
    size = unet.config.sample_size
    if isinstance(size, (list, tuple)):
        h, w = int(size[0]), int(size[1])
    else:
        h = w = int(size)
    return (int(unet.config.in_channels), h, w)


def _freeze(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()


def _ref_param(unet) -> torch.Tensor:
    return next(unet.parameters())


class _UNetAdapter(nn.Module):
    """Shared input checks and dtype/device handling of the two adapters."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet
        self.image_shape = _image_shape(unet)

    def _check(self, x: torch.Tensor, sigma) -> tuple[torch.Tensor, torch.Tensor]:
        check_x(x)
        if x.ndim != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"x must have shape [B, {', '.join(map(str, self.image_shape))}], got {tuple(x.shape)}")
        return x, as_sigma_batch(sigma, x)

    def _unet_out(self, x_in: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        ref = _ref_param(self.unet)
        out = self.unet(x_in.to(device=ref.device, dtype=ref.dtype), timestep.to(device=ref.device)).sample
        c = x_in.shape[1]
        if out.shape[1] == 2 * c:  # learned variance: (prediction, variance) along channels
            out = out[:, :c]
        return out


class DiffusersVEDenoiser(_UNetAdapter):
    """A diffusers VE score ``UNet2DModel`` (``time_embedding_type="fourier"``) as ``D(x, sigma)``.

    ``D(x, sigma) = x + sigma^2 * unet(x, sigma).sample`` -- the model output
    is the score (see the module docstring).  ``x`` is ``[B, C, H, W]`` in the
    model's data space (``data_range``), ``sigma`` is ``[B]``; the result has
    x's dtype and device.  Attributes: ``sigma_min``, ``sigma_max`` (from the
    scheduler config when one was found, else ``None``), ``image_shape``,
    ``data_range``, ``unet``.
    """

    def __init__(self, unet, *, sigma_min: float | None = None, sigma_max: float | None = None,
                 name: str = "custom"):
        super().__init__(unet)
        kind = getattr(unet.config, "time_embedding_type", None)
        if kind != "fourier":
            raise ValueError(
                f"load_diffusers_ve expects a VE score model (UNet2DModel with time_embedding_type='fourier'), "
                f"got time_embedding_type={kind!r}; for a DDPM (VP, epsilon) model use load_diffusers_vp")
        self.sigma_min = None if sigma_min is None else float(sigma_min)
        self.sigma_max = None if sigma_max is None else float(sigma_max)
        self.data_range = (0.0, 1.0) if unet.config.center_input_sample else (-1.0, 1.0)
        self.name = name

    def score(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """The model's score estimate ``unet(x, sigma).sample``, shape and dtype like ``x``."""
        x, sigma = self._check(x, sigma)
        return self._unet_out(x, sigma.to(torch.float32)).to(dtype=x.dtype, device=x.device)

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """``D(x, sigma) = x + sigma^2 * score(x, sigma)``."""
        x, sigma = self._check(x, sigma)
        score = self._unet_out(x, sigma.to(torch.float32)).to(dtype=x.dtype, device=x.device)
        return x + per_sample(sigma, x) ** 2 * score

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, image_shape={self.image_shape}, data_range={self.data_range}, "
                f"sigma_min={self.sigma_min}, sigma_max={self.sigma_max}")


def vp_sigmas(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """VE noise levels of a VP schedule: ``sigma_t = sqrt((1 - abar_t) / abar_t)`` (float64)."""
    ab = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
    return ((1.0 - ab) / ab).sqrt()


_DATA_RANGES = {(-1.0, 1.0): (1.0, 0.0), (0.0, 1.0): (2.0, -1.0)}  # data_range -> (scale a, shift b): x_model = a x + b


class DiffusersVPDenoiser(_UNetAdapter):
    """A diffusers DDPM (VP) ``UNet2DModel`` as a VE denoiser ``D(x, sigma)`` (see the module docstring).

    Parameters
    ----------
    unet : diffusers.UNet2DModel
        The noise (or x0 / v) prediction network, called as ``unet(x_vp, t)``.
    alphas_cumprod : tensor [T]
        The DDPM's ``abar_t`` at the integer timesteps ``0 .. T-1``.
    prediction_type : {"epsilon", "sample", "v_prediction"}
        What the network predicts (diffusers' scheduler config key).
    timestep_mode : {"interp", "nearest"}
        Continuous timestep by linear interpolation in log sigma (default) or
        the nearest integer timestep.
    data_range : (-1, 1) or (0, 1)
        The data space of ``x`` and ``sigma`` (the DDPM's own is ``(-1, 1)``).
    """

    def __init__(self, unet, alphas_cumprod, *, prediction_type: str = "epsilon", timestep_mode: str = "interp",
                 data_range: Sequence[float] = (-1.0, 1.0), name: str = "custom"):
        super().__init__(unet)
        if prediction_type not in ("epsilon", "sample", "v_prediction"):
            raise ValueError(f"prediction_type must be epsilon | sample | v_prediction, got {prediction_type!r}")
        if timestep_mode not in ("interp", "nearest"):
            raise ValueError(f"timestep_mode must be 'interp' or 'nearest', got {timestep_mode!r}")
        dr = tuple(float(v) for v in data_range)
        if dr not in _DATA_RANGES:
            raise ValueError(f"data_range must be (-1, 1) (the DDPM's own) or (0, 1), got {data_range!r}")
        sig = vp_sigmas(alphas_cumprod)
        if sig.ndim != 1 or sig.numel() < 2 or not torch.isfinite(sig).all() or (sig <= 0).any():
            raise ValueError("alphas_cumprod must be a 1-D schedule with values in (0, 1)")
        if not (sig[1:] > sig[:-1]).all():
            raise ValueError("the VP schedule's sigma_t = sqrt((1 - abar_t) / abar_t) must increase strictly with t")
        # kept as plain float64 CPU tensors (not buffers) so that .to(dtype) of the module never rounds them
        self.alphas_cumprod = torch.as_tensor(alphas_cumprod, dtype=torch.float64).detach().cpu().clone()
        self.log_sigmas = sig.log().cpu()
        self.prediction_type = prediction_type
        self.timestep_mode = timestep_mode
        self.data_range = dr
        self._scale, self._shift = _DATA_RANGES[dr]
        self.name = name

    # ---- the schedule
    @property
    def num_train_timesteps(self) -> int:
        return int(self.log_sigmas.numel())

    @property
    def sigmas(self) -> torch.Tensor:
        """``sigma_t`` at the integer timesteps, in this adapter's data units (float64, increasing)."""
        return self.log_sigmas.exp() / self._scale

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        """Continuous (or nearest, per ``timestep_mode``) DDPM timestep of each sigma (data units), float64, clamped."""
        sigma = torch.as_tensor(sigma)
        log_s = torch.log(sigma.detach().to(device="cpu", dtype=torch.float64) * self._scale)
        ls = self.log_sigmas
        T = ls.numel()
        if self.timestep_mode == "nearest":
            return (log_s[..., None] - ls).abs().argmin(dim=-1).to(torch.float64)
        hi = torch.searchsorted(ls, log_s.contiguous()).clamp(1, T - 1)
        lo = hi - 1
        w = (log_s - ls[lo]) / (ls[hi] - ls[lo])
        return (lo.to(torch.float64) + w).clamp(0.0, T - 1.0)

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        """The noise level (data units) at a continuous timestep: log sigma linear between integer steps."""
        t = torch.as_tensor(t).detach().to(device="cpu", dtype=torch.float64).clamp(0, self.num_train_timesteps - 1)
        lo = t.floor().long().clamp(max=self.num_train_timesteps - 2)
        w = t - lo.to(torch.float64)
        ls = self.log_sigmas
        return torch.exp((1 - w) * ls[lo] + w * ls[lo + 1]) / self._scale

    # ---- the denoiser
    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """``D(x, sigma)`` in ``data_range`` units (see the class and module docstrings)."""
        x, sigma = self._check(x, sigma)
        a, b = self._scale, self._shift
        xm = a * x + b if a != 1.0 else x  # into the DDPM's [-1, 1] space
        s = (sigma * a).to(torch.float64)  # sigma in the DDPM's units
        c_in = (1.0 + s**2).rsqrt()  # sqrt(abar) for this sigma
        bc = lambda v: per_sample(v.to(dtype=x.dtype), x)  # noqa: E731
        t = self.sigma_to_t(s / a)
        out = self._unet_out(xm * bc(c_in), t.to(torch.float32)).to(dtype=x.dtype, device=x.device)
        if self.prediction_type == "epsilon":
            d = xm - bc(s) * out
        elif self.prediction_type == "sample":
            d = out
        else:  # v = sqrt(abar) eps - sqrt(1 - abar) x0  =>  x0 = sqrt(abar) x_vp - sqrt(1 - abar) v
            d = bc(c_in**2) * xm - bc(s * c_in) * out
        return (d - b) / a if a != 1.0 else d

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, image_shape={self.image_shape}, data_range={self.data_range}, "
                f"prediction_type={self.prediction_type!r}, timestep_mode={self.timestep_mode!r}, "
                f"T={self.num_train_timesteps}, sigma_min={self.sigma_min:.4g}, sigma_max={self.sigma_max:.4g}")


# ----------------------------------------------------------------------------- loading


def _is_local(path_or_id) -> bool:
    return isinstance(path_or_id, os.PathLike) or os.path.isdir(str(path_or_id))


def _subfolders(path_or_id, subfolder: str | None, component: str, config_name: str) -> list[str | None]:
    """Where to look: the given sub-folder, else the top level then ``component/`` (pipeline layout)."""
    if subfolder is not None:
        return [subfolder]
    if _is_local(path_or_id):
        root = Path(path_or_id)
        found = [None] if (root / config_name).is_file() else []
        found += [component] if (root / component / config_name).is_file() else []
        return found
    return [None, component]


def _load_unet(path_or_id, subfolder, torch_dtype, **kwargs):
    diffusers = require_diffusers()
    places = _subfolders(path_or_id, subfolder, "unet", "config.json")
    if not places:
        raise FileNotFoundError(
            f"{str(path_or_id)!r} holds no diffusers UNet2DModel: expected config.json (and the weights) at the top "
            "level or in a unet/ sub-folder (what save_pretrained writes)")
    if importlib.util.find_spec("accelerate") is None:  # without accelerate diffusers warns and falls back anyway
        kwargs.setdefault("low_cpu_mem_usage", False)
    errors = []
    for sub in places:
        try:
            unet = diffusers.UNet2DModel.from_pretrained(path_or_id, subfolder=sub, torch_dtype=torch_dtype, **kwargs)
            return unet, sub
        except (OSError, ValueError) as err:
            errors.append(f"  {('top level' if sub is None else sub + '/')}: {type(err).__name__}: {err}")
    hint = "" if _is_local(path_or_id) else (
        " (a hub id needs network access; offline, download the model once and pass its local folder)")
    raise OSError(f"could not load a UNet2DModel from {str(path_or_id)!r}{hint}:\n" + "\n".join(errors))


def _load_scheduler_config(path_or_id, subfolder, unet_sub, **kwargs) -> dict | None:
    diffusers = require_diffusers()
    if subfolder is not None:
        places = [subfolder]
    else:
        places = _subfolders(path_or_id, None, "scheduler", "scheduler_config.json")
        if not _is_local(path_or_id) and unet_sub is None:
            places = [None, "scheduler"]
    for sub in places:
        try:
            return dict(diffusers.DDPMScheduler.load_config(path_or_id, subfolder=sub, **kwargs))
        except (OSError, ValueError):
            continue
    return None


def load_diffusers_ve(path_or_id: str | os.PathLike, *, subfolder: str | None = None, device: Any = "cpu",
                      torch_dtype: torch.dtype | None = None, sigma_min: float | None = None,
                      sigma_max: float | None = None, **from_pretrained_kwargs) -> DiffusersVEDenoiser:
    """Load a diffusers VE NCSN++ ``UNet2DModel`` (e.g. ``google/ncsnpp-celebahq-256``) as ``D(x, sigma)``.

    ``path_or_id`` is a hub id or a local folder (model files at the top
    level or in ``unet/``).  ``sigma_min``/``sigma_max`` default to the
    ``ScoreSdeVeScheduler`` config found beside the model (top level or
    ``scheduler/``), else stay ``None``.  Extra keyword arguments go to
    ``UNet2DModel.from_pretrained`` (e.g. ``revision=``, ``local_files_only=True``).
    """
    unet, sub = _load_unet(path_or_id, subfolder, torch_dtype, **from_pretrained_kwargs)
    sched = _load_scheduler_config(path_or_id, None, sub, **_hub_kwargs(from_pretrained_kwargs))
    if sched is not None:
        sigma_min = sched.get("sigma_min", None) if sigma_min is None else sigma_min
        sigma_max = sched.get("sigma_max", None) if sigma_max is None else sigma_max
    model = DiffusersVEDenoiser(_freeze(unet), sigma_min=sigma_min, sigma_max=sigma_max, name=str(path_or_id))
    return model.to(device).eval()


def _hub_kwargs(kwargs: dict) -> dict:
    return {k: v for k, v in kwargs.items() if k in ("revision", "local_files_only", "cache_dir", "token")}


def load_diffusers_vp(path_or_id: str | os.PathLike, *, subfolder: str | None = None, scheduler=None,
                      alphas_cumprod: torch.Tensor | None = None, prediction_type: str | None = None,
                      timestep_mode: str = "interp", data_range: Sequence[float] = (-1.0, 1.0), device: Any = "cpu",
                      torch_dtype: torch.dtype | None = None, **from_pretrained_kwargs) -> DiffusersVPDenoiser:
    """Load a diffusers DDPM ``UNet2DModel`` (e.g. ``google/ddpm-cifar10-32``) as a VE ``D(x, sigma)``.

    The noise schedule comes from, in this order: ``alphas_cumprod``, a
    ``scheduler`` object (anything with ``alphas_cumprod``, e.g. a
    ``DDPMScheduler``), or the scheduler config saved beside the model
    (``scheduler_config.json`` at the top level or in ``scheduler/``), rebuilt
    with ``DDPMScheduler.from_config`` (any DDPM-family scheduler config
    works: only the beta schedule is used).  ``prediction_type`` defaults to
    the scheduler's (``"epsilon"`` if absent).  See
    :class:`DiffusersVPDenoiser` for ``timestep_mode`` and ``data_range``.
    """
    diffusers = require_diffusers()
    unet, sub = _load_unet(path_or_id, subfolder, torch_dtype, **from_pretrained_kwargs)
    if getattr(unet.config, "time_embedding_type", None) == "fourier":
        raise ValueError(f"{str(path_or_id)!r} is a VE score model (Fourier noise embedding); use load_diffusers_ve")
    cfg: dict = {}
    if alphas_cumprod is None:
        if scheduler is None:
            cfg = _load_scheduler_config(path_or_id, None, sub, **_hub_kwargs(from_pretrained_kwargs)) or {}
            if not cfg:
                raise FileNotFoundError(
                    f"no scheduler config beside {str(path_or_id)!r} (scheduler_config.json at the top level or in "
                    "scheduler/): pass scheduler=DDPMScheduler(...) or alphas_cumprod= explicitly")
            scheduler = diffusers.DDPMScheduler.from_config(cfg)
        else:
            cfg = dict(getattr(scheduler, "config", {}) or {})
        alphas_cumprod = scheduler.alphas_cumprod
    ptype = prediction_type or cfg.get("prediction_type") or "epsilon"
    model = DiffusersVPDenoiser(_freeze(unet), alphas_cumprod, prediction_type=ptype, timestep_mode=timestep_mode,
                                data_range=data_range, name=str(path_or_id))
    return model.to(device).eval()
