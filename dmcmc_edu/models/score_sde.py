"""Pretrained score_sde NCSN++ (VE, continuous) checkpoints in the ``D(x, sigma)`` contract.

The two VE models of Song et al. (2021) that Denoising MCMC (Kim & Ye, arXiv
2209.14593) samples from are distributed as score_sde ``.pth`` files
(``checkpoint_24.pth`` for CIFAR-10, ``checkpoint_48.pth`` for CelebA-HQ-256).
This module loads them into our own clean-room network
(:class:`dmcmc_edu.models.ncsnpp.NCSNpp`) and wraps the result as a denoiser.

Checkpoint layout (what score_sde's ``save_checkpoint`` writes)::

    {"optimizer": Adam.state_dict(),
     "model":     DataParallel(NCSNpp).state_dict()   # keys start with "module."
     "ema":       {"decay": float, "num_updates": int, "shadow_params": [Tensor, ...]},
     "step":      int}

``shadow_params`` carries no names: entry ``k`` belongs to the ``k``-th
parameter with ``requires_grad=True`` in ``named_parameters()`` order, i.e.
every parameter except the fixed Fourier frequencies ``all_modules.0.W``.
Inference weights are therefore: ``sigmas`` buffer and ``W`` from ``model``,
everything else from the EMA list (``use_ema=True``, the default and what
score_sde itself evaluates).

Safety: files are read with ``torch.load(weights_only=True)``, so no code
stored in a checkpoint is ever run.  Checkpoints written after a training
step hold a ``numpy.float64`` learning rate in the optimizer state; exactly the
globals needed to rebuild that scalar are allow-listed for the duration of
the load (:data:`NUMPY_SAFE_GLOBALS`), nothing else.

Public API:

* :func:`load_score_sde` -- checkpoint + config -> :class:`ScoreSDEDenoiser`
  (``D(x, sigma) = x + sigma**2 * score``, EMA weights, eval mode);
* :func:`inspect_checkpoint` / :func:`format_inspection` -- a summary of a
  checkpoint (for ``python -m dmcmc_edu inspect-checkpoint``);
* :data:`PRESETS`, :func:`resolve_config` -- the two paper configurations and
  the config-file reader;
* :func:`safe_load_checkpoint` -- the restricted ``torch.load``.
"""

from __future__ import annotations

import math
import os
import pickle
from collections import OrderedDict
from copy import deepcopy
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from dmcmc_edu.core.contract import as_sigma_batch, check_x, per_sample
from dmcmc_edu.models.files import read_json_file, read_torch_file
from dmcmc_edu.models.ncsnpp import NCSNpp, NCSNppConfig

__all__ = [
    "PRESETS",
    "NUMPY_SAFE_GLOBALS",
    "CheckpointError",
    "CheckpointMismatchError",
    "ScoreSDEDenoiser",
    "resolve_config",
    "build_ncsnpp",
    "safe_load_checkpoint",
    "load_score_sde",
    "inspect_checkpoint",
    "format_inspection",
]

# ---------------------------------------------------------------------------
# presets: the two configurations used in the paper
# ---------------------------------------------------------------------------

_NCSNPP_VE_COMMON: dict[str, Any] = {
    "name": "ncsnpp",
    "scale_by_sigma": True,
    "ema_rate": 0.999,
    "normalization": "GroupNorm",
    "nonlinearity": "swish",
    "nf": 128,
    "attn_resolutions": [16],
    "resamp_with_conv": True,
    "conditional": True,
    "fir": True,
    "fir_kernel": [1, 3, 3, 1],
    "skip_rescale": True,
    "resblock_type": "biggan",
    "progressive_combine": "sum",
    "attention_type": "ddpm",
    "embedding_type": "fourier",
    "init_scale": 0.0,
    "fourier_scale": 16,
    "conv_size": 3,
    "sigma_min": 0.01,
    "beta_min": 0.1,
    "beta_max": 20.0,
}

