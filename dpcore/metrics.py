"""Distortion and distribution metrics: pure functions, one value per image unless stated.

Images are ``(B, C, H, W)`` (or any ``(B, ...)`` for MSE) in [0, 1] units unless a
``data_range`` is given. Sample-set distances take ``(n, d)`` arrays of samples.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dpcore.theory import gaussian_w2


def mse(x: Tensor, ref: Tensor) -> Tensor:
    """Mean squared error per image, ``(B,)``."""
    return (x - ref).pow(2).flatten(1).mean(1)


def sse(x: Tensor, ref: Tensor) -> Tensor:
    """Squared error summed over each image, ``(B,)`` (``||x - ref||^2``, MATH.md's distortion)."""
    return (x - ref).pow(2).flatten(1).sum(1)


def psnr(x: Tensor, ref: Tensor, *, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio per image in dB, ``(B,)``."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    dims = tuple(range(1, x.ndim))
    return peak_signal_noise_ratio(x, ref, data_range=data_range, reduction="none", dim=dims)


def ssim(x: Tensor, ref: Tensor, *, data_range: float = 1.0) -> Tensor:
    """Structural similarity per image (Wang et al. 2004; torchmetrics), ``(B,)``.

    The Gaussian window shrinks for images under 11 pixels a side (e.g. 8x8 digits).
    """
    from torchmetrics.functional.image import structural_similarity_index_measure

    side = min(x.shape[-2:])
    kernel = 11 if side >= 11 else (side if side % 2 else side - 1)
    return structural_similarity_index_measure(
        x.float(), ref.float(), data_range=data_range, reduction="none",
        kernel_size=kernel, sigma=1.5 * kernel / 11,
    )


def w2_samples(a: Tensor, b: Tensor, *, n_projections: int = 256, seed: int = 0,
               exact_max: int = 4000) -> float:
    """2-Wasserstein distance between two empirical sample sets ``(n, d)`` (POT).

    Exact optimal transport (``ot.emd2``) when both sets have at most ``exact_max`` points and
    ``d <= 16``; the sliced distance (Bonneel et al. 2015) with a seeded projection set otherwise.
    """
    import ot

    a = a.reshape(a.shape[0], -1).double().cpu().numpy()
    b = b.reshape(b.shape[0], -1).double().cpu().numpy()
    if max(len(a), len(b)) <= exact_max and a.shape[1] <= 16:
        cost = ot.dist(a, b, metric="sqeuclidean")
        return float(ot.emd2(ot.unif(len(a)), ot.unif(len(b)), cost, numItermax=10_000_000)) ** 0.5
    return float(ot.sliced_wasserstein_distance(a, b, n_projections=n_projections, seed=seed))


def gaussian_moments(x: Tensor) -> tuple[Tensor, Tensor]:
    """Sample mean and covariance of ``(n, d)`` samples, float64."""
    x = x.reshape(x.shape[0], -1).double()
    return x.mean(0), torch.cov(x.T).reshape(x.shape[1], x.shape[1])


def frechet_distance(a: Tensor, b: Tensor, *, ridge: float = 1e-6) -> float:
    """Frechet (Gaussian W2) distance between two sample sets ``(n, d)``, as a distance (not
    squared), with ``ridge * mean variance`` added to both covariances for stability."""
    ma, ca = gaussian_moments(a)
    mb, cb = gaussian_moments(b)
    eye = torch.eye(ca.shape[0], dtype=ca.dtype)
    scale = ridge * 0.5 * float(torch.trace(ca) + torch.trace(cb)) / ca.shape[0]
    return float(gaussian_w2(ma, ca + scale * eye, mb, cb + scale * eye))
