"""Diagnostics of the sampler on priors where it is exactly affine (Gaussian priors)."""

from __future__ import annotations

import torch

from dpcore.denoisers import Denoiser
from dpcore.sampler import variance_scaled_denoise


class ProbeNoise:
    """Noise that is a unit vector in row j at one chosen draw, zero elsewhere (row j probes e_j)."""

    def __init__(self, draw: int):
        self.draw = draw

    def __call__(self, draw, shape, *, dtype, device):
        z = torch.zeros(shape, dtype=dtype, device=device)
        if draw == self.draw:
            z.reshape(shape[0], -1).fill_diagonal_(1.0)
        return z


def exact_end_covariance(denoiser: Denoiser, y: torch.Tensor, sigma_y: float,
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
