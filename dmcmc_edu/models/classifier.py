"""The noise-level classifier ``q(i | x)`` over a grid of noise levels: networks, wrapper and file format.

Denoising Langevin Gibbs (Kim & Ye, arXiv 2209.14593) updates the noise level
of a chain with a classifier that, given a noisy sample ``x``, predicts which
level ``sigma_i`` of a fixed grid (index 0 = sigma_max, strictly decreasing)
produced it.  The paper's settings, used as defaults in the toolkit:

* trained with cross-entropy on ``x = x0 + sigma_y z``, ``y`` uniform over the
  grid indices, fresh noise ``z`` every batch (the *training joint*,
  :func:`noisy_batch`; the loop is
  :func:`dmcmc_edu.training.classifier.train_noise_level_classifier`);
* Adam, learning rate 1e-3, batch size 100 (100-200 epochs on CIFAR10);
* network: 4 conv3x3 layers ``in -> 32 -> 64 -> 128 -> 256``, each followed by
  ReLU and 2x2 average pooling, then one linear layer to the 1000 levels
  (:class:`SimpleCNN`; :class:`SimpleCNN256` for 256 px images).

With the uniform prior over the grid, the Bayes-optimal classifier *is* the
exact posterior ``p(sigma_i | x)``;
:func:`dmcmc_edu.evaluation.calibration.kl_to_exact` measures how far a
trained classifier is from it on an analytic mixture.

The wrapper :class:`NoiseLevelClassifier` holds a network and its grid,
validates inputs, counts its evaluations (``calls``, ``rows``) so that an NFE
ledger can report classifier cost, and saves/loads itself in one file
(:data:`CHECKPOINT_FORMAT`).
"""

from __future__ import annotations

import math
import os
from typing import Callable, Mapping

import torch
from torch import nn

from dmcmc_edu.core.contract import per_sample
from dmcmc_edu.core.schedules import check_grid
from dmcmc_edu.models.files import read_torch_file
from dmcmc_edu.runs import atomic_write

__all__ = [
    "MLPClassifier",
    "SimpleCNN",
    "SimpleCNN256",
    "ARCHITECTURES",
    "CHECKPOINT_FORMAT",
    "NoiseLevelClassifier",
    "Sampler",
    "default_generator",
    "draw_clean",
    "noisy_batch",
]

CHECKPOINT_FORMAT = "dmcmc_edu.noise_level_classifier/1"
_CHECKPOINT_KEYS = ("format", "arch", "arch_kwargs", "grid", "state_dict", "config")

#: a source of clean samples: ``sampler(n, generator) -> [n, ...]`` (e.g. ``GaussianMixture.sample``)
Sampler = Callable[[int, torch.Generator], torch.Tensor]


# --------------------------------------------------------------------------- networks