#: score_sde configurations (``full_config`` layout, model-relevant sections only).
PRESETS: dict[str, dict[str, Any]] = {
    # configs/ve/cifar10_ncsnpp_continuous.py (on default_cifar10_configs); checkpoint_24.pth
    "cifar10_ncsnpp_continuous": {
        "data": {"dataset": "CIFAR10", "image_size": 32, "num_channels": 3, "centered": False},
        "model": {
            **_NCSNPP_VE_COMMON,
            "ch_mult": [1, 2, 2, 2],
            "num_res_blocks": 4,
            "progressive": "none",
            "progressive_input": "residual",
            "dropout": 0.1,
            "sigma_max": 50,
            "num_scales": 1000,
        },
        "training": {"sde": "vesde", "continuous": True},
    },
    # configs/ve/celebahq_256_ncsnpp_continuous.py (on default_lsun_configs); checkpoint_48.pth
    "celebahq_256_ncsnpp_continuous": {
        "data": {"dataset": "CelebAHQ", "image_size": 256, "num_channels": 3, "centered": False},
        "model": {
            **_NCSNPP_VE_COMMON,
            "ch_mult": [1, 1, 2, 2, 2, 2, 2],
            "num_res_blocks": 2,
            "progressive": "output_skip",
            "progressive_input": "input_skip",
            "dropout": 0.0,
            "sigma_max": 348,
            "num_scales": 2000,
        },
        "training": {"sde": "vesde", "continuous": True},
    },
}


def _unflatten(dotted: Mapping[str, Any]) -> dict[str, Any]:
    """``{"model.nf": 128}`` -> ``{"model": {"nf": 128}}``."""
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def _config_from_mapping(data: Mapping[str, Any]) -> NCSNppConfig:
    if "full_config" in data:  # fixtures' config.json layout
        return NCSNppConfig.from_score_sde(data["full_config"])
    if "model" in data and "data" in data:  # a bare score_sde config
        return NCSNppConfig.from_score_sde(data)
    if isinstance(data.get("config"), Mapping) and any("." in k for k in data["config"]):  # manifest layout
        return NCSNppConfig.from_score_sde(_unflatten(data["config"]))
    raise ValueError(
        "config mapping not understood: expected a score_sde config with 'model' and 'data' sections, "
        "or a config.json with a 'full_config' entry"
    )


def resolve_config(config: Any) -> tuple[NCSNppConfig, str]:
    """Turn ``config`` into ``(NCSNppConfig, name)``.

    ``config`` may be a preset name (see :data:`PRESETS`), the path of a JSON
    file (the fixtures' ``config.json`` layout with a ``full_config`` entry, a
    bare score_sde config with ``model``/``data`` sections, or a manifest with
    dotted ``config`` keys), such a mapping, or an :class:`NCSNppConfig`.
    """
    if isinstance(config, NCSNppConfig):
        return config.validate(), "custom"
    if isinstance(config, Mapping):
        name = str(config.get("variant") or config.get("config_name") or "custom")
        return _config_from_mapping(config), name
    if isinstance(config, (str, os.PathLike)):
        if isinstance(config, str) and config in PRESETS:
            return NCSNppConfig.from_score_sde(deepcopy(PRESETS[config])), config
        path = Path(config)
        if path.is_file():
            data = read_json_file(path)
            if not isinstance(data, Mapping):
                raise ValueError(f"{path}: a config file must hold a JSON object, got {type(data).__name__}")
            name = str(data.get("variant") or data.get("config_name") or path.stem)
            return _config_from_mapping(data), name
        raise ValueError(
            f"unknown config {str(config)!r}: not a preset ({', '.join(sorted(PRESETS))}) and not an existing JSON file"
        )
    raise TypeError(f"config must be a preset name, a JSON path, a mapping or an NCSNppConfig, got {type(config)}")


def build_ncsnpp(config: Any, *, device: torch.device | str | None = None) -> NCSNpp:
    """Build a (randomly initialised) :class:`NCSNpp` for ``config``; ``device="meta"`` allocates nothing."""
    cfg, _ = resolve_config(config)
    if device is None:
        return NCSNpp(cfg)
    with torch.device(device):
        return NCSNpp(cfg)


# ---------------------------------------------------------------------------
# restricted loading
# ---------------------------------------------------------------------------


