"""LPIPS / DISTS / VGG features ported to torch from weights that ship in packages.

Absolute reference values: the torchmetrics DISTS docstring (torchmetrics 1.9,
``torchmetrics/functional/image/dists.py``), whose doctest runs under torchmetrics'
``src/conftest.py`` fixture ``reset_random_seed`` (``torch.manual_seed(42)`` before each
doctest) with torchvision's ImageNet VGG16: ``preds = rand(5, 3, 256, 256)``,
``target = rand(5, 3, 256, 256)`` gives ``[0.1285, 0.1344, 0.1356, 0.1277, 0.1276]``. This
checks the VGG16 weights, their layout, the L2 pooling and the DISTS formula at once; LPIPS-vgg
shares the same VGG16 backbone. The LPIPS linear heads are compared element for element with the
authors' v0.1 files that torchmetrics ships. No published LPIPS value on inputs available
offline was found (the LPIPS repository's example images are not shipped by any package), so the
AlexNet backbone is checked by properties only.
"""

from __future__ import annotations

import pytest
import torch

from data.weights import dists_weights, lpips_weights, official_lpips_heads
from dpcore import metrics
from dpcore.perceptual import DISTS, LPIPS, VGGEmbedding, prepare_images


@pytest.fixture(scope="module")
def models():
    torch.set_num_threads(2)
    return {
        "lpips_alex": LPIPS(lpips_weights("alex"), "alex"),
        "lpips_vgg": LPIPS(lpips_weights("vgg"), "vgg"),
        "dists": DISTS(dists_weights()),
    }


def camera(n: int = 2, side: int = 64) -> torch.Tensor:
    """Crops of scikit-image's bundled 'camera' photograph, (n, 1, side, side) in [0, 1]."""
    from skimage import data

    img = torch.from_numpy(data.camera()).float() / 255
    return torch.stack([img[100 + 90 * i:100 + 90 * i + side, 200:200 + side] for i in range(n)])[
        :, None
    ]


def blur(x: torch.Tensor, width: float) -> torch.Tensor:
    r = torch.arange(-4, 5.0)
    k = torch.exp(-(r**2) / (2 * width**2))
    k = (k[:, None] * k[None, :] / k.sum() ** 2)[None, None]
    return torch.nn.functional.conv2d(torch.nn.functional.pad(x, (4,) * 4, mode="reflect"), k)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_heads_equal_the_official_v0_1_files(net):
    ours, official = lpips_weights(net), official_lpips_heads(net)
    for key, value in official.items():
        assert torch.equal(ours[key], value), key
        assert (value >= 0).all()  # LPIPS clamps its heads non-negative when training


def test_dists_matches_published_reference_values(models):
    torch.manual_seed(42)
    preds, target = torch.rand(5, 3, 256, 256), torch.rand(5, 3, 256, 256)
    expected = torch.tensor([0.1285, 0.1344, 0.1356, 0.1277, 0.1276])
    torch.testing.assert_close(models["dists"](preds, target), expected, atol=6e-5, rtol=0)


@pytest.mark.parametrize("name", ["lpips_alex", "lpips_vgg", "dists"])
def test_identity_symmetry_and_monotone_in_noise_and_blur(models, name):
    model, x = models[name], camera(side=48)
    torch.testing.assert_close(model(x, x), torch.zeros(len(x)), atol=1e-6, rtol=0)
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    noisy = torch.stack([model((x + s * z).clamp(0, 1), x) for s in (0.03, 0.1, 0.3)])
    blurred = torch.stack([model(blur(x, w), x) for w in (0.7, 1.5, 3.0)])
    assert (noisy.diff(dim=0) > 0).all() and (blurred.diff(dim=0) > 0).all()
    y = (x + 0.1 * z).clamp(0, 1)
    if name.startswith("lpips"):  # LPIPS is symmetric by construction; DISTS is too
        torch.testing.assert_close(model(y, x), model(x, y))


@pytest.mark.parametrize("name", ["lpips_alex", "lpips_vgg", "dists"])
def test_small_grayscale_images_are_upsampled(models, name):
    x = camera(3, side=28)
    assert prepare_images(x).shape == (3, 3, 64, 64)
    assert prepare_images(camera(1, side=40)).shape == (1, 3, 40, 40)
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    out = models[name]((x + 0.1 * z).clamp(0, 1), x)
    assert out.shape == (3,) and (out > 0).all()


def test_bad_shapes_raise(models):
    with pytest.raises(ValueError, match="differ in shape"):
        models["lpips_alex"](torch.zeros(1, 1, 32, 32), torch.zeros(1, 1, 32, 16))
    with pytest.raises(ValueError, match="expected images"):
        models["dists"](torch.zeros(1, 2, 32, 32), torch.zeros(1, 2, 32, 32))
    with pytest.raises(ValueError, match="unknown net"):
        lpips_weights("squeeze")


def test_perception_index_with_a_learned_model(models):
    x = camera()
    y = blur(x, 2.0)
    torch.testing.assert_close(
        metrics.perception_index(y, x, kind="lpips_alex", model=models["lpips_alex"]),
        models["lpips_alex"](y, x),
    )


def test_fd_vgg_and_kid_on_features():
    embedding = VGGEmbedding(lpips_weights("vgg"), layers=("relu1_2", "relu2_2"))
    x = camera(4, side=32)
    feats = metrics.embed(x, embedding, batch_size=3)
    assert feats.shape == (4, 64 + 128)
    assert metrics.fd_vgg(x, x, embedding=embedding) == pytest.approx(0.0, abs=1e-3)
    far = metrics.fd_vgg(blur(x, 3.0), x, embedding=embedding)
    near = metrics.fd_vgg(blur(x, 0.7), x, embedding=embedding)
    assert far > near > 0
    assert metrics.kid_vgg(blur(x, 3.0), x, embedding=embedding) > 0
    with pytest.raises(ValueError, match="unknown VGG layers"):
        VGGEmbedding(lpips_weights("vgg"), layers=("fc7",))
