"""A learned denoiser for the toy targets: an MLP trained by denoising score matching, EDM-style.

The exact mixture denoiser is the oracle of the toolkit; a *trained* one shows
what estimation error does to the samplers (``python -m dmcmc_edu ladder
--learned``).  The model follows Karras et al. (2022, EDM), section 5 and
table 1, with one change of the noise distribution:

* preconditioning ``D(x, s) = c_skip(s) x + c_out(s) F(c_in(s) x, c_noise(s))``
  with ``c_skip = sd^2 / (s^2 + sd^2)``, ``c_out = s sd / sqrt(s^2 + sd^2)``,
  ``c_in = 1 / sqrt(s^2 + sd^2)``, ``c_noise = log(s) / 4`` (``sd``: the data's
  standard deviation);
* loss ``lambda(s) |D(x0 + s n, s) - x0|^2`` with ``lambda = 1 / c_out^2``,
  i.e. a plain regression of ``F`` onto ``(x0 - c_skip x) / c_out``;
* noise levels drawn **log-uniformly** over ``[sigma_min, sigma_max]`` of the
  target (EDM's log-normal is tuned for images; the toys' samplers visit four
  decades of sigma evenly in log).

``F`` is an MLP (SiLU) on fixed Fourier features of ``c_in x`` and of
``c_noise``, so that a small network resolves modes much narrower than the
data's extent.  :func:`quick_denoiser` trains one with a fixed seed.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from torch import nn

__all__ = ["MLPDenoiser", "FrozenDenoiser", "edm_loss", "train_denoiser", "quick_denoiser", "denoiser_error",
           "save_denoiser", "load_denoiser", "load_or_train_denoiser", "FORMAT"]

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

    def precond(self, sigma: torch.Tensor):
        """``(c_skip, c_out, c_in, c_noise)`` for per-sample ``sigma`` [B] (each [B, 1])."""
        s = sigma.reshape(-1, 1)
        sd2 = self.sigma_data**2
        c_skip = sd2 / (s**2 + sd2)
        c_out = s * self.sigma_data / torch.sqrt(s**2 + sd2)
        c_in = 1.0 / torch.sqrt(s**2 + sd2)
        return c_skip, c_out, c_in, torch.log(s) / 4.0

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


def edm_loss(net: MLPDenoiser, x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """EDM loss: ``lambda(s) |D(x0 + s n, s) - x0|^2`` with ``lambda = 1/c_out^2``, averaged over batch and dims."""
    x0 = x0.to(torch.float32)
    s = sigma.to(torch.float32)
    x = x0 + s[:, None] * noise.to(torch.float32)
    c_skip, c_out, _, _ = net.precond(s)
    target = (x0 - c_skip * x) / c_out
    return ((net.raw(x, s) - target) ** 2).mean()


def train_denoiser(net: MLPDenoiser, sampler, *, sigma_min: float, sigma_max: float, steps: int = 4000,
                   batch_size: int = 1024, lr: float = 2e-3, generator: torch.Generator | None = None,
                   progress: bool = False) -> dict:
    """Train ``net`` by denoising score matching: clean ``x0 = sampler(batch, generator)``, sigma log-uniform.

    Adam with a cosine-annealed rate.  Returns ``{"loss": [per step], "steps", "time_s"}``.  Same generator
    seed and same initial weights give the same trained weights.
    """
    from tqdm import tqdm

    g = generator if generator is not None else torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    lo, hi = math.log(sigma_min), math.log(sigma_max)
    hist, t0 = [], time.perf_counter()
    net.train()
    for _ in tqdm(range(steps), desc="denoiser", disable=not progress):
        x0 = sampler(batch_size, g)
        sigma = torch.exp(lo + (hi - lo) * torch.rand(batch_size, generator=g, dtype=torch.float64))
        noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
        loss = edm_loss(net, x0, sigma, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        hist.append(loss.item())
    net.eval()
    return {"loss": hist, "steps": steps, "time_s": time.perf_counter() - t0}


def _sigma_data(mixture) -> float:
    """One standard deviation of the data: sqrt(trace(Cov) / d)."""
    _, cov = mixture.moments(0.0)
    return math.sqrt(float(torch.diagonal(cov).mean()))


def quick_denoiser(mixture, *, steps: int = 4000, seed: int = 0, hidden: int = 256, depth: int = 4,
                   batch_size: int = 1024, progress: bool = False):
    """Train an :class:`MLPDenoiser` on a mixture with fixed seeds; returns ``(net, info)``.

    ``info``: the settings, the mean loss over the last 10 % of steps, training time.  On the ring, 4000 steps
    take about a minute on one CPU thread.
    """
    torch.manual_seed(seed)  # initial weights
    net = MLPDenoiser(mixture.d, _sigma_data(mixture), hidden=hidden, depth=depth)
    smin, smax = mixture.default_sigma_min(), mixture.default_sigma_max()
    hist = train_denoiser(net, mixture.sample, sigma_min=smin, sigma_max=smax, steps=steps, batch_size=batch_size,
                          generator=torch.Generator().manual_seed(seed), progress=progress)
    tail = hist["loss"][-max(1, steps // 10):]
    info = {"steps": steps, "seed": seed, "d": mixture.d, "hidden": hidden, "depth": depth, "batch_size": batch_size,
            "sigma_min": smin, "sigma_max": smax, "sigma_data": net.sigma_data,
            "final_loss": sum(tail) / len(tail), "train_seconds": hist["time_s"]}
    return net, info


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
    d = torch.load(path, map_location="cpu", weights_only=True)
    if d.get("format") != FORMAT:
        raise ValueError(f"{path} is not a learned denoiser (format {d.get('format')!r})")
    net = MLPDenoiser(**d["config"])
    net.load_state_dict(d["state_dict"])
    return net.eval(), d["info"]


def load_or_train_denoiser(mixture, path, *, fast: bool = False, seed: int = 0, progress: bool = False):
    """The ladder's learned model: load ``path`` if it holds one trained with these settings, else train and save.

    Returns ``(FrozenDenoiser, info)``; ``fast`` trains 300 steps instead of 4000.
    """
    from dmcmc_edu.runs import atomic_write

    path = Path(path)
    steps = 300 if fast else 4000
    if path.exists():
        net, info = load_denoiser(path)
        same = (info.get("steps"), info.get("seed"), info.get("d"), info.get("sigma_max"))
        if same == (steps, seed, mixture.d, mixture.default_sigma_max()):
            return FrozenDenoiser(net), dict(info, source="loaded")
    net, info = quick_denoiser(mixture, steps=steps, seed=seed, progress=progress)
    atomic_write(path, lambda tmp: save_denoiser(net, tmp, info))
    return FrozenDenoiser(net), dict(info, source="trained")
