"""Bundled data sources: shapes, ranges, fixed splits, determinism, and clear errors."""

import gzip

import numpy as np
import pytest

from data import datasets


def test_fashion_mnist_test_split():
    images = datasets.fashion_mnist("test")
    assert images.shape == (10000, 32, 32) and images.dtype == np.float32
    assert images.min() == 0 and images.max() == 1
    # 28 x 28 centred in 32 x 32: a 2-pixel zero border
    assert not images[:, :2].any() and not images[:, :, -2:].any()
    assert images[:, 2:30, 2:30].mean() > 0.2


def test_idx_reader_rejects_other_files(tmp_path):
    bad = tmp_path / "bad-idx3-ubyte.gz"
    with gzip.open(bad, "wb") as f:
        f.write(b"\x00\x00\x08\x01" + b"\x00" * 20)
    with pytest.raises(ValueError, match="not an idx3-ubyte"):
        datasets.read_idx_images(bad)


@pytest.mark.parametrize("split", ["valid", "TRAIN"])
def test_unknown_split(split):
    with pytest.raises(ValueError, match="unknown split"):
        datasets.fashion_mnist(split)
    with pytest.raises(ValueError, match="unknown split"):
        datasets.sci_images(split)


def test_sci_split_is_by_source_image():
    train, test = datasets.sci_images("train"), datasets.sci_images("test")
    assert not set(train) & set(test)
    assert {"moon", "coins"} <= set(test) and {"cell", "hubble_deep_field"} <= set(train)
    for image in (*train.values(), *test.values()):
        assert image.ndim == 2 and image.dtype == np.float32
        assert 0 <= image.min() and image.max() <= 1


def test_sci_test_tiles_are_deterministic_and_exact():
    tiles = datasets.sci_patches("test", 32)
    again = datasets.sci_patches("test", 32)
    np.testing.assert_array_equal(tiles, again)
    moon = datasets.sci_images("test")["moon"]
    np.testing.assert_array_equal(tiles[0], moon[:32, :32])  # moon comes first, raster order
    np.testing.assert_array_equal(tiles[1], moon[:32, 32:64])
    expected = sum((h // 32) * (w // 32) for h, w in
                   (im.shape for im in datasets.sci_images("test").values()))
    assert len(tiles) == expected
    subset = datasets.sci_patches("test", 32, n=10, seed=1)
    assert subset.shape == (10, 32, 32)
    assert all(any(np.array_equal(s, t) for t in tiles) for s in subset)


def test_sci_train_patches_are_seeded_crops():
    a = datasets.sci_patches("train", 16, n=50, seed=3)
    b = datasets.sci_patches("train", 16, n=50, seed=3)
    c = datasets.sci_patches("train", 16, n=50, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == (50, 16, 16) and 0 <= a.min() and a.max() <= 1


def test_digits():
    d = datasets.digits()
    assert d.shape == (1797, 8, 8) and d.max() == 1 and d.min() == 0


@pytest.mark.parametrize("name", datasets.TOY2D)
def test_toy2d_standardised_and_seeded(name):
    x = datasets.toy2d(name, 50000, 0)
    assert x.shape == (50000, 2) and x.dtype == np.float32
    np.testing.assert_allclose(x.mean(0), 0, atol=0.02)
    np.testing.assert_allclose(x.std(0), 1, atol=0.02)
    np.testing.assert_array_equal(datasets.toy2d(name, 100, 5), datasets.toy2d(name, 100, 5))
    assert not np.array_equal(datasets.toy2d(name, 100, 5), datasets.toy2d(name, 100, 6))


def test_pinwheel_has_five_arms():
    # Each arm starts at angle 2 pi k / 5 near radius 1 (before the spiral shear grows).
    pts = datasets.pinwheel(20000, 0, rate=0.0)
    angle = np.mod(np.arctan2(pts[:, 1], pts[:, 0]), 2 * np.pi)
    nearest = np.round(angle / (2 * np.pi / 5)) % 5
    counts = np.bincount(nearest.astype(int), minlength=5)
    assert counts.min() > 0.18 * len(pts)
    offset = np.abs(angle - nearest * 2 * np.pi / 5)
    assert np.median(np.minimum(offset, 2 * np.pi - offset)) < 0.1


def test_toy2d_errors():
    with pytest.raises(ValueError, match="unknown 2-D prior"):
        datasets.toy2d("spiral", 10, 0)
    with pytest.raises(ValueError, match="n must be"):
        datasets.toy2d("moons", 0, 0)


def test_user_collection_npy_and_folder(tmp_path):
    from skimage.io import imsave

    stack = (np.arange(2 * 9 * 10) % 256).astype(np.uint8).reshape(2, 9, 10)
    np.save(tmp_path / "c.npy", stack)
    loaded = datasets.load_collection(tmp_path / "c.npy")
    assert loaded.shape == (2, 1, 9, 10)
    np.testing.assert_allclose(loaded[:, 0], stack / 255, atol=1e-7)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, im in enumerate(stack):
        imsave(folder / f"{i}.png", im, check_contrast=False)
    np.testing.assert_allclose(datasets.load_collection(folder), loaded, atol=1e-7)
    rgb = np.random.default_rng(0).random((3, 8, 8, 3)).astype(np.float32)
    np.save(tmp_path / "rgb.npy", rgb)
    assert datasets.load_collection(tmp_path / "rgb.npy").shape == (3, 3, 8, 8)


def test_user_collection_errors(tmp_path):
    np.save(tmp_path / "big.npy", np.full((2, 4, 4), 3.0))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        datasets.load_collection(tmp_path / "big.npy")
    with pytest.raises(ValueError, match="neither"):
        datasets.load_collection(tmp_path / "missing.npy")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        datasets.load_collection(tmp_path / "empty")
