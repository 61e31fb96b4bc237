"""Shared closed-form test cases: anisotropic Gaussian priors and a 2-D Gaussian mixture."""

from __future__ import annotations

import torch

from dpcore.denoisers import GaussianDenoiser, GMMDenoiser
from dpcore.sampler import variance_scaled_denoise


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


class ProbeNoise:
    """Noise that is a unit vector in row j at one chosen draw, zero elsewhere (row j probes e_j)."""

    def __init__(self, draw: int):
        self.draw = draw

    def __call__(self, draw, shape, *, dtype, device):
        z = torch.zeros(shape, dtype=dtype, device=device)
        if draw == self.draw:
            z.reshape(shape[0], -1).fill_diagonal_(1.0)
        return z


def exact_end_covariance(denoiser: GaussianDenoiser, y: torch.Tensor, sigma_y: float,
                         lam: float, **kwargs) -> torch.Tensor:
    """The exact covariance of the sampler's output for one measurement ``y`` (shape ``(1, d)``).

    For a Gaussian prior the chain is affine in its noise, ``x_N = M y + sum_k B_k z_k``, so
    ``Cov = sum_k B_k B_k^T``; each ``B_k`` is read off by injecting unit vectors at draw k.
    """
    d = y.shape[1]
    steps = kwargs.get("steps", 20)
    rows = y.expand(d, d).contiguous()
    base = variance_scaled_denoise(denoiser, rows, sigma_y, [lam], noise=ProbeNoise(-1), **kwargs)
    cov = torch.zeros(d, d, dtype=torch.float64)
    for draw in range(2 * steps):
        out = variance_scaled_denoise(denoiser, rows, sigma_y, [lam], noise=ProbeNoise(draw),
                                      **kwargs)
        b = (out[0] - base[0]).T  # column j is B_k e_j
        cov += b @ b.T
    return cov
