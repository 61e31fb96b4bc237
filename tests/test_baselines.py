"""Traversal baselines on a Gaussian prior, where their curves are known in closed form."""

from __future__ import annotations

import pytest
import torch

from dpcore import baselines
from dpcore.sampler import variance_scaled_denoise
from tests.gaussian_cases import anisotropic_gaussian


@pytest.fixture(scope="module")
def case():
    prior = anisotropic_gaussian(2)
    g = torch.Generator().manual_seed(0)
    y = prior.sample(1, generator=g) + 0.5 * torch.randn(1, 2, generator=g, dtype=torch.float64)
    n = 6000
    exact = prior.posterior_sample(y.expand(n, 2), 0.5, generator=g)
    trace = float(torch.trace(prior.posterior_cov(0.5)))
    return prior, y.expand(n, 2).contiguous(), exact, trace


def test_tweedie_is_the_one_step_posterior_mean(case):
    prior, y, _, _ = case
    torch.testing.assert_close(baselines.tweedie_mmse(prior, y[:3], 0.5), prior(y[:3], 0.5))


def test_k_average_mse_follows_one_plus_one_over_k(case):
    prior, y, exact, trace = case
    out = baselines.k_average(prior, y, 0.5, [1, 2, 4], seed=0)
    for k, est in zip([1, 2, 4], out):
        mse = float((est - exact).pow(2).sum(1).mean())
        assert mse == pytest.approx(trace * (1 + 1 / k), rel=0.06)


def test_k_average_of_one_is_a_lambda_one_sample(case):
    prior, y, _, _ = case
    one = baselines.k_average(prior, y[:4], 0.5, [1], seed=5)
    torch.testing.assert_close(one[0], variance_scaled_denoise(prior, y[:4], 0.5, [1.0], seed=5)[0])


def test_interpolation_mse_follows_one_plus_alpha_squared(case):
    prior, y, exact, trace = case
    out = baselines.interpolate(prior, y, 0.5, [0.0, 0.5, 1.0], seed=1)
    for alpha, est in zip([0.0, 0.5, 1.0], out):
        mse = float((est - exact).pow(2).sum(1).mean())
        assert mse == pytest.approx(trace * (1 + alpha**2), rel=0.06)


def test_bad_knobs_are_refused(case):
    prior, y, _, _ = case
    with pytest.raises(ValueError, match="positive integers"):
        baselines.k_average(prior, y[:2], 0.5, [0, 2])
    with pytest.raises(ValueError, match="alphas"):
        baselines.interpolate(prior, y[:2], 0.5, [1.5])
