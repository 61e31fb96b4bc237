"""The denoiser contract and exact analytic denoisers for Gaussian and mixture priors.

A denoiser is any callable ``D(x, sigma) -> E[x0 | x_sigma = x]`` where
``x_sigma = x0 + sigma * eps`` (variance-exploding / EDM parameterisation, Karras et al.
2022). ``x`` is batched, ``(B, *event)``; ``sigma`` is a float or a ``(B,)`` tensor.
By Tweedie's formula the score is ``(D(x, sigma) - x) / sigma**2``.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import Tensor


class Denoiser(Protocol):
    def __call__(self, x: Tensor, sigma: Tensor | float) -> Tensor: ...


def sigma_per_sample(sigma: Tensor | float, batch: int, *, like: Tensor) -> Tensor:
    """Return sigma as a ``(batch,)`` tensor with the dtype and device of ``like``."""
    sigma = torch.as_tensor(sigma, dtype=like.dtype, device=like.device)
    if sigma.ndim == 0:
        return sigma.expand(batch)
    if sigma.shape != (batch,):
        raise ValueError(f"sigma has shape {tuple(sigma.shape)}; expected () or ({batch},)")
    return sigma


def append_dims(v: Tensor, ndim: int) -> Tensor:
    """Append trailing singleton dims so a ``(B,)`` tensor broadcasts against ``ndim`` dims."""
    return v.reshape(v.shape + (1,) * (ndim - v.ndim))


class GaussianDenoiser:
    """Exact denoiser for the prior ``x0 ~ N(mean, cov)`` in any dimension ``d``.

    ``D(x, sigma) = m + S (S + sigma^2 I)^{-1} (x - m)``, computed in the eigenbasis of ``S``
    so that per-sample sigmas cost nothing extra. Inputs of shape ``(B, *event)`` with
    ``prod(event) == d`` are flattened internally.
    """

    def __init__(self, mean: Tensor, cov: Tensor):
        mean = torch.as_tensor(mean)
        cov = torch.as_tensor(cov, dtype=mean.dtype)
        d = mean.numel()
        if cov.shape != (d, d):
            raise ValueError(f"cov has shape {tuple(cov.shape)}; expected ({d}, {d})")
        self.mean = mean.reshape(d)
        self.cov = cov
        self.eigenvalues, self.eigenvectors = torch.linalg.eigh(cov)
        if self.eigenvalues.min() < -1e-10 * self.eigenvalues.abs().max():
            raise ValueError("cov must be positive semi-definite")
        self.eigenvalues = self.eigenvalues.clamp_min(0)

    @property
    def dim(self) -> int:
        return self.mean.numel()

    def _to_eigenbasis(self, x: Tensor) -> Tensor:
        flat = x.reshape(x.shape[0], self.dim) - self.mean.to(x)
        return flat @ self.eigenvectors.to(x)

    def _from_eigenbasis(self, z: Tensor, shape: torch.Size) -> Tensor:
        return (z @ self.eigenvectors.to(z).T + self.mean.to(z)).reshape(shape)

    def __call__(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        s2 = sigma_per_sample(sigma, x.shape[0], like=x)[:, None] ** 2
        e = self.eigenvalues.to(x)
        return self._from_eigenbasis(self._to_eigenbasis(x) * e / (e + s2), x.shape)

    def posterior_mean(self, y: Tensor, sigma_y: Tensor | float) -> Tensor:
        return self(y, sigma_y)

    def posterior_cov(self, sigma_y: float) -> Tensor:
        """``S - S (S + sigma_y^2 I)^{-1} S``: the covariance of ``x0`` given ``y``."""
        e = self.eigenvalues
        u = self.eigenvectors
        return (u * (e * sigma_y**2 / (e + sigma_y**2))) @ u.T

    def posterior_sample(
        self, y: Tensor, sigma_y: Tensor | float, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """One exact draw from ``p(x0 | y)`` per row of ``y``."""
        s2 = sigma_per_sample(sigma_y, y.shape[0], like=y)[:, None] ** 2
        e = self.eigenvalues.to(y)
        z = torch.randn(y.shape[0], self.dim, generator=generator, dtype=y.dtype).to(y.device)
        mean_z = self._to_eigenbasis(y) * e / (e + s2)
        return self._from_eigenbasis(mean_z + z * (e * s2 / (e + s2)).sqrt(), y.shape)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws from the prior, shape ``(n, d)``."""
        z = torch.randn(n, self.dim, generator=generator, dtype=self.mean.dtype)
        return self._from_eigenbasis(z * self.eigenvalues.sqrt(), torch.Size((n, self.dim)))


