"""A fast exact evaluator of a Gaussian mixture through each component's eigenbasis.

:class:`SpectralMixture` wraps a :class:`~dmcmc_edu.targets.mixture.GaussianMixture`
and gives the same log-densities, denoiser, score and noise-level posterior
(equal to 1e-9 in the tests), 10-150x faster on large batches and whole
noise-level grids: each component's covariance is diagonalised once, after
which adding ``sigma^2 I`` only shifts eigenvalues.  Build one with
:meth:`GaussianMixture.spectral() <dmcmc_edu.targets.mixture.GaussianMixture.spectral>`.
"""

from __future__ import annotations

import math

import torch

from dmcmc_edu.core.contract import per_sample

__all__ = ["SpectralMixture"]

_LOG_2PI = math.log(2.0 * math.pi)


class SpectralMixture:
    """A :class:`~dmcmc_edu.targets.mixture.GaussianMixture` evaluated in each component's eigenbasis (exact, fast).

    Component ``k`` is ``Sigma_k = V_k diag(lam_k) V_k^T + c_k (I - V_k V_k^T)``:
    ``m`` orthonormal directions ``V_k`` ([d, m]) with their variances
    ``lam_k`` and one variance ``c_k`` on the orthogonal complement.  A full
    covariance uses all ``m = d`` eigenvectors; a low-rank-plus-isotropic one
    (``F F^T + c I``, the ``lowrank`` preset) uses the ``r`` left singular
    vectors of ``F``.  Then for any per-sample ``s^2`` the Mahalanobis terms,
    log-determinants, the denoiser and ``p(sigma_i | x)`` on a whole grid
    follow from the projections ``V_k^T (x - mu_k)`` computed once, with
    matrix products instead of per-component solves.

    The object is a denoiser of the contract (``D(x, sigma)``) with
    ``log_prob``, ``score``, ``denoise`` and ``sigma_log_posterior``; any
    other attribute (``assign``, ``sample``, ``K``, ``d``, ...) is the wrapped
    mixture's.
    """

    def __init__(self, mixture):
        self.mixture = mixture
        dt, dev = mixture.dtype, mixture.device
        d = mixture.d
        mu = mixture.means.to(torch.float64)
        if mixture.is_low_rank and bool((mixture.diagonal == mixture.diagonal[:, :1]).all()) and mixture.rank < d:
            F = mixture.factors.to(torch.float64)
            U, S, _ = torch.linalg.svd(F, full_matrices=False)  # [K, d, r], [K, r]
            c = mixture.diagonal[:, 0].to(torch.float64)
            V, lam = U, S**2 + c[:, None]
        else:
            lam, V = torch.linalg.eigh(mixture.covariances.to(torch.float64))
            lam = lam.clamp(min=0.0)
            c = torch.ones(mixture.K, dtype=torch.float64)  # unused: no complement (m = d)
        self.m = V.shape[-1]
        self.rest = d - self.m  # dimension of the isotropic complement
        self._V = V.to(dev, dt)  # [K, d, m]
        self._Vflat = V.permute(1, 0, 2).reshape(d, -1).to(dev, dt)  # [d, K m]
        self._lam = lam.to(dev, dt)  # [K, m]
        self._c = c.to(dev, dt)  # [K]
        self._mu = mu.to(dev, dt)
        self._muV = torch.einsum("kd,kdm->km", mu, V).to(dev, dt)  # [K, m]
        self._mu2 = (mu**2).sum(1).to(dev, dt)
        self._logw = torch.log(mixture.weights.to(torch.float64)).to(dev, dt)

    def __getattr__(self, name):
        if name == "mixture":
            raise AttributeError(name)
        return getattr(self.mixture, name)

    # -- the projections, once per x
    def _project(self, x: torch.Tensor):
        x = x.reshape(x.shape[0], -1).to(self._mu.dtype)
        K, m = self._lam.shape
        P = (x @ self._Vflat).reshape(-1, K, m) - self._muV[None]  # V_k^T (x - mu_k), [B, K, m]
        r2 = None
        if self.rest:
            dist2 = (x**2).sum(1, keepdim=True) - 2.0 * x @ self._mu.T + self._mu2[None]  # |x - mu_k|^2
            r2 = (dist2 - (P**2).sum(-1)).clamp(min=0.0)  # energy on the isotropic complement, [B, K]
        return x, P, r2

    def _clp(self, P, r2, s2):
        """log w_k + log N(x; mu_k, Sigma_k + s2 I) for s2 of shape [B] (or [B, 1, L] with P2 [B, K, 1, m])."""
        lam_s = self._lam[None] + s2[:, None, None]  # [B, K, m]
        maha = (P**2 / lam_s).sum(-1)
        logdet = torch.log(lam_s).sum(-1)
        if self.rest:
            c_s = self._c[None] + s2[:, None]
            maha = maha + r2 / c_s
            logdet = logdet + self.rest * torch.log(c_s)
        return self._logw[None] - 0.5 * (self.mixture.d * _LOG_2PI + logdet + maha)

    def _sigma(self, sigma, B):
        s = torch.as_tensor(sigma, dtype=self._mu.dtype, device=self._mu.device)
        return s.expand(B) if s.ndim == 0 else s

    def log_prob(self, x, sigma=0.0):
        """``log p_sigma(x)``, shape [B]."""
        x, P, r2 = self._project(x)
        return torch.logsumexp(self._clp(P, r2, self._sigma(sigma, x.shape[0]) ** 2), dim=-1)

    def denoise(self, x, sigma):
        """``E[x_0 | x_sigma = x]`` (sigma > 0), the shape of ``x``."""
        shape = x.shape
        x, P, r2 = self._project(x)
        s2 = self._sigma(sigma, x.shape[0]) ** 2
        r = torch.softmax(self._clp(P, r2, s2), dim=-1)  # [B, K]
        lam_s = self._lam[None] + s2[:, None, None]
        if self.rest:
            a = self._c[None] / (self._c[None] + s2[:, None])  # shrink factor on the complement, [B, K]
            coef = self._lam[None] / lam_s - a[..., None]
            ra = r * a
            out = r @ self._mu - ra @ self._mu + ra.sum(1, keepdim=True) * x
        else:
            coef = self._lam[None] / lam_s
            out = r @ self._mu
        out = out + (r[..., None] * coef * P).reshape(x.shape[0], -1) @ self._Vflat.T
        return out.reshape(shape)

    def __call__(self, x, sigma):
        return self.denoise(x, sigma)

    def score(self, x, sigma):
        """``grad_x log p_sigma(x) = (D(x, sigma) - x) / sigma^2``."""
        s = self._sigma(sigma, x.shape[0])
        return (self.denoise(x, s) - x) / per_sample(s, x) ** 2

    def sigma_log_posterior(self, x, grid, log_prior=None, max_elements: int = 2**23):
        """``log p(sigma_i | x)`` over a grid ([B, L]), uniform prior unless ``log_prior`` is given."""
        x, P, r2 = self._project(x)
        g = torch.as_tensor(grid, dtype=self._mu.dtype, device=self._mu.device)
        L = g.numel()
        B, K, m = P.shape
        g2 = g**2
        rows = max(1, max_elements // max(1, K * L * max(m, 1)))
        out = []
        for i in range(0, B, rows):
            P2 = (P[i:i + rows] ** 2)[:, :, None, :]  # [b, K, 1, m]
            lam_s = self._lam[None, :, None, :] + g2[None, None, :, None]  # [1, K, L, m]
            maha = (P2 / lam_s).sum(-1)
            logdet = torch.log(lam_s).sum(-1)
            if self.rest:
                c_s = self._c[None, :, None] + g2[None, None, :]
                maha = maha + r2[i:i + rows, :, None] / c_s
                logdet = logdet + self.rest * torch.log(c_s)
            clp = self._logw[None, :, None] - 0.5 * (self.mixture.d * _LOG_2PI + logdet + maha)  # [b, K, L]
            out.append(torch.logsumexp(clp, dim=1))
        logp = torch.cat(out)
        if log_prior is not None:
            lp = torch.as_tensor(log_prior, dtype=logp.dtype, device=logp.device)
            logp = logp + (lp - torch.logsumexp(lp, 0))[None]
        return logp - torch.logsumexp(logp, dim=1, keepdim=True)