def _numpy_safe_globals() -> list:
    """The numpy globals needed to unpickle a ``numpy.float64`` scalar, and nothing more.

    A numpy scalar pickles as ``numpy._core.multiarray.scalar(dtype, raw_bytes)``
    (``numpy.core.multiarray.scalar`` when written under NumPy 1), the dtype as
    ``numpy.dtype("f8", ...)`` whose state is then set on a
    ``numpy.dtypes.Float64DType`` instance.  The raw bytes come through
    ``_codecs.encode``, which ``torch.load`` already accepts.
    """
    core = getattr(np, "_core", None)
    multiarray = core.multiarray if core is not None else np.core.multiarray
    scalar = multiarray.scalar
    allowed: list = [
        (scalar, "numpy._core.multiarray.scalar"),
        (scalar, "numpy.core.multiarray.scalar"),
        np.dtype,
    ]
    f64_dtype_class = getattr(getattr(np, "dtypes", None), "Float64DType", None)
    if f64_dtype_class is not None:
        allowed.append(f64_dtype_class)
    return allowed


#: The allow-list used by :func:`safe_load_checkpoint` (in addition to torch's weights_only defaults).
NUMPY_SAFE_GLOBALS: list = _numpy_safe_globals()


class CheckpointError(ValueError):
    """A checkpoint could not be read or does not have the score_sde layout."""


class CheckpointMismatchError(CheckpointError):
    """The checkpoint's tensors do not match the network built from the config.

    Attributes ``missing``, ``unexpected`` (key lists), ``shape_mismatches``
    (``(key, expected_shape, found_shape)``) and ``other`` (further problems,
    e.g. with the EMA list) hold the complete findings; the message lists them.
    """

    def __init__(self, message: str, *, missing=(), unexpected=(), shape_mismatches=(), other=()):
        super().__init__(message)
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.shape_mismatches = list(shape_mismatches)
        self.other = list(other)


def safe_load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with :data:`NUMPY_SAFE_GLOBALS` allowed during this call only.

    Anything else that is not a tensor or a plain container (for instance a
    pickled arbitrary object) is refused and reported as :class:`CheckpointError`.
    """
    scoped = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    try:
        if scoped is None:  # pragma: no cover - old torch: plain weights_only (refuses numpy scalars)
            return read_torch_file(path, map_location=map_location)
        with scoped(NUMPY_SAFE_GLOBALS):
            return read_torch_file(path, map_location=map_location)
    except pickle.UnpicklingError as err:  # read_torch_file's RefusedFileError (never torch's weights_only advice)
        raise CheckpointError(
            f"{os.fspath(path)}: refused by torch.load(weights_only=True) -- it contains objects other than "
            "tensors, plain containers and numpy float64 scalars; nothing from the file was executed"
        ) from err


# ---------------------------------------------------------------------------
# the denoiser adapter
# ---------------------------------------------------------------------------


class ScoreSDEDenoiser(nn.Module):
    """A score_sde VE NCSN++ network in the ``D(x, sigma)`` contract.

    ``x`` is a ``[B, C, H, W]`` batch in the model's data space (``[0, 1]``
    for the two paper models, ``data.centered = False``: do **not** centre it,
    the network does that itself); ``sigma`` is ``[B]`` (a float or 0-d
    tensor is broadcast).  The network output is the score estimate (for
    ``scale_by_sigma`` models it is already divided by sigma), so

        ``D(x, sigma) = x + sigma**2 * score(x, sigma)``.

    Inputs are cast to the network's dtype and device, and the result is
    returned in ``x``'s dtype.  Attributes: ``sigma_min``, ``sigma_max``,
    ``num_scales``, ``image_shape`` ``(C, H, W)``, ``data_range``,
    ``config`` (:class:`NCSNppConfig`), ``config_name`` and ``net``.
    """

    def __init__(self, net: NCSNpp, config_name: str = "custom"):
        super().__init__()
        self.net = net
        cfg = net.config
        self.config = cfg
        self.config_name = config_name
        self.sigma_min = float(cfg.sigma_min)
        self.sigma_max = float(cfg.sigma_max)
        self.num_scales = int(cfg.num_scales)
        self.image_shape = cfg.image_shape
        self.data_range = (-1.0, 1.0) if cfg.centered else (0.0, 1.0)

    def _prepare(self, x: torch.Tensor, sigma) -> tuple[torch.Tensor, torch.Tensor]:
        check_x(x)
        if x.ndim != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"x must have shape [B, {', '.join(map(str, self.image_shape))}], got {tuple(x.shape)}")
        sigma = as_sigma_batch(sigma, x)
        ref = self.net.all_modules[1].weight
        return x.to(dtype=ref.dtype, device=ref.device), sigma.to(dtype=ref.dtype, device=ref.device)

    def score(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """The network's score estimate ``grad_x log p_sigma(x)``, shape like ``x``."""
        xin, s = self._prepare(x, sigma)
        return self.net(xin, s).to(dtype=x.dtype, device=x.device)

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """Denoised estimate ``D(x, sigma) = x + sigma**2 * score(x, sigma)``."""
        xin, s = self._prepare(x, sigma)
        d = xin + per_sample(s, xin) ** 2 * self.net(xin, s)
        return d.to(dtype=x.dtype, device=x.device)

    def extra_repr(self) -> str:
        return (f"config={self.config_name!r}, image_shape={self.image_shape}, "
                f"sigma_min={self.sigma_min:g}, sigma_max={self.sigma_max:g}")


