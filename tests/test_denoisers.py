"""Exact analytic denoisers: Tweedie's formula, posterior moments, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from dpcore import theory
from dpcore.denoisers import GaussianDenoiser, GMMDenoiser
from tests.gaussian_cases import anisotropic_gaussian, two_d_mixture


def _gmm_log_density(prior: GMMDenoiser, x: torch.Tensor, sigma: float) -> torch.Tensor:
    comps = torch.distributions.MultivariateNormal(
        prior.means, prior.covs + sigma**2 * torch.eye(prior.dim, dtype=torch.float64)
    )
    mix = torch.distributions.MixtureSameFamily(torch.distributions.Categorical(prior.weights), comps)
    return mix.log_prob(x)


@pytest.mark.parametrize("sigma", [0.05, 0.5, 3.0])
def test_gmm_denoiser_satisfies_tweedie(sigma):
    """D(x) = x + sigma^2 grad log p_sigma(x), with the score from autograd of the density."""
    prior = two_d_mixture()
    x = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2
    x.requires_grad_(True)
    (score,) = torch.autograd.grad(_gmm_log_density(prior, x, sigma).sum(), x)
    torch.testing.assert_close(prior(x.detach(), sigma), x.detach() + sigma**2 * score)


def test_one_component_gmm_equals_the_gaussian_denoiser():
    gauss = anisotropic_gaussian(4)
    gmm = GMMDenoiser(torch.ones(1, dtype=torch.float64), gauss.mean[None], gauss.cov[None])
    x = torch.randn(10, 4, dtype=torch.float64)
    sigmas = torch.linspace(0.1, 2, 10, dtype=torch.float64)
    torch.testing.assert_close(gmm(x, sigmas), gauss(x, sigmas))


def test_gaussian_denoiser_matches_the_closed_form_posterior_mean_on_images():
    gauss = anisotropic_gaussian(16)
    y = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    mean, _ = theory.gaussian_posterior(gauss.mean, gauss.cov, y, 0.3)
    torch.testing.assert_close(gauss(y, 0.3), mean.reshape(3, 1, 4, 4))


@pytest.mark.parametrize("prior", [anisotropic_gaussian(3), two_d_mixture()], ids=["gauss", "gmm"])
def test_posterior_samples_have_the_posterior_mean(prior):
    n, sigma_y = 40000, 0.5
    y = torch.full((1, prior.dim), 0.3, dtype=torch.float64)
    samples = prior.posterior_sample(y.expand(n, -1), sigma_y,
                                     generator=torch.Generator().manual_seed(1))
    spread = samples.std(0).max()
    assert (samples.mean(0) - prior(y, sigma_y)[0]).abs().max() < 4 * spread / math.sqrt(n)


def test_gaussian_posterior_samples_have_the_posterior_covariance():
    prior = anisotropic_gaussian(3)
    y = torch.zeros(50000, 3, dtype=torch.float64)
    samples = prior.posterior_sample(y, 0.7, generator=torch.Generator().manual_seed(2))
    post = prior.posterior_cov(0.7)
    assert float((torch.cov(samples.T) - post).norm() / post.norm()) < 0.03


def test_bad_priors_are_refused():
    with pytest.raises(ValueError, match="sum to 1"):
        GMMDenoiser(torch.tensor([0.5, 0.2]), torch.zeros(2, 2), torch.eye(2).repeat(2, 1, 1))
    with pytest.raises(ValueError, match="cov has shape"):
        GaussianDenoiser(torch.zeros(3), torch.eye(2))
    with pytest.raises(ValueError, match="positive semi-definite"):
        GaussianDenoiser(torch.zeros(2), torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
    with pytest.raises(ValueError, match="sigma has shape"):
        anisotropic_gaussian(2)(torch.zeros(3, 2, dtype=torch.float64), torch.ones(2))
