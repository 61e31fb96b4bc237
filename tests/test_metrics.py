"""Distortion and perception metrics on cases with known answers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dpcore import metrics
from dpcore.denoisers import GaussianDenoiser
from dpcore.sampler import variance_scaled_denoise
from dpcore.theory import gaussian_w2, variance_scaled_unconditional


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def textured(n: int = 4, side: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth random textures in [0, 1]: low-pass filtered white noise."""
    z = torch.randn(n, 1, side, side, generator=gen(seed))
    k = torch.exp(-torch.arange(-3, 4.0) ** 2 / 4)
    k = (k[:, None] * k[None, :] / k.sum() ** 2)[None, None]
    smooth = torch.nn.functional.conv2d(z, k, padding=3)
    return (0.5 + 0.8 * smooth).clamp(0, 1)


def test_identical_images_are_perfect():
    x = textured()
    assert metrics.mse(x, x).eq(0).all()
    assert metrics.sse(x, x).eq(0).all()
    torch.testing.assert_close(metrics.ssim(x, x), torch.ones(len(x)))
    assert metrics.psnr(x, x).isinf().all()
    assert metrics.patch_sw(x, x).eq(0).all()


@pytest.mark.parametrize("name", ["mse", "ssim", "psnr", "patch_sw"])
def test_metrics_worsen_with_noise(name):
    x = textured()
    z = torch.randn(x.shape, generator=gen(1))
    values = torch.stack([getattr(metrics, name)(x + s * z, x) for s in (0.02, 0.05, 0.1, 0.2)])
    steps = values.diff(dim=0)
    assert (steps < 0).all() if name in ("ssim", "psnr") else (steps > 0).all()


def test_mse_per_image_and_psnr_relation():
    x, y = textured(3), textured(3, seed=5)
    expected = (x - y).pow(2).mean((1, 2, 3))
    torch.testing.assert_close(metrics.mse(x, y), expected)
    torch.testing.assert_close(metrics.psnr(x, y), -10 * torch.log10(expected))


def test_frechet_distance_matches_gaussian_w2_closed_form():
    # n = 20000 samples in d = 4: moment errors are O(n^-1/2), so a 3% tolerance is ample.
    d = 4
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen(0), dtype=torch.float64))
    c1 = (q * torch.tensor([0.5, 1.0, 2.0, 3.0], dtype=torch.float64)) @ q.T
    c2 = torch.diag(torch.tensor([1.0, 0.3, 2.5, 1.2], dtype=torch.float64))
    m1, m2 = torch.zeros(d, dtype=torch.float64), torch.full((d,), 0.4, dtype=torch.float64)
    a = GaussianDenoiser(m1, c1).sample(20000, generator=gen(1))
    b = GaussianDenoiser(m2, c2).sample(20000, generator=gen(2))
    exact = float(gaussian_w2(m1, c1, m2, c2))
    assert metrics.frechet_distance(a, b) == pytest.approx(exact, rel=0.03)


def test_sliced_w2_is_seeded_and_grows_with_shift():
    a = torch.randn(500, 6, generator=gen(0))
    b = torch.randn(500, 6, generator=gen(1))
    assert metrics.sliced_w2(a, b, seed=3) == metrics.sliced_w2(a, b, seed=3)
    assert metrics.sliced_w2(a, a) == pytest.approx(0.0, abs=1e-12)
    shifted = [metrics.sliced_w2(a, b + s) for s in (0.0, 0.5, 1.0)]
    assert shifted[0] < shifted[1] < shifted[2]
    # A shift by s along all d axes moves every unit projection by s * theta.sum(); its mean
    # square over the sphere is s^2, so the sliced distance of a pure shift is s (up to noise).
    assert metrics.sliced_w2(a, a + 1.0, n_projections=2000) == pytest.approx(1.0, rel=0.1)


