"""Checkpoints: round trip, unit conversion, clear errors, resume, and the shipped models."""

import numpy as np
import pytest
import torch

from data import datasets
from data.checkpoints import (
    MODELS_DIR,
    list_models,
    load_denoiser,
    read_checkpoint,
    resolve,
)
from data.train_model import train_model

SHIPPED = ("fashion-mnist", "sci-patches", "pinwheel", "s-curve", "moons")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    torch.manual_seed(0)
    return train_model("digits", out=out, steps=4, batch_size=8, save_every=2,
                       arch_kwargs={"widths": [8, 16]}, progress=False)


def test_checkpoint_files_and_metadata(tiny):
    for suffix in (".pt", ".state.pt", ".loss.csv", ".loss.png", ".md"):
        assert tiny.with_suffix("").with_suffix(suffix).exists(), suffix
    meta = read_checkpoint(tiny)
    assert meta["arch"] == "unet" and meta["channels"] == 1 and meta["steps"] == 4
    assert meta["data_scaling"] == "[-1,1]" and meta["command"] and meta["reproduce"]
    lines = tiny.with_suffix(".loss.csv").read_text().splitlines()
    assert lines[0] == "step,loss" and len(lines) == 5


def test_image_model_works_in_unit_interval_units(tiny):
    model = load_denoiser(tiny)
    assert model.channels == 1 and model.name == "tiny"
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        expected = (model.net(2 * x - 1, torch.full((3,), 0.4)) + 1) / 2
        torch.testing.assert_close(model(x, 0.2), expected)
        # sigma -> 0 returns the input in the user's units
        torch.testing.assert_close(model(x, 1e-7), x, atol=1e-5, rtol=0)


def test_resume_matches_a_straight_run(tmp_path):
    kwargs = {"steps": 6, "batch_size": 4, "arch_kwargs": {"widths": [8, 16]}, "progress": False}
    straight = train_model("digits", out=tmp_path / "a.pt", save_every=6, **kwargs)
    first = train_model("digits", out=tmp_path / "b.pt", save_every=3,
                        **{**kwargs, "steps": 3})
    resumed = train_model("digits", out=first, save_every=3, resume=True, **kwargs)
    a, b = read_checkpoint(straight), read_checkpoint(resumed)
    assert b["steps"] == 6
    for name, value in a["weights"].items():
        assert torch.equal(value, b["weights"][name]), name


def test_wrong_channel_count_is_a_clear_error(tiny):
    with pytest.raises(ValueError, match="1-channel model; expected 3"):
        load_denoiser(tiny, expect_channels=3)
    with pytest.raises(ValueError, match="expected 'mlp'"):
        load_denoiser(tiny, expect_arch="mlp")


def test_weights_that_do_not_fit_the_architecture(tiny, tmp_path):
    ckpt = torch.load(tiny, weights_only=True)
    ckpt["arch_kwargs"] = {**ckpt["arch_kwargs"], "channels": 3}
    bad = tmp_path / "rgb.pt"
    torch.save(ckpt, bad)
    with pytest.raises(ValueError, match="do not fit"):
        load_denoiser(bad)


def test_corrupt_and_foreign_files(tiny, tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(tiny.read_bytes()[:1000])
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_denoiser(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ValueError, match="not a dpflow denoiser"):
        load_denoiser(foreign)
    with pytest.raises(ValueError, match="no model 'no-such-model'"):
        load_denoiser("no-such-model")


def test_shipped_models_are_listed_and_small():
    rows = {row["name"]: row for row in list_models()}
    assert set(SHIPPED) <= set(rows)
    for name in SHIPPED:
        assert resolve(name) == MODELS_DIR / f"{name}.pt"
        assert rows[name]["size_mb"] < 10
        assert rows[name]["steps"] > 0


def _psnr(x, ref):
    return 10 * torch.log10(1 / (x.clamp(0, 1) - ref).square().flatten(1).mean(1))


@pytest.mark.parametrize("name", ["fashion-mnist", "sci-patches"])
def test_shipped_image_model_beats_the_noisy_input(name):
    model = load_denoiser(name, expect_channels=1)
    if name == "fashion-mnist":
        clean = torch.from_numpy(datasets.fashion_mnist("test")[:8].copy())[:, None]
    else:
        clean = torch.from_numpy(datasets.sci_patches("test", 32, n=8, seed=0))[:, None]
    gen = torch.Generator().manual_seed(0)
    for sigma in (0.1, 0.2, 0.4):
        y = clean + sigma * torch.randn(clean.shape, generator=gen)
        with torch.no_grad():
            gain = _psnr(model(y, sigma), clean) - _psnr(y, clean)
        # every image gains, and by several dB on average (the identity gains nothing)
        assert (gain > 1).all() and gain.mean() > 4, (sigma, gain)


@pytest.mark.parametrize("name", ["pinwheel", "s-curve", "moons"])
def test_shipped_2d_model_denoises(name):
    model = load_denoiser(name, expect_channels=2)
    x0 = torch.from_numpy(datasets.toy2d(name, 4000, 99))
    gen = torch.Generator().manual_seed(0)
    for sigma in (0.1, 0.5):
        y = x0 + sigma * torch.randn(x0.shape, generator=gen)
        with torch.no_grad():
            mse = (model(y, sigma) - x0).square().sum(1).mean().item()
        assert mse < 0.8 * 2 * sigma**2, (sigma, mse)
    assert np.allclose(model.meta["mean"], 0, atol=0.05) and model.meta["scale"] > 0
