"""The variance-scaled sampler against the Gaussian closed forms of ../shared/MATH.md."""

from __future__ import annotations

import pytest
import torch

from dpcore import theory
from dpcore.diagnostics import exact_end_covariance
from dpcore.metrics import w2_samples
from dpcore.sampler import DEFAULT_STEPS, variance_scaled_denoise
from tests.gaussian_cases import anisotropic_gaussian, two_d_mixture

SIGMAS_Y = [0.1, 0.5, 2.0]


def _measure(denoiser, sigma_y, n=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = denoiser.sample(n, generator=g)
    return x, x + sigma_y * torch.randn(x.shape, generator=g, dtype=x.dtype)


@pytest.mark.parametrize("d", [2, 16])
@pytest.mark.parametrize("sigma_y", SIGMAS_Y)
@pytest.mark.parametrize("steps", [1, 3, 20])
def test_lambda_zero_ends_at_the_mmse_for_any_step_count(d, sigma_y, steps):
    prior = anisotropic_gaussian(d)
    _, y = _measure(prior, sigma_y, n=5)
    out = variance_scaled_denoise(prior, y, sigma_y, [0.0], steps=steps)
    mmse, _ = theory.gaussian_posterior(prior.mean, prior.cov, y, sigma_y)
    torch.testing.assert_close(out[0], mmse, rtol=0, atol=1e-10)


def test_per_sample_sigma_y_gives_each_row_its_own_mmse():
    prior = anisotropic_gaussian(16)
    sigmas = torch.tensor([0.1, 0.5, 2.0], dtype=torch.float64)
    _, y = _measure(prior, 1.0, n=3)
    out = variance_scaled_denoise(prior, y, sigmas, [0.0], steps=7)
    for b, s in enumerate(sigmas.tolist()):
        mmse, _ = theory.gaussian_posterior(prior.mean, prior.cov, y[b : b + 1], s)
        torch.testing.assert_close(out[0, b : b + 1], mmse, rtol=0, atol=1e-10)


@pytest.mark.parametrize("variance", ["split", "bridge"])
@pytest.mark.parametrize("d", [2, 16])
def test_end_covariance_scales_exactly_with_lambda(d, variance):
    prior = anisotropic_gaussian(d, seed=1)
    _, y = _measure(prior, 0.5)
    c1 = exact_end_covariance(prior, y, 0.5, 1.0, steps=8, variance=variance)
    for lam in [0.1, 0.5]:
        c = exact_end_covariance(prior, y, 0.5, lam, steps=8, variance=variance)
        torch.testing.assert_close(c, lam * c1, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("d", [2, 16])
@pytest.mark.parametrize("sigma_y", SIGMAS_Y)
def test_lambda_one_covariance_is_within_3_percent_of_the_posterior(d, sigma_y):
    prior = anisotropic_gaussian(d)
    _, y = _measure(prior, sigma_y)
    cov = exact_end_covariance(prior, y, sigma_y, 1.0, steps=DEFAULT_STEPS)
    post = prior.posterior_cov(sigma_y)
    assert float((cov - post).norm() / post.norm()) < 0.03


def test_bridge_variance_needs_more_steps_than_split():
    """The measured reason for the default: at 20 steps the plain bridge is far off."""
    prior = anisotropic_gaussian(16)
    _, y = _measure(prior, 0.5)
    post = prior.posterior_cov(0.5)
    err = {v: float((exact_end_covariance(prior, y, 0.5, 1.0, steps=20, variance=v) - post)
                    .norm() / post.norm()) for v in ["split", "bridge"]}
    assert err["split"] < 0.03 < 0.1 < err["bridge"]


@pytest.mark.parametrize("d", [2, 16])
@pytest.mark.parametrize("sigma_y", [0.2, 1.0])
def test_sampler_points_lie_on_the_conditional_dp_curve(d, sigma_y):
    prior = anisotropic_gaussian(d)
    _, y = _measure(prior, sigma_y)
    post_mean, post_cov = theory.gaussian_posterior(prior.mean, prior.cov, y, sigma_y)
    trace = float(torch.trace(post_cov))
    c1 = exact_end_covariance(prior, y, sigma_y, 1.0, steps=DEFAULT_STEPS)
    for lam in torch.linspace(0, 1, 11).tolist():
        # Mean is exact (previous tests); MSE = tr(post cov) + tr(output cov).
        mse = trace + lam * float(torch.trace(c1))
        w2 = float(theory.gaussian_w2(post_mean[0], post_cov, post_mean[0], lam * c1))
        optimal = float(theory.conditional_dp_curve(trace, min(w2, trace**0.5)))
        assert abs(mse - optimal) / optimal < 0.03
        mse_theory, w2_theory = theory.variance_scaled_point(trace, lam)
        assert abs(mse - float(mse_theory)) / float(mse_theory) < 0.03


def test_monte_carlo_points_match_theory_with_the_real_noise():
    prior = anisotropic_gaussian(2)
    sigma_y = 0.5
    _, y = _measure(prior, sigma_y)
    n = 20000
    out = variance_scaled_denoise(prior, y.expand(n, 2), sigma_y, [0.0, 0.5, 1.0], seed=3)
    post_mean, post_cov = theory.gaussian_posterior(prior.mean, prior.cov, y, sigma_y)
    trace = float(torch.trace(post_cov))
    exact = prior.posterior_sample(y.expand(n, 2), sigma_y, generator=torch.Generator().manual_seed(4))
    for lam, samples in zip([0.0, 0.5, 1.0], out):
        mse = float((samples - exact).pow(2).sum(1).mean())  # E||xhat - x||^2, x ~ p(x|y)
        assert abs(mse - trace * (1 + lam)) / (trace * (1 + lam)) < 0.04


def test_gmm_lambda_one_matches_exact_posterior_samples():
    prior = two_d_mixture()
    sigma_y, n = 0.5, 1500
    y = torch.tensor([[0.0, 0.0]], dtype=torch.float64)  # between components: multimodal
    gen = torch.Generator().manual_seed(0)
    exact_a = prior.posterior_sample(y.expand(n, 2), sigma_y, generator=gen)
    exact_b = prior.posterior_sample(y.expand(n, 2), sigma_y, generator=gen)
    sampled = variance_scaled_denoise(prior, y.expand(n, 2), sigma_y, [1.0], seed=1)[0]
    floor = w2_samples(exact_a, exact_b)
    assert w2_samples(sampled, exact_a) < 1.5 * floor + 0.02


def test_gmm_lambda_one_has_about_twice_the_mse_of_lambda_zero():
    prior = two_d_mixture()
    x, y = _measure(prior, 0.5, n=20000, seed=2)
    out = variance_scaled_denoise(prior, y, 0.5, [0.0, 1.0], seed=0)
    mse0, mse1 = ((out - x) ** 2).sum(-1).mean(-1)
    assert 1.8 < float(mse1 / mse0) < 2.2


def test_the_grid_is_the_batch_one_denoiser_call_per_step():
    prior = anisotropic_gaussian(2)
    batches = []

    def counting(x, sigma):
        batches.append(x.shape[0])
        return prior(x, sigma)

    y = torch.zeros(3, 2, dtype=torch.float64)
    variance_scaled_denoise(counting, y, 0.5, [0.0, 0.5, 1.0], steps=7, seed=0)
    assert batches == [9] * 7


def test_noise_depends_only_on_seed_sample_and_lambda():
    prior = anisotropic_gaussian(16)
    _, y = _measure(prior, 0.5, n=8)
    full = variance_scaled_denoise(prior, y, 0.5, [0.0, 0.5, 1.0], seed=7)
    part = variance_scaled_denoise(prior, y[[5, 2]], 0.5, [1.0, 0.5], seed=7,
                                   sample_ids=torch.tensor([5, 2]))
    torch.testing.assert_close(part[0], full[2, [5, 2]], rtol=0, atol=1e-12)
    torch.testing.assert_close(part[1], full[1, [5, 2]], rtol=0, atol=1e-12)
    other = variance_scaled_denoise(prior, y, 0.5, [0.0, 0.5, 1.0], seed=8)
    torch.testing.assert_close(other[0], full[0], rtol=0, atol=1e-12)  # lambda 0: no noise
    assert (other[2] - full[2]).abs().max() > 1e-3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lambdas": [0.0, 1.5]}, "lambdas must lie in"),
        ({"lambdas": [-0.1]}, "lambdas must lie in"),
        ({"lambdas": [0.5, 0.5]}, "duplicates"),
        ({"lambdas": []}, "empty"),
        ({"sigma_y": 0.0}, "sigma_y must be finite and > 0"),
        ({"sigma_y": float("nan")}, "sigma_y must be finite and > 0"),
        ({"sigma_y": torch.tensor([0.1, 0.2])}, "sigma_y has shape"),
        ({"steps": 0}, "steps must be >= 1"),
        ({"schedule": "cosine"}, "unknown schedule"),
        ({"variance": "ddim"}, "unknown variance"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(kwargs, message):
    prior = anisotropic_gaussian(2)
    args = {"y": torch.zeros(3, 2, dtype=torch.float64), "sigma_y": 0.5, "lambdas": [0.0]}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        variance_scaled_denoise(prior, **args)


def test_nan_in_y_is_refused():
    prior = anisotropic_gaussian(2)
    y = torch.tensor([[0.0, float("nan")]], dtype=torch.float64)
    with pytest.raises(ValueError, match="NaN or Inf"):
        variance_scaled_denoise(prior, y, 0.5, [0.0])


@pytest.mark.parametrize("name", ["karras", "geometric", "linear"])
def test_schedules_live_on_the_device_of_sigma_max(name):
    """The sampler builds its schedule from sigma_y on the images' device; a grid left on the CPU
    broke every CUDA run (the meta device stands in for a GPU here)."""
    from dpcore.schedules import get_schedule

    sigmas = get_schedule(name)(5, torch.ones(3, dtype=torch.float64, device="meta"))
    assert sigmas.device.type == "meta" and sigmas.shape == (6, 3)
