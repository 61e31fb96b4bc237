"""EDM denoising score matching: loss identity, EMA, exact resume, and that training learns."""

import copy

import pytest
import torch

from data.datasets import toy2d
from dpcore.nets import build_denoiser
from dpcore.training import edm_loss, ema_decay_at, train, update_ema


def _mlp():
    torch.manual_seed(0)
    return build_denoiser("mlp", sigma_data=1.0, hidden=64, layers=3)


def _points_sampler(points: torch.Tensor):
    return lambda g, b: points[torch.randint(len(points), (b,), generator=g)]


def test_loss_equals_edm_weighted_denoising_error():
    # lambda(sigma) ||D(x0 + sigma n) - x0||^2 with lambda = (sigma^2 + sd^2) / (sigma sd)^2.
    model = _mlp()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x0, noise = torch.randn(5, 2), torch.randn(5, 2)
    sigma = torch.tensor([0.01, 0.1, 1.0, 3.0, 20.0])
    weight = (sigma**2 + 1.0) / sigma**2
    direct = weight * (model(x0 + sigma[:, None] * noise, sigma) - x0).square().mean(1)
    torch.testing.assert_close(edm_loss(model, x0, sigma, noise), direct, rtol=1e-4, atol=1e-5)


def test_ema_update_is_a_convex_combination():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = copy.deepcopy(a)
    update_ema(a, b, 0.9)
    torch.testing.assert_close(a.weight, 0.9 * before.weight + 0.1 * b.weight)
    assert ema_decay_at(0, 0.999) == pytest.approx(0.1)
    assert ema_decay_at(10**6, 0.999) == 0.999


def test_resume_continues_bit_for_bit():
    points = torch.from_numpy(toy2d("moons", 1000, 0))
    sample = _points_sampler(points)
    straight = train(_mlp(), sample, steps=8, batch_size=16, seed=3)
    half = train(_mlp(), sample, steps=4, batch_size=16, seed=3)
    half = copy.deepcopy(half)  # as if saved to disk and read back
    resumed = train(_mlp(), sample, steps=8, batch_size=16, seed=3, state=half)
    assert resumed["step"] == straight["step"] == 8
    assert resumed["losses"] == straight["losses"]
    for key in ("model", "ema"):
        for name, value in straight[key].items():
            assert torch.equal(value, resumed[key][name]), (key, name)
    # EMA weights differ from the raw weights but lie near them.
    diffs = [(straight["ema"][k] - straight["model"][k]).abs().max() for k in straight["model"]]
    assert max(diffs) > 0


def test_seed_changes_the_run():
    sample = _points_sampler(torch.from_numpy(toy2d("moons", 1000, 0)))
    a = train(_mlp(), sample, steps=3, batch_size=8, seed=0)
    b = train(_mlp(), sample, steps=3, batch_size=8, seed=1)
    assert a["losses"] != b["losses"]


@pytest.mark.slow
def test_gaussian_training_reaches_the_mmse():
    # Prior N(0, I) in 2-D: the MMSE denoiser is x / (1 + sigma^2), with error sigma^2/(1+sigma^2)
    # per coordinate; a trained model must get close to it and far below the identity's sigma^2.
    torch.manual_seed(0)
    model = build_denoiser("mlp", sigma_data=1.0, hidden=32, layers=2)
    sample = lambda g, b: torch.randn(b, 2, generator=g)  # noqa: E731
    state = train(model, sample, steps=300, batch_size=128, seed=0, lr=3e-3, warmup=30,
                  ema_decay=0.99)
    model.load_state_dict(state["ema"])
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn(20000, 2, generator=gen)
    for sigma in (0.3, 1.0, 3.0):
        y = x0 + sigma * torch.randn(x0.shape, generator=gen)
        with torch.no_grad():
            mse = (model(y, sigma) - x0).square().mean().item()
        mmse = sigma**2 / (1 + sigma**2)
        assert mmse * 0.97 < mse < 1.05 * mmse, (sigma, mse, mmse)


@pytest.mark.slow
def test_tiny_moons_model_beats_identity():
    points = torch.from_numpy(toy2d("moons", 20000, 0))
    torch.manual_seed(0)
    model = build_denoiser("mlp", sigma_data=1.0, hidden=32, layers=2)
    state = train(model, _points_sampler(points), steps=300, batch_size=128, seed=0, lr=3e-3,
                  warmup=30, p_mean=-0.6, p_std=1.6, ema_decay=0.99)
    model.load_state_dict(state["ema"])
    x0 = torch.from_numpy(toy2d("moons", 4000, 7))
    gen = torch.Generator().manual_seed(2)
    for sigma, bound in ((0.3, 0.9), (1.0, 0.6)):
        y = x0 + sigma * torch.randn(x0.shape, generator=gen)
        with torch.no_grad():
            mse = (model(y, sigma) - x0).square().mean().item()
        assert mse < bound * sigma**2, (sigma, mse)


def test_bad_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        train(_mlp(), lambda g, b: torch.zeros(b, 2), steps=1, batch_size=0)
