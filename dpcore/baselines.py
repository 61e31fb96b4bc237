"""Other ways to traverse the distortion-perception plane with the same denoiser.

They are what the variance-scaled sampler is compared against (../shared/MATH.md):
one-step Tweedie MMSE, the average of K posterior samples (as in PSCGAN, Ohayon et al. 2021),
and interpolation between the MMSE estimate and a posterior sample.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from dpcore.denoisers import Denoiser
from dpcore.sampler import check_measurement, variance_scaled_denoise


@torch.no_grad()
def tweedie_mmse(denoiser: Denoiser, y: Tensor, sigma_y: Tensor | float) -> Tensor:
    """One-step MMSE estimate ``D(y, sigma_y) = E[x | y]`` (Tweedie / Robbins)."""
    return denoiser(y, check_measurement(y, sigma_y))


def k_average(
    denoiser: Denoiser, y: Tensor, sigma_y: Tensor | float, ks: Sequence[int], *,
    seed: int = 0, sample_ids: Tensor | None = None, **sampler_kwargs,
) -> Tensor:
    """Average of the first K posterior samples (lambda = 1) for each K in ``ks``.

    K = 1 is a posterior sample, K -> inf the MMSE estimate. Sample k of image b is drawn with
    seed ``seed + k``, so the result for a given K does not depend on the other entries of ``ks``.
    Returns ``(len(ks), *y.shape)``.
    """
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers; got {ks}")
    total = torch.zeros_like(y)
    out = {}
    for k in range(1, max(ks) + 1):
        total += variance_scaled_denoise(denoiser, y, sigma_y, [1.0], seed=seed + k - 1,
                                         sample_ids=sample_ids, **sampler_kwargs)[0]
        if k in ks:
            out[k] = total / k
    return torch.stack([out[k] for k in ks])


def interpolate(
    denoiser: Denoiser, y: Tensor, sigma_y: Tensor | float, alphas: Sequence[float], *,
    seed: int = 0, sample_ids: Tensor | None = None, **sampler_kwargs,
) -> Tensor:
    """``x_mmse + alpha (x_post - x_mmse)`` for each alpha, with x_mmse the lambda = 0 output and
    x_post a lambda = 1 sample of the same sampler. Returns ``(len(alphas), *y.shape)``."""
    alphas_t = torch.as_tensor(alphas, dtype=y.dtype)
    if alphas_t.ndim != 1 or (alphas_t < 0).any() or (alphas_t > 1).any():
        raise ValueError(f"alphas must be a 1-D list in [0, 1]; got {list(alphas)}")
    ends = variance_scaled_denoise(denoiser, y, sigma_y, [0.0, 1.0], seed=seed,
                                   sample_ids=sample_ids, **sampler_kwargs)
    shape = (-1,) + (1,) * y.ndim
    return ends[0] + alphas_t.reshape(shape).to(y.device) * (ends[1] - ends[0])