# ---------------------------------------------------------------------------
# checking a checkpoint against the network
# ---------------------------------------------------------------------------

_PREFIX = "module."
_MAX_LISTED = 25


def _strip_prefix(state: Mapping[str, Any]) -> tuple["OrderedDict[str, Any]", dict[str, str]]:
    """Remove the ``DataParallel`` prefix; also return new-name -> original-name."""
    out: OrderedDict[str, Any] = OrderedDict()
    original: dict[str, str] = {}
    for key, value in state.items():
        new = key[len(_PREFIX):] if isinstance(key, str) and key.startswith(_PREFIX) else key
        out[new] = value
        original[new] = key
    return out, original


def _shape(t: Any) -> Any:
    return list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__


def _compare(ckpt: Mapping[str, Any], expected: Mapping[str, torch.Tensor], trainable: list[str], use_ema: bool):
    """Compare a raw checkpoint dict with the expected state_dict; return a findings dict."""
    findings: dict[str, list] = {"missing": [], "unexpected": [], "shape_mismatches": [], "other": []}
    model_sd = ckpt.get("model") if isinstance(ckpt, Mapping) else None
    if not isinstance(model_sd, Mapping):
        findings["other"].append("the checkpoint has no 'model' state_dict (top-level keys: "
                                 f"{list(ckpt) if isinstance(ckpt, Mapping) else type(ckpt).__name__})")
        return findings, None, {}
    state, original = _strip_prefix(model_sd)
    prefix = _PREFIX if any(isinstance(k, str) and k.startswith(_PREFIX) for k in model_sd) else ""
    findings["missing"] = [prefix + k for k in expected if k not in state]
    findings["unexpected"] = [original[k] for k in state if k not in expected]
    for key, ref in expected.items():
        got = state.get(key)
        if got is not None and (not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(ref.shape)):
            findings["shape_mismatches"].append((original[key], list(ref.shape), _shape(got)))
    if use_ema:
        ema = ckpt.get("ema")
        shadow = ema.get("shadow_params") if isinstance(ema, Mapping) else None
        if not isinstance(shadow, (list, tuple)):
            findings["other"].append("no EMA weights: expected ckpt['ema']['shadow_params'] (a list of tensors); "
                                     "pass use_ema=False to use the raw training weights instead")
        else:
            if len(shadow) != len(trainable):
                findings["other"].append(
                    f"EMA has {len(shadow)} shadow params, expected {len(trainable)} (one per trainable parameter)")
            for i, (name, tensor) in enumerate(zip(trainable, shadow)):
                if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != tuple(expected[name].shape):
                    findings["shape_mismatches"].append(
                        (f"ema.shadow_params[{i}] (-> {name})", list(expected[name].shape), _shape(tensor)))
    return findings, state, original


