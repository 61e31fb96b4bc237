"""Closed forms: W2 between Gaussians and the DP curves."""

from __future__ import annotations

import math

import pytest
import torch

from dpcore import theory


def test_gaussian_w2_in_one_dimension():
    m1, m2 = torch.tensor([1.0]), torch.tensor([-0.5])
    c1, c2 = torch.tensor([[4.0]]), torch.tensor([[0.25]])
    # W2^2 = (m1 - m2)^2 + (s1 - s2)^2
    assert float(theory.gaussian_w2(m1, c1, m2, c2)) == pytest.approx(math.sqrt(1.5**2 + 1.5**2))


def test_gaussian_w2_is_symmetric_and_zero_on_itself():
    a = torch.randn(5, 5, dtype=torch.float64)
    b = torch.randn(5, 5, dtype=torch.float64)
    ca, cb = a @ a.T + 0.1 * torch.eye(5), b @ b.T + 0.1 * torch.eye(5)
    m = torch.zeros(5, dtype=torch.float64)
    assert float(theory.gaussian_w2(m, ca, m, ca)) == pytest.approx(0, abs=1e-6)
    assert float(theory.gaussian_w2(m, ca, m, cb)) == pytest.approx(
        float(theory.gaussian_w2(m, cb, m, ca)), rel=1e-8)


def test_conditional_curve_passes_through_its_ends():
    assert float(theory.conditional_dp_curve(2.0, 0.0)) == pytest.approx(4.0)  # posterior sample
    assert float(theory.conditional_dp_curve(2.0, math.sqrt(2.0))) == pytest.approx(2.0)  # MMSE
    with pytest.raises(ValueError, match="perception must lie"):
        theory.conditional_dp_curve(2.0, 3.0)


def test_variance_scaled_points_are_on_the_conditional_curve():
    for lam in torch.linspace(0, 1, 11):
        mse, w2 = theory.variance_scaled_point(3.0, lam)
        assert float(mse) == pytest.approx(float(theory.conditional_dp_curve(3.0, w2)))


def test_freirich_example_variance_scaling_is_not_unconditionally_optimal():
    """X ~ N(0, 1), sigma_y = 1: D(0) = 0.586 is optimal, variance scaling's lambda = 1 gives 1.0."""
    mean, cov = torch.zeros(1, dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64)
    mmse, p_star = theory.unconditional_anchor(mean, cov, 1.0)
    assert mmse == pytest.approx(0.5)
    assert p_star == pytest.approx(1 - math.sqrt(0.5))
    assert float(theory.unconditional_dp_curve(mmse, p_star, 0.0)) == pytest.approx(0.5858, abs=1e-4)
    mse, w2 = theory.variance_scaled_unconditional(mean, cov, 1.0, [0.0, 1.0])
    assert mse.tolist() == pytest.approx([0.5, 1.0])
    assert w2.tolist() == pytest.approx([p_star, 0.0], abs=1e-7)


def test_linear_posterior_reduces_to_denoising_for_the_identity():
    a = torch.randn(4, 4, dtype=torch.float64)
    cov, mean = a @ a.T + torch.eye(4), torch.randn(4, dtype=torch.float64)
    y = torch.randn(2, 4, dtype=torch.float64)
    m1, c1 = theory.gaussian_posterior(mean, cov, y, 0.4)
    m2, c2 = theory.linear_gaussian_posterior(mean, cov, torch.eye(4, dtype=torch.float64), y, 0.4)
    torch.testing.assert_close(m1, m2)
    torch.testing.assert_close(c1, c2)
