"""Stein's unbiased risk estimate (SURE) of the MSE, for archives without clean images.

For ``y = x + sigma_y n`` with ``n ~ N(0, I)`` in ``R^d`` and a fixed, weakly differentiable map f,
Stein (1981) gives ``E||f(y) - x||^2 = E[ ||f(y) - y||^2 - d sigma_y^2 + 2 sigma_y^2 div_y f(y) ]``.
The divergence is estimated by Monte Carlo (Ramani, Blu, Unser, IEEE TIP 2008, eq. 13-14):
``div_y f(y) ~= b^T (f(y + eps b) - f(y)) / eps`` with one probe ``b ~ N(0, I)`` per image.

The variance-scaled sampler at ``lambda > 0`` is random, but with a fixed seed and fixed sample
ids (``variance_scaled_denoise(..., seed=S, sample_ids=ids)``) it draws the same noise for
``y`` and ``y + eps b``: it is then a deterministic smooth map ``f_z(y)`` with ``z`` independent
of the measurement noise, SURE is unbiased for each ``f_z``, and its mean over images is unbiased
for the sampler's mean MSE. The perturbed call must use the SAME seed and sample ids.

Values are per pixel (divided by ``d``), the normalisation of ``dpcore.metrics.mse``. A single
image's SURE is noisy (a few times ``sigma_y^2 / sqrt(d)``); means over many images are accurate.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from dpcore.denoisers import append_dims
from dpcore.noise import CounterNoise, row_keys
from dpcore.sampler import check_measurement

DEFAULT_EPS_FACTOR = 1e-3  # eps = DEFAULT_EPS_FACTOR * sigma_y, per image


def probes(shape: torch.Size, *, seed: int, sample_ids: Tensor | None, dtype, device) -> Tensor:
    """Standard normal probes ``b``, one per image, keyed by (seed, sample id): the same probe
    for an image whatever chunk or batch position it is computed in."""
    ids = torch.arange(shape[0]) if sample_ids is None else torch.as_tensor(sample_ids).reshape(-1)
    if ids.numel() != shape[0]:
        raise ValueError(f"sample_ids has {ids.numel()} entries for a batch of {shape[0]}")
    noise = CounterNoise(row_keys(seed, ids, torch.zeros(1, dtype=torch.float64)))
    return noise(0, shape, dtype=dtype, device=device)


@torch.no_grad()
def sure_mse_grid(
    f: Callable[[Tensor], Tensor],
    y: Tensor,
    sigma_y: Tensor | float,
    *,
    fy: Tensor | None = None,
    eps: Tensor | float | None = None,
    seed: int = 0,
    sample_ids: Tensor | None = None,
) -> Tensor:
    """SURE per-pixel MSE of every output of ``f: y (B, ...) -> (L, B, ...)``, shape ``(L, B)``.

    ``fy`` is ``f(y)`` if already computed (the pipeline's outputs): then SURE costs one extra
    batched call, ``f(y + eps b)``, for the whole lambda grid. ``eps`` defaults to
    ``1e-3 * sigma_y`` per image (Ramani et al. use a small fraction of the signal scale; the
    estimate is exact for any eps when f is affine). Probes are keyed by ``(seed, sample_ids)``.
    """
    sigma = check_measurement(y, sigma_y)
    eps = DEFAULT_EPS_FACTOR * sigma if eps is None else torch.as_tensor(eps).to(sigma)
    eps = eps.expand(y.shape[0]) if eps.ndim == 0 else eps
    if eps.shape != (y.shape[0],) or (eps <= 0).any():
        raise ValueError(f"eps must be > 0, a scalar or ({y.shape[0]},); got {eps.tolist()}")
    fy = f(y) if fy is None else fy
    if fy.ndim != y.ndim + 1 or fy.shape[1:] != y.shape:
        raise ValueError(f"f(y) must have shape (L, *{tuple(y.shape)}); got {tuple(fy.shape)}")
    b = probes(y.shape, seed=seed, sample_ids=sample_ids, dtype=y.dtype, device=y.device)
    f_perturbed = f(y + append_dims(eps, y.ndim) * b)
    if f_perturbed.shape != fy.shape:
        raise ValueError(f"f returned {tuple(f_perturbed.shape)} then {tuple(fy.shape)}")
    d = y[0].numel()
    # Monte-Carlo divergence, then Stein's identity, per lambda and image.
    div = ((f_perturbed - fy) * b).flatten(2).sum(2) / eps
    residual = (fy - y).flatten(2).pow(2).sum(2)
    return (residual - d * sigma**2 + 2 * sigma**2 * div) / d


def sure_mse(
    f: Callable[[Tensor], Tensor],
    y: Tensor,
    sigma_y: Tensor | float,
    *,
    fy: Tensor | None = None,
    eps: Tensor | float | None = None,
    seed: int = 0,
    sample_ids: Tensor | None = None,
) -> Tensor:
    """SURE per-pixel MSE of a map ``f: y (B, ...) -> estimate (B, ...)``, shape ``(B,)``."""
    return sure_mse_grid(
        lambda v: f(v).unsqueeze(0), y, sigma_y, fy=None if fy is None else fy.unsqueeze(0),
        eps=eps, seed=seed, sample_ids=sample_ids,
    )[0]