def _check_sigmas(state: Mapping[str, Any], cfg: NCSNppConfig) -> list[str]:
    """The stored geometric sigma grid must agree with the config's sigma_max / sigma_min."""
    sig = state.get("sigmas")
    if not isinstance(sig, torch.Tensor) or sig.ndim != 1 or sig.numel() < 2:
        return []
    hi, lo = float(sig[0]), float(sig[-1])
    if not (math.isclose(hi, cfg.sigma_max, rel_tol=1e-5) and math.isclose(lo, cfg.sigma_min, rel_tol=1e-5)):
        return [f"the checkpoint's sigmas buffer runs from {hi:g} to {lo:g}, but the config says "
                f"sigma_max={cfg.sigma_max:g}, sigma_min={cfg.sigma_min:g}"]
    return []


def _listing(items: list, fmt) -> str:
    shown = [fmt(i) for i in items[:_MAX_LISTED]]
    more = f"\n      ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
    return "\n      " + "\n      ".join(shown) + more


def _mismatch_message(path: Any, name: str, findings: Mapping[str, list]) -> str:
    lines = [f"checkpoint {os.fspath(path)!r} does not match the NCSN++ config {name!r}:"]
    if findings["missing"]:
        lines.append(f"  missing keys ({len(findings['missing'])}):" + _listing(findings["missing"], str))
    if findings["unexpected"]:
        lines.append(f"  unexpected keys ({len(findings['unexpected'])}):" + _listing(findings["unexpected"], str))
    if findings["shape_mismatches"]:
        lines.append(f"  shape mismatches ({len(findings['shape_mismatches'])}):" + _listing(
            findings["shape_mismatches"], lambda m: f"{m[0]}: expected {m[1]}, checkpoint has {m[2]}"))
    for msg in findings["other"]:
        lines.append(f"  {msg}")
    return "\n".join(lines)


def _has_problems(findings: Mapping[str, list]) -> bool:
    return any(findings[k] for k in ("missing", "unexpected", "shape_mismatches", "other"))


# ---------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------


def load_score_sde(
    checkpoint_path: str | os.PathLike,
    config: Any,
    *,
    use_ema: bool = True,
    map_location: Any = "cpu",
    dtype: torch.dtype | None = None,
) -> ScoreSDEDenoiser:
    """Load a score_sde NCSN++ (VE, continuous) checkpoint as a ``D(x, sigma)`` denoiser.

    Args:
        checkpoint_path: a score_sde ``.pth`` file (``model``/``ema``/``optimizer``/``step``).
        config: a preset name (``"cifar10_ncsnpp_continuous"``,
            ``"celebahq_256_ncsnpp_continuous"``), the path of a JSON config
            (fixtures' ``config.json`` layout, its ``full_config``), a mapping,
            or an :class:`NCSNppConfig` -- see :func:`resolve_config`.
        use_ema: take the trainable weights from the EMA ``shadow_params``
            (default, as score_sde evaluates); ``False`` uses the raw
            training weights in ``model``.
        map_location: passed to ``torch.load``; the model ends up there.
        dtype: optionally cast the parameters (e.g. ``torch.float64``); the
            ``sigmas`` buffer stays float64.

    Returns:
        A :class:`ScoreSDEDenoiser` in eval mode.

    Raises:
        CheckpointError: the file holds non-tensor objects (refused by
            ``weights_only``) or lacks the score_sde layout.
        CheckpointMismatchError: missing / unexpected keys, shape
            mismatches, a wrong number of EMA tensors, or a sigma grid that
            disagrees with the config -- all listed in the message.
    """
    cfg, name = resolve_config(config)
    with torch.device("meta"):
        net = NCSNpp(cfg)
    expected = net.state_dict()
    trainable = [n for n, p in net.named_parameters() if p.requires_grad]

    ckpt = safe_load_checkpoint(checkpoint_path, map_location=map_location)
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"{os.fspath(checkpoint_path)!r} is not a score_sde checkpoint (a {type(ckpt).__name__})")
    findings, state, _ = _compare(ckpt, expected, trainable, use_ema)
    if state is not None:
        findings["other"] += _check_sigmas(state, cfg)
    if _has_problems(findings):
        raise CheckpointMismatchError(_mismatch_message(checkpoint_path, name, findings), **findings)

    weights: OrderedDict[str, torch.Tensor] = OrderedDict((k, state[k]) for k in expected)
    if use_ema:
        for k, tensor in zip(trainable, ckpt["ema"]["shadow_params"]):
            weights[k] = tensor
    for k, ref in expected.items():
        weights[k] = weights[k].detach().to(dtype=ref.dtype)
    net.load_state_dict(weights, strict=True, assign=True)
    del ckpt, state, weights

    if dtype is not None:
        sigmas = net.sigmas
        net.to(dtype=dtype)
        net.sigmas = sigmas
    return ScoreSDEDenoiser(net, config_name=name).eval()


