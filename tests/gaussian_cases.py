"""Shared closed-form test cases: anisotropic Gaussian priors and a 2-D Gaussian mixture."""

from __future__ import annotations

import torch

from dpcore.denoisers import GaussianDenoiser, GMMDenoiser


def anisotropic_gaussian(d: int, seed: int = 0) -> GaussianDenoiser:
    """A random rotation of variances spread over three decades (0.01 to 10)."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    variances = torch.logspace(-2, 1, d, dtype=torch.float64)
    mean = torch.randn(d, generator=g, dtype=torch.float64)
    return GaussianDenoiser(mean, (q * variances) @ q.T)


def two_d_mixture() -> GMMDenoiser:
    """Three anisotropic components in 2-D, well separated relative to sigma_y = 0.5."""
    means = torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]], dtype=torch.float64)
    covs = torch.tensor(
        [[[0.3, 0.1], [0.1, 0.2]], [[0.2, -0.05], [-0.05, 0.4]], [[0.5, 0.0], [0.0, 0.1]]],
        dtype=torch.float64,
    )
    return GMMDenoiser(torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64), means, covs)