def test_kid_near_zero_for_equal_laws_and_positive_otherwise():
    a = torch.randn(400, 16, generator=gen(0))
    b = torch.randn(400, 16, generator=gen(1))
    c = torch.randn(400, 16, generator=gen(2)) * 1.5 + 0.5
    same, diff = metrics.kid(a, b), metrics.kid(a, c)
    assert diff > 0.5
    assert abs(same) < 0.02 * diff
    assert metrics.kid(a, c, subset_size=100, n_subsets=20, seed=1) == pytest.approx(diff, rel=0.2)


def test_with_floor_reports_the_two_sample_floor():
    ref, held = torch.randn(300, 8, generator=gen(0)), torch.randn(300, 8, generator=gen(1))
    x = torch.randn(300, 8, generator=gen(2)) + 0.5
    value, floor = metrics.with_floor(metrics.frechet_distance, ref, held, x)
    assert 0 < floor < 0.5 * value
    # Shift 0.5 in 8 axes: W2 = sqrt(8) * 0.5.
    assert value == pytest.approx(math.sqrt(8) * 0.5, abs=3 * floor)
    with pytest.raises(ValueError, match="equal sizes"):
        metrics.with_floor(metrics.frechet_distance, ref, held[:100], x)


def test_conditional_w2_matches_closed_form_in_2d():
    # Outputs N(mu, lam S) against exact posterior N(mu, S): W2 = (1 - sqrt lam) sqrt(tr S).
    cov = torch.tensor([[0.5, 0.2], [0.2, 0.3]], dtype=torch.float64)
    lam, k = 0.25, 1000
    post = GaussianDenoiser(torch.zeros(2, dtype=torch.float64), cov)
    shrunk = GaussianDenoiser(torch.zeros(2, dtype=torch.float64), lam * cov)
    samples = torch.stack([shrunk.sample(k, generator=gen(i)) for i in range(3)])
    exact_post = torch.stack([post.sample(k, generator=gen(10 + i)) for i in range(3)])
    floor = metrics.conditional_w2(post.sample(k, generator=gen(99))[None], exact_post[:1])
    w2 = metrics.conditional_w2(samples, exact_post)
    expected = (1 - lam**0.5) * float(torch.trace(cov)) ** 0.5
    assert w2.shape == (3,)
    assert (w2 - expected).abs().max() < float(floor) + 0.03 * expected


def test_unconditional_w2_of_the_sampler_matches_theory():
    mean = torch.zeros(2, dtype=torch.float64)
    cov = torch.tensor([[1.0, 0.3], [0.3, 0.4]], dtype=torch.float64)
    prior, sigma, n = GaussianDenoiser(mean, cov), 0.7, 1500
    x = prior.sample(n, generator=gen(0))
    y = x + sigma * torch.randn(x.shape, generator=gen(1), dtype=torch.float64)
    outs = variance_scaled_denoise(prior, y, sigma, [0.0, 1.0], steps=40, seed=2)
    held = prior.sample(n, generator=gen(3))
    floor = metrics.unconditional_w2(held, prior.sample(n, generator=gen(4)))
    _, exact = variance_scaled_unconditional(mean, cov, sigma, [0.0, 1.0])
    for out, w2 in zip(outs, exact, strict=True):
        assert metrics.unconditional_w2(out, held) == pytest.approx(float(w2), abs=2 * floor)


def test_patch_sw_is_seeded_position_blind_and_checks_size():
    x = textured(2, 32)
    y = x + 0.05 * torch.randn(x.shape, generator=gen(1))
    assert torch.equal(metrics.patch_sw(y, x, seed=4), metrics.patch_sw(y, x, seed=4))
    rolled = torch.roll(x, shifts=(7, 11), dims=(2, 3))
    # Moving content is cheap (only border patches change), pixel MSE is not.
    ratio = metrics.patch_sw(rolled, x) / metrics.mse(rolled, x).sqrt()
    assert (ratio < 0.3).all()
    with pytest.raises(ValueError, match="too small"):
        metrics.patch_sw(torch.zeros(1, 1, 3, 3), torch.zeros(1, 1, 3, 3))