# ---------------------------------------------------------------------------
# inspection
# ---------------------------------------------------------------------------


def inspect_checkpoint(path: str | os.PathLike, config: Any = None) -> dict[str, Any]:
    """Summarise a score_sde checkpoint and (if ``config`` is given) check it against that config.

    Returns a JSON-friendly dict with: ``path``, ``file_size_bytes``,
    ``top_level_keys``, ``step``, ``ema_decay``, ``ema_num_updates``,
    ``num_shadow_params``, ``ema_parameter_count``, ``num_model_entries``,
    ``checkpoint_parameter_count`` (all ``model`` tensors except buffers),
    ``sigmas`` (grid length and range), ``optimizer`` (learning rate, number
    of parameters and of parameters with Adam state), and with a config:
    ``config_name``, ``expected`` (state_dict entries, total / trainable
    parameter counts, number of EMA tensors), ``missing_keys``,
    ``unexpected_keys``, ``shape_mismatches``, ``problems`` and ``compatible``.
    """
    ckpt = safe_load_checkpoint(path, map_location="cpu")
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"{os.fspath(path)!r} is not a score_sde checkpoint (a {type(ckpt).__name__})")
    info: dict[str, Any] = {
        "path": os.fspath(path),
        "file_size_bytes": os.path.getsize(path),
        "top_level_keys": [str(k) for k in ckpt],
        "step": int(ckpt["step"]) if isinstance(ckpt.get("step"), (int, float)) else ckpt.get("step"),
    }

    ema = ckpt.get("ema") if isinstance(ckpt.get("ema"), Mapping) else {}
    shadow = ema.get("shadow_params") if isinstance(ema.get("shadow_params"), (list, tuple)) else None
    info["ema_decay"] = float(ema["decay"]) if "decay" in ema else None
    info["ema_num_updates"] = int(ema["num_updates"]) if "num_updates" in ema else None
    info["num_shadow_params"] = len(shadow) if shadow is not None else None
    info["ema_parameter_count"] = (
        sum(int(t.numel()) for t in shadow if isinstance(t, torch.Tensor)) if shadow is not None else None)

    model_sd = ckpt.get("model") if isinstance(ckpt.get("model"), Mapping) else {}
    state, _ = _strip_prefix(model_sd)
    info["num_model_entries"] = len(state)
    buffers = {"sigmas"}
    info["checkpoint_parameter_count"] = sum(
        int(t.numel()) for k, t in state.items() if isinstance(t, torch.Tensor) and k not in buffers)
    sig = state.get("sigmas")
    if isinstance(sig, torch.Tensor) and sig.ndim == 1 and sig.numel() > 0:
        info["sigmas"] = {"num_scales": int(sig.numel()), "max": float(sig.max()), "min": float(sig.min()),
                          "dtype": str(sig.dtype).replace("torch.", "")}
    else:
        info["sigmas"] = None

    opt = ckpt.get("optimizer") if isinstance(ckpt.get("optimizer"), Mapping) else None
    if opt is not None:
        groups = opt.get("param_groups") or []
        lrs = [float(g["lr"]) for g in groups if isinstance(g, Mapping) and "lr" in g]
        info["optimizer"] = {
            "num_param_groups": len(groups),
            "lr": lrs[0] if len(lrs) == 1 else lrs,
            "num_params": sum(len(g.get("params", [])) for g in groups if isinstance(g, Mapping)),
            "num_params_with_state": len(opt.get("state") or {}),
        }
    else:
        info["optimizer"] = None

    if config is not None:
        cfg, name = resolve_config(config)
        with torch.device("meta"):
            net = NCSNpp(cfg)
        expected = net.state_dict()
        trainable = [n for n, p in net.named_parameters() if p.requires_grad]
        findings, state_checked, _ = _compare(ckpt, expected, trainable, use_ema=shadow is not None)
        problems = list(findings["other"])
        if state_checked is not None:
            problems += _check_sigmas(state_checked, cfg)
        info["config_name"] = name
        info["expected"] = {
            "state_dict_entries": len(expected),
            "total_parameter_count": sum(p.numel() for p in net.parameters()),
            "trainable_parameter_count": sum(p.numel() for p in net.parameters() if p.requires_grad),
            "num_shadow_params": len(trainable),
            "image_shape": list(cfg.image_shape),
            "sigma_min": cfg.sigma_min,
            "sigma_max": cfg.sigma_max,
        }
        info["missing_keys"] = findings["missing"]
        info["unexpected_keys"] = findings["unexpected"]
        info["shape_mismatches"] = findings["shape_mismatches"]
        info["problems"] = problems
        info["compatible"] = not (findings["missing"] or findings["unexpected"]
                                  or findings["shape_mismatches"] or problems)
    return info


