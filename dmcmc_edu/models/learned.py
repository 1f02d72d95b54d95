"""A learned denoiser for the toy targets: an MLP with EDM preconditioning, its inference wrapper and file format.

The exact mixture denoiser is the oracle of the toolkit; a *trained* one shows
what estimation error does to the samplers (``python -m dmcmc_edu ladder
--learned``).  The model follows Karras et al. (2022, EDM), section 5 and
table 1:

* preconditioning ``D(x, s) = c_skip(s) x + c_out(s) F(c_in(s) x, c_noise(s))``
  with the factors of :mod:`dmcmc_edu.models.preconditioning` (``sigma_data``:
  the data's standard deviation);
* ``F`` is an MLP (SiLU) on fixed Fourier features of ``c_in x`` and of
  ``c_noise``, so that a small network resolves modes much narrower than the
  data's extent.

Training (the EDM loss, noise levels drawn log-uniformly over the target's
``[sigma_min, sigma_max]``, :func:`~dmcmc_edu.training.denoiser.quick_denoiser`
with a fixed seed) lives in :mod:`dmcmc_edu.training.denoiser`.
:func:`denoiser_error` measures a denoiser against the exact one.
"""

from __future__ import annotations

import torch
from torch import nn

from dmcmc_edu.models.files import read_torch_file
from dmcmc_edu.models.preconditioning import EDMScalings, edm_scalings

__all__ = ["MLPDenoiser", "FrozenDenoiser", "denoiser_error", "save_denoiser", "load_denoiser", "FORMAT"]

FORMAT = "dmcmc_edu.learned_denoiser/1"


class MLPDenoiser(nn.Module):
    """EDM-preconditioned MLP denoiser ``D(x, sigma)`` for vectors ``x`` of shape ``[B, dim]``, sigma ``[B]``.

    Parameters
    ----------
    dim : int
        Data dimension.
    sigma_data : float
        Standard deviation of the data (one number, EDM's ``sigma_data``).
    hidden, depth : int
        Width and number of hidden layers of ``F``.
    frequencies : sequence of float
        Angular frequencies of the Fourier features of ``c_in x``.
    noise_frequencies : sequence of float
        Angular frequencies of the Fourier features of ``c_noise``.

    The network runs in float32; ``c_skip x`` is added in the input's dtype, so
    a float64 caller keeps its precision where ``c_skip`` is about 1.
    """

    def __init__(self, dim: int, sigma_data: float, hidden: int = 256, depth: int = 4,
                 frequencies=(1.0, 2.0, 4.0, 8.0, 16.0), noise_frequencies=(1.0, 2.0, 4.0, 8.0, 16.0)):
        super().__init__()
        if not (isinstance(dim, int) and dim >= 1 and sigma_data > 0 and depth >= 1 and hidden >= 1):
            raise ValueError("need dim >= 1, sigma_data > 0, depth >= 1, hidden >= 1")
        self.config = dict(dim=dim, sigma_data=float(sigma_data), hidden=hidden, depth=depth,
                           frequencies=[float(f) for f in frequencies],
                           noise_frequencies=[float(f) for f in noise_frequencies])
        self.dim, self.sigma_data = dim, float(sigma_data)
        self.register_buffer("freq", torch.tensor(self.config["frequencies"]), persistent=False)
        self.register_buffer("nfreq", torch.tensor(self.config["noise_frequencies"]), persistent=False)
        width = dim * (1 + 2 * len(frequencies)) + 1 + 2 * len(noise_frequencies)
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*layers)

    def precond(self, sigma: torch.Tensor) -> EDMScalings:
        """``(c_skip, c_out, c_in, c_noise)`` for per-sample ``sigma`` [B] (each [B, 1])."""
        return edm_scalings(sigma.reshape(-1, 1), self.sigma_data)

    def raw(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The network ``F(c_in x, c_noise)`` (float32), shape [B, dim]."""
        _, _, c_in, c_noise = self.precond(sigma.to(torch.float32))
        u = c_in * x.to(torch.float32)
        a = (u[:, :, None] * self.freq).flatten(1)
        b = c_noise * self.nfreq
        feats = torch.cat([u, torch.sin(a), torch.cos(a), c_noise, torch.sin(b), torch.cos(b)], dim=1)
        return self.net(feats)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The denoiser of the contract: ``x`` [B, dim], ``sigma`` [B] > 0; returns x's shape and dtype."""
        shape, dtype = x.shape, x.dtype
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.dim:
            raise ValueError(f"x has {x.shape[1]} values per sample, the model expects {self.dim}")
        c_skip, c_out, _, _ = self.precond(sigma.to(dtype))
        out = c_skip * x + c_out * self.raw(x, sigma).to(dtype)
        return out.reshape(shape)


class FrozenDenoiser:
    """Inference wrapper: calls the network under ``torch.no_grad`` (what samplers should hold)."""

    def __init__(self, net: MLPDenoiser):
        self.net = net.eval()

    def __call__(self, x, sigma):
        with torch.no_grad():
            return self.net(x, sigma)


@torch.no_grad()
def denoiser_error(model, mixture, sigmas, n: int = 2000, generator: torch.Generator | None = None) -> list[dict]:
    """Estimation error of a denoiser against the exact one, per noise level.

    For each sigma: ``x = x0 + sigma z`` with ``x0`` exact; returns ``{"sigma", "mse", "mse_exact_to_x0"}``:
    the mean over samples of ``|D(x) - D*(x)|^2 / d`` and, for scale, of ``|D*(x) - x0|^2 / d`` (the
    irreducible error of the best denoiser).
    """
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    out = []
    for s in sigmas:
        x0 = mixture.sample(n, g)
        x = x0 + float(s) * torch.randn(x0.shape, generator=g, dtype=x0.dtype)
        sig = torch.full((n,), float(s), dtype=x0.dtype)
        exact = mixture.denoise(x, sig)
        est = model(x, sig)
        out.append({"sigma": float(s), "mse": float(((est - exact) ** 2).mean()),
                    "mse_exact_to_x0": float(((exact - x0) ** 2).mean())})
    return out


def save_denoiser(net: MLPDenoiser, path, info: dict | None = None) -> None:
    """Save weights, architecture and training info in one file (loadable with ``weights_only=True``)."""
    torch.save({"format": FORMAT, "config": net.config, "state_dict": net.state_dict(), "info": info or {}}, path)


def load_denoiser(path) -> tuple[MLPDenoiser, dict]:
    """Load a file of :func:`save_denoiser`: returns ``(net, info)``."""
    d = read_torch_file(path, map_location="cpu")
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        found = d.get("format") if isinstance(d, dict) else type(d).__name__
        raise ValueError(f"{path} is not a learned denoiser (format {found!r})")
    net = MLPDenoiser(**d["config"])
    net.load_state_dict(d["state_dict"])
    return net.eval(), d["info"]