def test_perception_index_default_and_errors():
    x = textured(2)
    y = x.flip(-1)
    torch.testing.assert_close(metrics.perception_index(y, x), metrics.patch_sw(y, x))
    assert "patch" in metrics.PERCEPTION_DEFINITION
    with pytest.raises(ValueError, match="unknown perception"):
        metrics.perception_index(y, x, kind="fid")
    with pytest.raises(ValueError, match="needs model"):
        metrics.perception_index(y, x, kind="lpips_alex")


def test_residual_noise_distance_prefers_posterior_samples():
    prior = GaussianDenoiser(torch.zeros(100, dtype=torch.float64),
                             torch.eye(100, dtype=torch.float64) * 0.5)
    n, sigma = 64, 0.6
    x = prior.sample(n, generator=gen(0)).reshape(n, 1, 10, 10)
    y = x + sigma * torch.randn(x.shape, generator=gen(1), dtype=torch.float64)
    mmse, post = variance_scaled_denoise(prior, y, sigma, [0.0, 1.0], steps=10, seed=3)
    truth = metrics.residual_noise_distance(y, x, sigma).mean()
    at_mmse = metrics.residual_noise_distance(y, mmse, sigma).mean()
    at_post = metrics.residual_noise_distance(y, post, sigma).mean()
    # The MMSE residual has std sigma^2 / sqrt(0.5 + sigma^2), about 0.65 sigma, not sigma.
    assert at_mmse > 1.15 * truth
    assert abs(at_post - truth) < 0.15 * truth


def test_patch_sw_stack_of_outputs_equals_separate_calls():
    ref = textured(3, 24)
    outs = torch.stack([ref + s * torch.randn(ref.shape, generator=gen(5)) for s in (0.0, 0.1, 0.3)])
    stacked = metrics.patch_sw(outs, ref, seed=2)
    assert stacked.shape == (3, 3)
    torch.testing.assert_close(stacked, torch.stack([metrics.patch_sw(o, ref, seed=2) for o in outs]),
                               rtol=0, atol=0)
    assert stacked[0].eq(0).all() and (stacked[1] < stacked[2]).all()
    torch.testing.assert_close(metrics.perception_index(outs, ref, seed=2), stacked)
    with pytest.raises(ValueError, match="equal image shape"):
        metrics.patch_sw(outs[:, :2], ref)


def test_patch_sw_large_images_use_a_bounded_seeded_subset_of_patches():
    # The subset is the unfold columns at seeded positions, shared by every image.
    images = torch.rand(2, 3, 21, 19, generator=gen(3), dtype=torch.float64)
    pick = torch.randperm(9 * 8, generator=torch.Generator().manual_seed(9))[:30]
    picked = metrics._patches(images, 4, 2, pick)
    torch.testing.assert_close(picked, F.unfold(images, 4, stride=2)[..., pick], rtol=0, atol=0)
    # Bounded: below the cap nothing changes; above it, identical images still score 0 and the
    # subset estimate stays close to the full one.
    x = textured(2, 64)
    y = x + 0.1 * torch.randn(x.shape, generator=gen(6))
    full = metrics.patch_sw(y, x, max_patches=10**6)
    assert torch.equal(metrics.patch_sw(y, x, max_patches=61 * 61), full)
    sub = metrics.patch_sw(y, x, max_patches=1024)
    assert not torch.equal(sub, full)
    torch.testing.assert_close(sub, full, rtol=0.05, atol=0)
    assert metrics.patch_sw(x, x, max_patches=512).eq(0).all()


def test_patch_sw_does_not_depend_on_the_image_block():
    # Images are measured in blocks to bound memory; one image per block gives the same values,
    # and the CPU's NumPy sort agrees with torch's.
    ref = textured(5, 24)
    outs = torch.stack([ref + s * torch.randn(ref.shape, generator=gen(7)) for s in (0.05, 0.2)])
    whole = metrics.patch_sw(outs, ref, seed=1)
    assert torch.equal(metrics.patch_sw(outs, ref, seed=1, block_elements=1), whole)
    v = torch.randn(3, 4, 50, generator=gen(8), dtype=torch.float64)
    assert torch.equal(metrics._sort_last(v), v.sort(dim=-1).values)
