"""Closed forms for Gaussian priors: posteriors, W2 between Gaussians, and the DP curves.

- Conditional DP curve (Wang et al., CVPR 2025, Gaussian case): with perception
  ``P = W2(p_{X|y}, p_{Xhat|y})`` and distortion MSE, ``D(P) = tr S_y + (sqrt(tr S_y) - P)^2``
  for ``0 <= P <= sqrt(tr S_y)``; the variance-scaled sampler attains it at
  ``MSE = (1 + lambda) tr S_y``, ``W2 = (1 - sqrt(lambda)) sqrt(tr S_y)``.
- Unconditional DP curve (Freirich, Michaeli, Meir, NeurIPS 2021, Thm. 4): with
  ``X* = E[X|Y]``, ``D* = E||X - X*||^2``, ``P* = W2(p_X, p_{X*})``:
  ``D(P) = D* + ((P* - P)_+)^2``. Variance scaling is not on this curve in general.
"""

from __future__ import annotations

import torch
from torch import Tensor


def sqrtm_psd(c: Tensor) -> Tensor:
    """Symmetric square root of a positive semi-definite matrix (eigendecomposition)."""
    e, u = torch.linalg.eigh(c)
    return (u * e.clamp_min(0).sqrt()) @ u.T


def gaussian_posterior(
    mean: Tensor, cov: Tensor, y: Tensor, sigma_y: float
) -> tuple[Tensor, Tensor]:
    """Posterior mean ``m + S (S + s^2 I)^{-1} (y - m)`` (rows of ``y``) and covariance
    ``S - S (S + s^2 I)^{-1} S`` of ``x ~ N(m, S)`` given ``y = x + s n``."""
    d = mean.numel()
    gain = torch.linalg.solve(cov + sigma_y**2 * torch.eye(d, dtype=cov.dtype), cov).T
    post_mean = mean + (y.reshape(-1, d) - mean) @ gain.T
    return post_mean, cov - gain @ cov


def linear_gaussian_posterior(
    mean: Tensor, cov: Tensor, A: Tensor, y: Tensor, sigma_y: float
) -> tuple[Tensor, Tensor]:
    """Posterior of ``x ~ N(m, S)`` given ``y = A x + s n``: mean rows and covariance."""
    k = A @ cov @ A.T + sigma_y**2 * torch.eye(A.shape[0], dtype=cov.dtype)
    gain = cov @ A.T @ torch.linalg.inv(k)  # (d, m)
    post_mean = mean + (y.reshape(y.shape[0], -1) - A @ mean) @ gain.T
    return post_mean, cov - gain @ A @ cov


def gaussian_w2(m1: Tensor, c1: Tensor, m2: Tensor, c2: Tensor) -> Tensor:
    """2-Wasserstein distance between ``N(m1, c1)`` and ``N(m2, c2)`` (Dowson & Landau 1982)."""
    r1 = sqrtm_psd(c1)
    cross = sqrtm_psd(r1 @ c2 @ r1)
    sq = (m1 - m2).pow(2).sum() + torch.trace(c1) + torch.trace(c2) - 2 * torch.trace(cross)
    return sq.clamp_min(0).sqrt()


def conditional_dp_curve(trace_post_cov: float, perception: Tensor) -> Tensor:
    """Optimal MSE at conditional W2 perception ``P`` for a Gaussian posterior."""
    p = torch.as_tensor(perception, dtype=torch.float64)
    root = trace_post_cov**0.5
    if (p < 0).any() or (p > root + 1e-12).any():
        raise ValueError(f"perception must lie in [0, sqrt(tr S_y)] = [0, {root:.4g}]")
    return trace_post_cov + (root - p) ** 2


def variance_scaled_point(trace_post_cov: float, lam: Tensor) -> tuple[Tensor, Tensor]:
    """(MSE, conditional W2) of the variance-scaled sampler at ``lam``, Gaussian posterior."""
    lam = torch.as_tensor(lam, dtype=torch.float64)
    return trace_post_cov * (1 + lam), (1 - lam.sqrt()) * trace_post_cov**0.5


def unconditional_dp_curve(mmse: float, p_star: float, perception: Tensor) -> Tensor:
    """Freirich et al. (2021): ``D(P) = D* + ((P* - P)_+)^2``."""
    p = torch.as_tensor(perception, dtype=torch.float64)
    return mmse + (p_star - p).clamp_min(0) ** 2


def unconditional_anchor(mean: Tensor, cov: Tensor, sigma_y: float) -> tuple[float, float]:
    """``(D*, P*)`` for ``x ~ N(m, S)``, ``y = x + s n``: MMSE and W2 from the MMSE law to the prior."""
    _, post_cov = gaussian_posterior(mean, cov, mean[None], sigma_y)
    mmse = float(torch.trace(post_cov))
    p_star = float(gaussian_w2(mean, cov, mean, cov - post_cov))
    return mmse, p_star


def variance_scaled_unconditional(
    mean: Tensor, cov: Tensor, sigma_y: float, lam: Tensor
) -> tuple[Tensor, Tensor]:
    """(MSE, W2 to the prior) of the variance-scaled output over all measurements.

    The output law is ``N(m, S - S_y + lam S_y)`` (the MMSE estimate plus independent
    posterior-shaped noise of covariance ``lam S_y``) and its MSE is ``(1 + lam) tr S_y``.
    """
    _, post_cov = gaussian_posterior(mean, cov, mean[None], sigma_y)
    lams = torch.as_tensor(lam, dtype=torch.float64).reshape(-1)
    w2 = torch.stack([gaussian_w2(mean, cov, mean, cov - (1 - l) * post_cov) for l in lams])
    return torch.trace(post_cov) * (1 + lams), w2
