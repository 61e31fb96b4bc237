"""Analytic Gaussian-prior "models" and collections, for tests whose answers are known.

A Gaussian prior ``x ~ N(m, S)`` over ``C x H x W`` images has an exact denoiser
(``dpcore.denoisers.GaussianDenoiser``) and a closed-form frontier: the variance-scaled sampler at
``lambda`` has error covariance ``(1 + lambda) S_y`` with ``S_y = S - S (S + sigma_y^2 I)^{-1} S``
(Wang et al., CVPR 2025; ../shared/MATH.md), so its expected per-pixel MSE is
``(1 + lambda) tr(S_y) / d``. The pipeline accepts such a prior as a model spec
``gaussian:<file.npz>`` (arrays ``mean`` of shape ``(C, H, W)`` and ``cov`` of shape ``(d, d)``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from dpcore.denoisers import GaussianDenoiser

PREFIX = "gaussian:"


def smooth_gaussian_prior(
    channels: int = 1, height: int = 8, width: int = 8, *, mean: float = 0.5, std: float = 0.08,
    length: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """A stationary prior with exponential covariance ``std^2 exp(-|p - q| / length)`` between
    pixels (channels independent): ``(mean (C, H, W), cov (d, d))``, float64.

    The default mean and std keep draws inside [0, 1] with overwhelming probability (6 std), so no
    clipping at ingest disturbs the closed forms.
    """
    yy, xx = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    points = np.stack([yy.ravel(), xx.ravel()], 1).astype(np.float64)
    dist = np.linalg.norm(points[:, None] - points[None], axis=-1)
    block = std**2 * np.exp(-dist / length)
    cov = np.kron(np.eye(channels), block)
    return np.full((channels, height, width), mean), cov


def write_gaussian_prior(path: str | Path, mean: np.ndarray, cov: np.ndarray) -> Path:
    """Save a prior as ``gaussian:`` model file (``.npz`` with ``mean`` and ``cov``)."""
    path = Path(path)
    np.savez(path, mean=np.asarray(mean, np.float64), cov=np.asarray(cov, np.float64))
    return path


def write_gaussian_collection(
    folder: str | Path, n: int, *, seed: int = 0, channels: int = 1, height: int = 8,
    width: int = 8,
) -> tuple[Path, Path]:
    """Draw ``n`` clean images from :func:`smooth_gaussian_prior` into ``folder``.

    Returns ``(images.npy, prior.npz)``: the clean collection (``(n, C, H, W)`` float32) and the
    model file to pass as ``--model gaussian:<prior.npz>``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    mean, cov = smooth_gaussian_prior(channels, height, width)
    prior = GaussianDenoiser(torch.as_tensor(mean), torch.as_tensor(cov))
    draws = prior.sample(n, generator=torch.Generator().manual_seed(seed)).numpy()
    images = draws.reshape(n, channels, height, width).astype(np.float32)
    if images.min() < 0 or images.max() > 1:
        raise ValueError("a draw left [0, 1]; use a smaller std for this many images")
    images_path = folder / "images.npy"
    np.save(images_path, images)
    return images_path, write_gaussian_prior(folder / "prior.npz", mean, cov)


def load_prior(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a ``gaussian:`` model file: ``(mean (C, H, W), cov (d, d))``."""
    path = Path(str(path).removeprefix(PREFIX))
    if not path.is_file():
        raise ValueError(f"analytic model file {path} not found")
    with np.load(path) as f:
        if "mean" not in f or "cov" not in f:
            raise ValueError(f"{path} must hold arrays 'mean' and 'cov'")
        mean, cov = f["mean"].astype(np.float64), f["cov"].astype(np.float64)
    if mean.ndim == 2:
        mean = mean[None]
    d = mean.size
    if mean.ndim != 3 or cov.shape != (d, d):
        raise ValueError(f"{path}: mean must be (C, H, W) and cov (d, d); got {mean.shape}, "
                         f"{cov.shape}")
    return mean, cov


class AnalyticDenoiser:
    """The exact denoiser of a Gaussian prior, with the attributes of a loaded model
    (``channels``, ``meta``, ``name``) so the pipeline treats it like a checkpoint."""

    def __init__(self, path: str | Path):
        path = Path(str(path).removeprefix(PREFIX))
        mean, cov = load_prior(path)
        self.shape = mean.shape
        self.channels = mean.shape[0]
        self.exact = GaussianDenoiser(torch.as_tensor(mean), torch.as_tensor(cov))
        self.name = f"{PREFIX}{path.name}"
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        self.meta = {"kind": "analytic-gaussian", "path": str(path.resolve()), "sha256": digest}

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"analytic model is for images of shape {self.shape}; "
                             f"got {tuple(x.shape[1:])}")
        return self.exact(x, sigma)


def expected_mse(path: str | Path, sigma_y: float, lambdas: np.ndarray) -> np.ndarray:
    """Closed-form per-pixel MSE of the variance-scaled sampler: ``(1 + lambda) tr(S_y) / d``."""
    mean, cov = load_prior(path)
    exact = GaussianDenoiser(torch.as_tensor(mean), torch.as_tensor(cov))
    trace = float(torch.trace(exact.posterior_cov(sigma_y)))
    return (1 + np.asarray(lambdas, np.float64)) * trace / mean.size


def mse_spread(path: str | Path, sigma_y: float, lam: float) -> float:
    """Standard deviation of one image's per-pixel MSE at ``lam``: the error is
    ``N(0, (1 + lam) S_y)``, so ``Var ||e||^2 = 2 tr(((1 + lam) S_y)^2)``."""
    mean, cov = load_prior(path)
    post = GaussianDenoiser(torch.as_tensor(mean), torch.as_tensor(cov)).posterior_cov(sigma_y)
    c = (1 + lam) * post
    return float(torch.sqrt(2 * torch.trace(c @ c))) / mean.size
