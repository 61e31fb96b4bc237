"""SURE (Stein 1981; Monte-Carlo divergence of Ramani, Blu, Unser 2008) against the true MSE."""

from __future__ import annotations

import pytest
import torch

from dpcore.denoisers import GMMDenoiser
from dpcore.metrics import mse
from dpcore.sampler import variance_scaled_denoise
from dpcore.sure import probes, sure_mse, sure_mse_grid
from tests.gaussian_cases import anisotropic_gaussian

LAMBDAS = [0.0, 0.25, 0.5, 1.0]


def noisy(x: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return x + sigma * torch.randn(x.shape, generator=g, dtype=x.dtype)


def test_affine_map_is_exact_per_image():
    # For f(y) = a y the Monte-Carlo divergence is a ||b||^2 for any eps (mean a d over probes).
    y = noisy(torch.zeros(5, 1, 4, 4, dtype=torch.float64), 0.3, 0)
    a, sigma, d = 0.7, 0.3, 16
    b2 = probes(y.shape, seed=0, sample_ids=None, dtype=y.dtype, device="cpu").flatten(1).pow(2)
    div = a * b2.sum(1)
    expected = ((a - 1) ** 2 * y.flatten(1).pow(2).sum(1) - d * sigma**2 + 2 * sigma**2 * div) / d
    got = sure_mse(lambda v: a * v, y, sigma, eps=0.05)
    torch.testing.assert_close(got, expected)


def test_gaussian_prior_mean_sure_matches_true_mse_for_every_lambda():
    torch.set_num_threads(1)
    prior = anisotropic_gaussian(64, seed=3)
    n, sigma = 1500, 0.5
    x = prior.sample(n, generator=torch.Generator().manual_seed(1)).reshape(n, 1, 8, 8)
    y = noisy(x, sigma, 2)
    ids = torch.arange(n)

    def f(v):
        return variance_scaled_denoise(prior, v, sigma, LAMBDAS, steps=8, seed=5, sample_ids=ids)

    fy = f(y)
    sure = sure_mse_grid(f, y, sigma, fy=fy, seed=7, sample_ids=ids).mean(1)
    true = torch.stack([mse(out, x) for out in fy]).mean(1)
    assert ((sure / true - 1).abs() < 0.03).all(), (sure, true)
    # The frontier's distortion axis: mean MSE rises with lambda, and SURE sees it.
    assert (sure.diff() > 0).all()


def test_digits_with_nonlinear_mixture_denoiser():
    from sklearn.datasets import load_digits
    from sklearn.mixture import GaussianMixture

    torch.set_num_threads(1)
    digits = torch.from_numpy(load_digits().data) / 16.0  # (1797, 64) in [0, 1]
    gmm = GaussianMixture(8, covariance_type="full", reg_covar=1e-2, random_state=0)
    gmm.fit(digits[:1000].numpy())
    prior = GMMDenoiser(*(torch.from_numpy(a) for a in (gmm.weights_, gmm.means_, gmm.covariances_)))
    x = digits[1000:].reshape(-1, 1, 8, 8)
    sigma = 0.3
    y = noisy(x, sigma, 4)
    ids = torch.arange(len(x))

    def f(v):
        return variance_scaled_denoise(prior, v, sigma, LAMBDAS, steps=8, seed=5, sample_ids=ids)

    fy = f(y)
    sure = sure_mse_grid(f, y, sigma, fy=fy, seed=7, sample_ids=ids).mean(1)
    true = torch.stack([mse(out, x) for out in fy]).mean(1)
    assert ((sure / true - 1).abs() < 0.05).all(), (sure, true)


def test_chunking_does_not_change_the_estimate():
    prior = anisotropic_gaussian(16, seed=0)
    x = prior.sample(12, generator=torch.Generator().manual_seed(0)).reshape(12, 1, 4, 4)
    y, ids = noisy(x, 0.4, 1), torch.arange(100, 112)

    def run(rows):
        def f(v):
            return variance_scaled_denoise(prior, v, 0.4, [0.0, 1.0], steps=4, seed=2,
                                           sample_ids=ids[rows])
        return sure_mse_grid(f, y[rows], 0.4, seed=3, sample_ids=ids[rows])

    whole = run(slice(None))
    parts = torch.cat([run(slice(0, 5)), run(slice(5, 12))], dim=1)
    torch.testing.assert_close(whole, parts)


def test_bad_inputs_raise():
    y = torch.zeros(3, 1, 4, 4)
    with pytest.raises(ValueError, match="eps"):
        sure_mse(lambda v: v, y, 0.1, eps=-1.0)
    with pytest.raises(ValueError, match="shape"):
        sure_mse_grid(lambda v: v, y, 0.1)  # f must return (L, B, ...)
    with pytest.raises(ValueError, match="sigma_y"):
        sure_mse(lambda v: v, y, 0.0)
