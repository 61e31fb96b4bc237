"""Counter-based noise: standard normal, reproducible, independent of the batch layout."""

from __future__ import annotations

import torch
from scipy import stats

from dpcore.noise import CounterNoise, mix32, row_keys


def _noise(seed, ids, lambdas, draw=0, n=64):
    keys = row_keys(seed, torch.as_tensor(ids), torch.as_tensor(lambdas, dtype=torch.float64))
    return CounterNoise(keys)(draw, torch.Size((keys.numel(), n)), dtype=torch.float64, device="cpu")


def test_values_are_standard_normal():
    z = _noise(0, torch.arange(100), [0.25, 1.0], n=1000).flatten().numpy()
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01


def test_rows_draws_and_elements_are_uncorrelated():
    z = _noise(0, torch.arange(200), [1.0], n=500)
    corr = torch.corrcoef(z)
    off_diag = corr - torch.diag(torch.diag(corr))
    assert off_diag.abs().max() < 0.25  # n = 500: |r| above 0.25 has p < 1e-8 per pair
    z2 = _noise(0, torch.arange(200), [1.0], draw=1, n=500)
    assert abs(float((z * z2).mean())) < 0.02


def test_a_row_depends_only_on_seed_id_and_lambda():
    full = _noise(3, [0, 1, 2, 3], [0.5, 1.0])  # rows: lambda-major
    part = _noise(3, [2], [1.0])
    torch.testing.assert_close(part[0], full[4 + 2])
    assert not torch.allclose(_noise(4, [2], [1.0]), part)
    assert not torch.allclose(_noise(3, [2], [0.5]), part)


def test_mix32_is_a_bijection_on_a_sample_of_inputs():
    x = torch.arange(0, 2**20, dtype=torch.long) * 4093
    assert mix32(x).unique().numel() == x.numel()
    assert int(mix32(x).max()) < 2**32 and int(mix32(x).min()) >= 0