class GMMDenoiser:
    """Exact denoiser for a Gaussian mixture prior ``sum_k w_k N(mu_k, C_k)`` (full covariances).

    At noise level sigma the marginal is ``sum_k w_k N(mu_k, C_k + sigma^2 I)``; the posterior
    mean is the responsibility-weighted sum of the per-component Gaussian posterior means.
    """

    def __init__(self, weights: Tensor, means: Tensor, covs: Tensor):
        means = torch.as_tensor(means)
        weights = torch.as_tensor(weights, dtype=means.dtype)
        covs = torch.as_tensor(covs, dtype=means.dtype)
        k, d = means.shape
        if weights.shape != (k,) or covs.shape != (k, d, d):
            raise ValueError("expected weights (K,), means (K, d), covs (K, d, d)")
        if (weights < 0).any() or not math.isclose(float(weights.sum()), 1.0, rel_tol=1e-6):
            raise ValueError("weights must be non-negative and sum to 1")
        self.weights, self.means, self.covs = weights, means, covs
        self.eigenvalues, self.eigenvectors = torch.linalg.eigh(covs)  # (K, d), (K, d, d)
        self.eigenvalues = self.eigenvalues.clamp_min(0)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def _components(self, x: Tensor, sigma: Tensor | float) -> tuple[Tensor, Tensor]:
        """Per-component posterior means ``(B, K, d)`` and log responsibilities ``(B, K)``."""
        flat = x.reshape(x.shape[0], self.dim)
        s2 = sigma_per_sample(sigma, x.shape[0], like=x)[:, None, None] ** 2
        e, u = self.eigenvalues.to(x), self.eigenvectors.to(x)
        z = torch.einsum("bkd,kde->bke", flat[:, None, :] - self.means.to(x), u)
        var = e + s2  # (B, K, d)
        log_lik = -0.5 * ((z**2 / var) + var.log()).sum(-1) - 0.5 * self.dim * math.log(2 * math.pi)
        log_resp = torch.log_softmax(log_lik + self.weights.to(x).log(), dim=-1)
        comp_means = self.means.to(x) + torch.einsum("bke,kde->bkd", z * e / var, u)
        return comp_means, log_resp

    def __call__(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        comp_means, log_resp = self._components(x, sigma)
        return (log_resp.exp()[..., None] * comp_means).sum(1).reshape(x.shape)

    def posterior_sample(
        self, y: Tensor, sigma_y: Tensor | float, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """One exact draw from ``p(x0 | y)``: pick a component by responsibility, then sample it."""
        comp_means, log_resp = self._components(y, sigma_y)
        k = torch.multinomial(log_resp.exp(), 1, generator=generator).squeeze(1)  # (B,)
        s2 = sigma_per_sample(sigma_y, y.shape[0], like=y)[:, None] ** 2
        e, u = self.eigenvalues.to(y)[k], self.eigenvectors.to(y)[k]  # (B, d), (B, d, d)
        z = torch.randn(y.shape[0], self.dim, generator=generator, dtype=y.dtype).to(y.device)
        noise = torch.einsum("bde,be->bd", u, z * (e * s2 / (e + s2)).sqrt())
        mean = comp_means[torch.arange(y.shape[0]), k]
        return (mean + noise).reshape(y.shape)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws from the prior, shape ``(n, d)``."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=self.means.dtype)
        scaled = z * self.eigenvalues[k].sqrt()
        return self.means[k] + torch.einsum("nde,ne->nd", self.eigenvectors[k], scaled)