def format_inspection(info: Mapping[str, Any]) -> str:
    """Human-readable text for a dict returned by :func:`inspect_checkpoint`."""

    def count(v: Any) -> str:
        return f"{v:,}" if isinstance(v, int) else str(v)

    size = info.get("file_size_bytes")
    lines = [f"checkpoint:   {info.get('path')}" + (f"  ({size / 2**20:.1f} MiB)" if isinstance(size, int) else "")]
    if "config_name" in info:
        lines.append(f"config:       {info['config_name']}")
    lines.append(f"keys:         {', '.join(info.get('top_level_keys', []))}")
    lines.append(f"step:         {info.get('step')}")
    lines.append(f"model:        {count(info.get('num_model_entries'))} state_dict entries, "
                 f"{count(info.get('checkpoint_parameter_count'))} parameters")
    if info.get("num_shadow_params") is not None:
        lines.append(f"EMA:          decay {info.get('ema_decay')}, {count(info.get('ema_num_updates'))} updates, "
                     f"{count(info.get('num_shadow_params'))} shadow tensors, "
                     f"{count(info.get('ema_parameter_count'))} parameters")
    else:
        lines.append("EMA:          none")
    sig = info.get("sigmas")
    if sig:
        lines.append(f"sigmas:       {sig['num_scales']} levels from {sig['max']:g} "
                     f"down to {sig['min']:g} ({sig['dtype']})")
    opt = info.get("optimizer")
    if opt:
        lines.append(f"optimizer:    lr {opt['lr']}, {opt['num_param_groups']} group(s), "
                     f"state for {opt['num_params_with_state']} of {opt['num_params']} parameters")
    if "expected" in info:
        exp = info["expected"]
        lines.append(f"config wants: {count(exp['state_dict_entries'])} entries, "
                     f"{count(exp['total_parameter_count'])} parameters "
                     f"({count(exp['trainable_parameter_count'])} trainable, {exp['num_shadow_params']} EMA tensors), "
                     f"images {tuple(exp['image_shape'])}, sigma in [{exp['sigma_min']:g}, {exp['sigma_max']:g}]")
        lines.append("compatible:   " + ("yes" if info.get("compatible") else "NO"))
        for label, key in (("missing", "missing_keys"), ("unexpected", "unexpected_keys")):
            items = info.get(key) or []
            if items:
                lines.append(f"  {label} keys ({len(items)}):" + _listing(list(items), str))
        mism = info.get("shape_mismatches") or []
        if mism:
            lines.append(f"  shape mismatches ({len(mism)}):" + _listing(
                list(mism), lambda m: f"{m[0]}: expected {m[1]}, checkpoint has {m[2]}"))
        for msg in info.get("problems") or []:
            lines.append(f"  {msg}")
    return "\n".join(lines)
