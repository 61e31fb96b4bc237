"""Networks behind the denoiser contract: shapes, EDM preconditioning limits and values."""

import math

import pytest
import torch

from dpcore.nets import EDMPrecond, build_denoiser, edm_coefficients


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _perturbed(model: EDMPrecond) -> EDMPrecond:
    """Give the zero-initialised output layers non-zero weights so tests see the network."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("channels, height, width", [(1, 32, 32), (1, 13, 7), (3, 33, 30),
                                                     (3, 5, 64), (1, 1, 1)])
def test_unet_keeps_shape_for_any_size_and_channels(channels, height, width):
    model = _perturbed(build_denoiser("unet", channels=channels, widths=(8, 16, 16)))
    x = torch.rand(2, channels, height, width)
    out = model(x, torch.tensor([0.1, 2.0]))
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_unet_rejects_wrong_channel_count():
    model = build_denoiser("unet", channels=3, widths=(8, 16))
    with pytest.raises(ValueError, match="expected"):
        model(torch.rand(2, 1, 8, 8), 0.5)


def test_scalar_sigma_equals_per_sample_sigma():
    model = _perturbed(build_denoiser("unet", channels=1, widths=(8, 16)))
    x = torch.randn(3, 1, 12, 12)
    torch.testing.assert_close(model(x, 0.3), model(x, torch.full((3,), 0.3)))


def test_per_sample_sigma_is_used_per_row():
    model = _perturbed(build_denoiser("mlp", sigma_data=1.0, hidden=32, layers=2))
    x = torch.randn(2, 2)
    both = model(x, torch.tensor([0.1, 3.0]))
    torch.testing.assert_close(both[1:], model(x[1:], 3.0))
    torch.testing.assert_close(both[:1], model(x[:1], 0.1))


def test_edm_coefficients_closed_form_at_sigma_data():
    sigma_data = 0.5
    c_skip, c_out, c_in, c_noise = edm_coefficients(torch.tensor([sigma_data]), sigma_data)
    assert c_skip.item() == pytest.approx(0.5)
    assert c_out.item() == pytest.approx(sigma_data / math.sqrt(2))
    assert c_in.item() == pytest.approx(1 / (sigma_data * math.sqrt(2)))
    assert c_noise.item() == pytest.approx(math.log(sigma_data) / 4)


def test_coefficients_give_unit_variance_input_and_target():
    # For data of std sigma_data, c_in x_sigma has unit variance and the regression target
    # (x0 - c_skip x_sigma) / c_out too (Karras et al. 2022, Appendix B.6).
    sigma_data, sigma = 0.5, torch.tensor([0.05, 0.5, 5.0])
    c_skip, c_out, c_in, _ = edm_coefficients(sigma, sigma_data)
    var_in = c_in**2 * (sigma_data**2 + sigma**2)
    var_target = ((1 - c_skip) ** 2 * sigma_data**2 + c_skip**2 * sigma**2) / c_out**2
    torch.testing.assert_close(var_in, torch.ones(3))
    torch.testing.assert_close(var_target, torch.ones(3))


@pytest.mark.parametrize("arch, kwargs, shape", [
    ("unet", {"channels": 1, "widths": (8, 16)}, (4, 1, 9, 9)),
    ("mlp", {"hidden": 32, "layers": 2}, (4, 2)),
])
def test_small_sigma_limit_is_identity(arch, kwargs, shape):
    model = _perturbed(build_denoiser(arch, **kwargs))
    x = torch.randn(shape)
    assert (model(x, 1e-6) - x).abs().max() < 1e-5
    # Far out the skip vanishes: shifting x by 100 barely moves D (c_skip ~ 1e-9, c_in ~ 1e-4).
    assert (model(x, 1e4) - model(x + 100.0, 1e4)).abs().max() < 1.0


def test_fresh_unet_is_the_skip_connection():
    # The output conv starts at zero, so an untrained model is exactly D = c_skip x.
    model = build_denoiser("unet", channels=1, widths=(8, 16))
    x = torch.randn(2, 1, 8, 8)
    sigma = torch.tensor([0.2, 1.0])
    c_skip = edm_coefficients(sigma, 0.5)[0]
    torch.testing.assert_close(model(x, sigma), c_skip[:, None, None, None] * x)


def test_unknown_architecture():
    with pytest.raises(ValueError, match="unknown architecture"):
        build_denoiser("transformer")