class MLPClassifier(nn.Module):
    """MLP over vectors ``[B, dim]`` returning logits ``[B, n_levels]``.

    ``depth`` hidden layers of width ``hidden`` with SiLU activations, on top
    of fixed input features (our choice; the paper only uses the CNNs below):

    * ``x`` itself;
    * ``log r`` with ``r = ||x|| / sqrt(dim)`` (if ``log_norm``): the noise
      level shows mostly in the scale of ``x``, which spans orders of
      magnitude over a grid such as 0.01..50;
    * ``sin(f x_j), cos(f x_j)`` for each ``f`` in ``frequencies`` and each
      coordinate: fixed multi-scale Fourier features.  Without them an MLP on
      raw 2-D inputs learns fine angular structure (modes on a ring) very
      slowly -- with the paper's optimiser we measured KL(exact || q) of about
      0.12 nats on an 8-mode ring with raw inputs against about 0.01 with
      these features, at 2000 steps.  Set ``frequencies=()`` to disable them.

    Parameters
    ----------
    dim : int
        Data dimension ``d``.
    n_levels : int
        Number of grid levels ``L`` (output size).
    hidden : int
        Width of the hidden layers.
    depth : int
        Number of hidden layers (>= 1).
    frequencies : sequence of float
        Angular frequencies of the Fourier features (default ``2^k``,
        ``k = -2..3``: wavelengths from about 25 down to about 0.8 data units).
    log_norm : bool
        Append the ``log r`` feature.
    """

    arch_name = "mlp"

    def __init__(self, dim: int, n_levels: int, hidden: int = 256, depth: int = 3,
                 frequencies=(0.25, 0.5, 1.0, 2.0, 4.0, 8.0), log_norm: bool = True):
        super().__init__()
        for name, v, lo in (("dim", dim, 1), ("n_levels", n_levels, 2), ("hidden", hidden, 1), ("depth", depth, 1)):
            if not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        frequencies = [float(f) for f in frequencies]
        if not all(math.isfinite(f) and f > 0 for f in frequencies):
            raise ValueError(f"frequencies must be finite and > 0, got {frequencies}")
        self.arch_kwargs = dict(dim=dim, n_levels=n_levels, hidden=hidden, depth=depth,
                                frequencies=frequencies, log_norm=bool(log_norm))
        self.dim = dim
        self.log_norm = bool(log_norm)
        self.register_buffer("frequencies", torch.tensor(frequencies, dtype=torch.get_default_dtype()),
                             persistent=False)
        layers: list[nn.Module] = []
        width = dim * (1 + 2 * len(frequencies)) + int(self.log_norm)
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, n_levels))
        self.layers = nn.Sequential(*layers)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input sample, ``(dim,)``."""
        return (self.dim,)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The network's input features for ``x`` of shape ``[B, dim]``: ``[x, log r, sin(f x), cos(f x)]``."""
        feats = [x]
        if self.log_norm:
            feats.append(0.5 * torch.log(x.pow(2).mean(dim=1, keepdim=True) + 1e-12))
        if self.frequencies.numel():
            a = (x[:, :, None] * self.frequencies.to(x.dtype)).flatten(1)
            feats += [torch.sin(a), torch.cos(a)]
        return torch.cat(feats, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, n_levels]`` for ``x`` of shape ``[B, dim]``."""
        return self.layers(self.features(x))


class _ConvClassifier(nn.Module):
    """Four conv3x3 (padding 1) layers ``in -> 32 -> 64 -> 128 -> 256``, each ReLU + AvgPool, then Linear.

    Parameters of the subclasses: ``in_channels`` (image channels), ``n_levels``
    (grid levels; the paper: 1000), ``image_size`` (height = width of the input).
    """

    channels = (32, 64, 128, 256)

    def __init__(self, in_channels: int, n_levels: int, image_size: int, pool_strides: tuple[int, ...]):
        super().__init__()
        for name, v, lo in (("in_channels", in_channels, 1), ("n_levels", n_levels, 2), ("image_size", image_size, 1)):
            if not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        self.in_channels = in_channels
        self.image_size = image_size
        self.arch_kwargs = dict(in_channels=in_channels, n_levels=n_levels, image_size=image_size)
        layers: list[nn.Module] = []
        c_in, size = in_channels, image_size
        for c_out, stride in zip(self.channels, pool_strides):
            layers += [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1), nn.ReLU(),
                       nn.AvgPool2d(kernel_size=2, stride=stride)]
            size = (size - 2) // stride + 1 if size >= 2 else 0  # AvgPool2d output size, no padding
            if size < 1:
                raise ValueError(
                    f"image_size {image_size} is too small for {type(self).__name__}: "
                    "the feature map vanishes before the last pooling layer"
                )
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.final_size = size
        self.flatten_features = c_in * size * size
        self.head = nn.Linear(self.flatten_features, n_levels)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input image, ``(in_channels, image_size, image_size)``."""
        return (self.in_channels, self.image_size, self.image_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, n_levels]`` for images ``[B, C, H, W]``."""
        return self.head(self.features(x).flatten(1))


class SimpleCNN(_ConvClassifier):
    """The paper's noise-level classifier for small images (CIFAR10, 32 px).

    4 conv3x3 layers (padding 1) ``in -> 32 -> 64 -> 128 -> 256``, each
    followed by ReLU and ``AvgPool2d(2)``; a 32 px input ends at 2x2, so the
    flattened size is 1024 and the head is ``Linear(1024, n_levels)``.  The
    flattened size is computed from ``image_size`` (1x28x28 MNIST: 28 -> 14 ->
    7 -> 3 -> 1, flatten 256); it is stored as ``flatten_features``.
    """

    arch_name = "simplecnn"

    def __init__(self, in_channels: int = 3, n_levels: int = 1000, image_size: int = 32):
        super().__init__(in_channels, n_levels, image_size, pool_strides=(2, 2, 2, 2))


class SimpleCNN256(_ConvClassifier):
    """The paper's noise-level classifier for 256 px images (CelebA-HQ-256).

    As :class:`SimpleCNN`, but the first three pools are
    ``AvgPool2d(kernel_size=2, stride=4)``: 256 -> 64 -> 16 -> 4 -> 2, so the
    flattened size is again 1024.
    """

    arch_name = "simplecnn256"

    def __init__(self, in_channels: int = 3, n_levels: int = 1000, image_size: int = 256):
        super().__init__(in_channels, n_levels, image_size, pool_strides=(4, 4, 4, 2))


ARCHITECTURES: dict[str, type[nn.Module]] = {
    "mlp": MLPClassifier,
    "simplecnn": SimpleCNN,
    "simplecnn256": SimpleCNN256,
}


# --------------------------------------------------------------------------- wrapper


def _check_config(config, path: str = "config") -> None:
    """Require plain data (str/int/float/bool/None, lists and str-keyed dicts) so ``weights_only`` loading works."""
    if config is None or isinstance(config, (str, int, float, bool)):
        return
    if isinstance(config, (list, tuple)):
        for i, v in enumerate(config):
            _check_config(v, f"{path}[{i}]")
        return
    if isinstance(config, dict):
        for k, v in config.items():
            if not isinstance(k, str):
                raise TypeError(f"{path} keys must be strings, got {k!r}")
            _check_config(v, f"{path}[{k!r}]")
        return
    raise TypeError(
        f"{path} must hold plain data (str, int, float, bool, None, lists, dicts); got {type(config).__name__}"
    )


class NoiseLevelClassifier(nn.Module):
    """A network ``q(i | x)`` over a grid of noise levels, with its grid.

    Parameters
    ----------
    net : nn.Module
        Maps ``[B, *input_shape]`` to logits ``[B, len(grid)]``.  It should
        expose ``input_shape`` (all networks of this module do); otherwise pass
        ``input_shape``.
    grid : tensor [L]
        Noise levels, strictly decreasing (index 0 = sigma_max), e.g.
        :func:`dmcmc_edu.core.schedules.noise_level_grid`.  Kept as a buffer.
    config : dict, optional
        Plain-data metadata saved with the classifier (training settings, data
        set name, ...).
    input_shape : tuple of int, optional
        Shape of one sample, if ``net`` has no ``input_shape`` attribute.

    Notes
    -----
    Every call of :meth:`forward` (hence :meth:`logits`, :meth:`log_probs`,
    :meth:`predict_index`, :meth:`predict_sigma`, :meth:`sample_index`) adds 1
    to ``calls`` and the batch size to ``rows``; :meth:`reset_counts` zeroes
    them.  Training (:func:`dmcmc_edu.training.classifier.train_noise_level_classifier`)
    and the diagnostics of :mod:`dmcmc_edu.evaluation.calibration` call
    :meth:`logits_uncounted`, which bypasses the counters: they are not
    sampling cost.  Inputs are cast to the network's parameter dtype.
    """

    def __init__(self, net: nn.Module, grid: torch.Tensor, config: Mapping | None = None,
                 *, input_shape: tuple[int, ...] | None = None):
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
        grid = torch.as_tensor(grid)
        if not torch.is_floating_point(grid):
            grid = grid.double()
        grid = check_grid(grid.detach().clone())
        config = dict(config) if config is not None else {}
        _check_config(config)
        shape = input_shape if input_shape is not None else getattr(net, "input_shape", None)
        if shape is None:
            raise ValueError(f"{type(net).__name__} has no `input_shape`; pass input_shape=(...) explicitly")
        self.net = net
        self.register_buffer("grid", grid)
        self.config = config
        self._input_shape = tuple(int(s) for s in shape)
        self.calls = 0
        self.rows = 0
        # probe once with a dummy input so a mismatched head fails here, not mid-sampling
        with torch.no_grad():
            out = self.net(torch.zeros(1, *self._input_shape, dtype=self._dtype(), device=self._device()))
        if out.shape != (1, self.n_levels):
            raise ValueError(
                f"the network outputs {tuple(out.shape[1:])} logits per sample but the grid has "
                f"{self.n_levels} levels (len(grid)); the net's output size must equal len(grid)"
            )

    # ---- properties
    @property
    def n_levels(self) -> int:
        """Number of grid levels ``L``."""
        return int(self.grid.numel())

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input sample (without the batch dimension)."""
        return self._input_shape

    def _param(self) -> torch.Tensor | None:
        return next(iter(self.net.parameters()), None)

    def _dtype(self) -> torch.dtype:
        p = self._param()
        return p.dtype if p is not None else torch.get_default_dtype()

    def _device(self) -> torch.device:
        p = self._param()
        return p.device if p is not None else self.grid.device

    @property
    def device(self) -> torch.device:
        """Device of the network's parameters (where training and diagnostics send their batches)."""
        return self._device()

    # ---- evaluation
    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Check ``x`` against ``input_shape`` and cast it to the network's dtype."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim != len(self._input_shape) + 1 or tuple(x.shape[1:]) != self._input_shape:
            raise ValueError(
                f"x has shape {tuple(x.shape)}, but this classifier expects [B, *input_shape] = "
                f"[B, {', '.join(map(str, self._input_shape))}] (input_shape {self._input_shape})"
            )
        if not torch.is_floating_point(x):
            raise TypeError(f"x must have a floating dtype, got {x.dtype}")
        return x.to(self._dtype())

    def logits_uncounted(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, L]`` without touching the counters (training and diagnostics are not sampling cost)."""
        return self.net(self._prepare(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, L]`` (counted: ``calls += 1``, ``rows += B``)."""
        out = self.logits_uncounted(x)
        self.calls += 1
        self.rows += int(x.shape[0])
        return out

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, L]`` of ``q(i | x)``."""
        return self(x)

    def log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """Log-probabilities ``log q(i | x)``, shape ``[B, L]``."""
        return torch.log_softmax(self(x), dim=-1)

    def predict_index(self, x: torch.Tensor) -> torch.Tensor:
        """Argmax level index ``[B]`` (what the authors' DLG code uses)."""
        return self(x).argmax(dim=-1)

    def predict_sigma(self, x: torch.Tensor) -> torch.Tensor:
        """Noise level of the argmax index, ``grid[argmax]``, shape ``[B]`` in x's dtype."""
        idx = self.predict_index(x)
        return self.grid[idx].to(device=x.device, dtype=x.dtype)

    def sample_index(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw one level index per sample from ``q(. | x)``, shape ``[B]`` (long, on x's device).

        The draw is made with ``torch.multinomial`` on the generator's device
        and then moved to x's device.
        """
        probs = torch.softmax(self(x).double(), dim=-1)
        if generator is not None:
            probs = probs.to(generator.device)
        idx = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        return idx.to(x.device)

    def reset_counts(self) -> None:
        """Zero the evaluation counters ``calls`` and ``rows``."""
        self.calls = 0
        self.rows = 0

    def extra_repr(self) -> str:
        g = self.grid
        return (f"n_levels={self.n_levels}, sigma_max={g[0].item():.4g}, sigma_min={g[-1].item():.4g}, "
                f"input_shape={self._input_shape}")

    # ---- persistence
    def save(self, path: str | os.PathLike) -> None:
        """Save to one file, atomically (:func:`dmcmc_edu.runs.atomic_write`; the folder is created if needed).

        The file is a dict ``{"format", "arch", "arch_kwargs", "grid",
        "state_dict", "config"}`` written with ``torch.save``; the network must
        be one of :data:`ARCHITECTURES`.
        """
        arch = getattr(self.net, "arch_name", None)
        if arch not in ARCHITECTURES or not isinstance(self.net, ARCHITECTURES[arch]):
            raise ValueError(
                f"cannot save a {type(self.net).__name__}: only the registered architectures "
                f"{sorted(ARCHITECTURES)} can be rebuilt on load"
            )
        payload = {
            "format": CHECKPOINT_FORMAT,
            "arch": arch,
            "arch_kwargs": dict(self.net.arch_kwargs),
            "grid": self.grid.detach().cpu().clone(),
            "state_dict": {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()},
            "config": dict(self.config),
        }
        path = os.path.abspath(os.fspath(path))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write(path, lambda tmp: torch.save(payload, tmp))

    @classmethod
    def load(cls, path: str | os.PathLike, map_location="cpu") -> "NoiseLevelClassifier":
        """Load a classifier written by :meth:`save` (``torch.load(weights_only=True)``).

        Raises ``ValueError`` naming what is wrong: a wrong format string,
        missing or unexpected top-level keys, an unknown architecture, or a
        state dict whose keys/shapes do not match the rebuilt network.
        """
        payload = read_torch_file(os.fspath(path), map_location=map_location)
        if not isinstance(payload, dict):
            raise ValueError(f"{path}: expected a dict checkpoint ({CHECKPOINT_FORMAT}), got {type(payload).__name__}")
        missing = [k for k in _CHECKPOINT_KEYS if k not in payload]
        unexpected = sorted(str(k) for k in payload if k not in _CHECKPOINT_KEYS)
        if missing or unexpected:
            raise ValueError(
                f"{path} is not a {CHECKPOINT_FORMAT} checkpoint: missing keys {missing}, "
                f"unexpected keys {unexpected} (expected exactly {list(_CHECKPOINT_KEYS)})"
            )
        if payload["format"] != CHECKPOINT_FORMAT:
            raise ValueError(f"{path}: format {payload['format']!r}, expected {CHECKPOINT_FORMAT!r}")
        arch = payload["arch"]
        if arch not in ARCHITECTURES:
            raise ValueError(f"{path}: unknown architecture {arch!r}; known: {sorted(ARCHITECTURES)}")
        try:
            net = ARCHITECTURES[arch](**payload["arch_kwargs"])
        except TypeError as e:
            raise ValueError(f"{path}: arch_kwargs {payload['arch_kwargs']!r} do not fit {arch!r}: {e}") from e
        state = payload["state_dict"]
        expected = net.state_dict()
        missing_sd = [k for k in expected if k not in state]
        unexpected_sd = [k for k in state if k not in expected]
        bad_shape = [f"{k}: file {tuple(state[k].shape)} vs net {tuple(v.shape)}"
                     for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
        if missing_sd or unexpected_sd or bad_shape:
            raise ValueError(
                f"{path}: state_dict does not match the {arch!r} network: missing keys {missing_sd}, "
                f"unexpected keys {unexpected_sd}, shape mismatches {bad_shape}"
            )
        net.load_state_dict(state)
        clf = cls(net, payload["grid"], payload["config"])
        if isinstance(map_location, (str, torch.device)):
            clf = clf.to(map_location)
        return clf


# --------------------------------------------------------------------------- the training joint


def default_generator(generator: torch.Generator | None) -> torch.Generator:
    """The given generator, or a CPU generator seeded from torch's global RNG (so ``torch.manual_seed`` applies)."""
    if generator is not None:
        return generator
    return torch.Generator().manual_seed(int(torch.randint(0, 2**62, ()).item()))


def noisy_batch(x0: torch.Tensor, grid: torch.Tensor, generator: torch.Generator):
    """One draw of the training joint for clean ``x0``: ``y ~ U{0..L-1}``, ``x = x0 + grid[y] z``; returns ``(x, y)``.

    The level indices, then the noise, are drawn from ``generator`` on its device.
    """
    b = x0.shape[0]
    dev = generator.device
    dtype = x0.dtype if torch.is_floating_point(x0) else torch.get_default_dtype()
    y = torch.randint(0, grid.numel(), (b,), generator=generator, device=dev)
    z = torch.randn(x0.shape, generator=generator, device=dev, dtype=dtype)
    sigma = grid.to(device=dev, dtype=dtype)[y]
    x = x0.to(device=dev, dtype=dtype) + per_sample(sigma, x0) * z
    return x, y


def draw_clean(data: torch.Tensor | Sampler, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` clean samples from a tensor (uniform, with replacement if ``n > N``) or a sampler."""
    if isinstance(data, torch.Tensor):
        N = data.shape[0]
        if n <= N:
            idx = torch.randperm(N, generator=generator, device=generator.device)[:n]
        else:
            idx = torch.randint(0, N, (n,), generator=generator, device=generator.device)
        return data[idx.to(data.device)]
    if callable(data):
        return data(n, generator)
    raise TypeError(f"data must be a tensor [N, ...] or a callable sampler(n, generator), got {type(data).__name__}")
