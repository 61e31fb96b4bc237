"""Training and evaluation data that ships inside installed packages (nothing is downloaded).

- Fashion-MNIST (Xiao, Rasul, Vollgraf 2017) from Debian's ``dataset-fashion-mnist`` package,
  padded from 28 x 28 to 32 x 32 with zeros (the background value).
- scikit-image's bundled sample images, grayscale, with a FIXED split BY SOURCE IMAGE:
  train = cell, microaneurysms, hubble_deep_field, immunohistochemistry, retina, brick, grass,
  gravel (microscopy, astronomy, ophthalmology, material textures) plus the bundled photographs
  astronaut, chelsea, coffee, rocket, clock, page, text (edges, smooth shading and print, which
  the scientific images alone lack); held-out = moon, coins, camera (a lunar surface, a
  metal-coin photograph, a natural scene). No patch of a held-out image is ever seen in
  training. Every image that needs a download (``cells3d``, ``kidney``, ...) is left out.
- scikit-learn's digits (8 x 8) for fast tests, and 2-D toy priors (pinwheel, S-curve, moons).
- A user's own clean collection: a folder of images or a ``.npy`` array.

All images are float32 in [0, 1]; the model's own scaling ([-1, 1]) is applied by the trainer
and undone by the loaded denoiser (``data/checkpoints.py``).
"""

from __future__ import annotations

import gzip
from functools import cache
from pathlib import Path

import numpy as np

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
SCI_SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("cell", "microaneurysms", "hubble_deep_field", "immunohistochemistry", "retina",
              "brick", "grass", "gravel",
              "astronaut", "chelsea", "coffee", "rocket", "clock", "page", "text"),
    "test": ("moon", "coins", "camera"),
}
TOY2D = ("pinwheel", "s-curve", "moons")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def _check_split(split: str) -> str:
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}; choose 'train' or 'test'")
    return split


def read_idx_images(path: Path) -> np.ndarray:
    """Read an idx3-ubyte (optionally gzipped) file of uint8 images as ``(N, rows, cols)``."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    magic, n, rows, cols = np.frombuffer(raw[:16], dtype=">u4")
    if magic != 2051 or len(raw) != 16 + int(n) * int(rows) * int(cols):
        raise ValueError(f"{path} is not an idx3-ubyte image file")
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(int(n), int(rows), int(cols))


@cache
def fashion_mnist(split: str) -> np.ndarray:
    """Fashion-MNIST ``train`` (60k) or ``test`` (10k): ``(N, 32, 32)`` float32 in [0, 1]."""
    name = {"train": "train", "test": "t10k"}[_check_split(split)]
    path = FASHION_MNIST_DIR / f"{name}-images-idx3-ubyte.gz"
    if not path.exists():
        raise ValueError(f"{path} not found; install it with `apt-get install dataset-fashion-mnist`")
    images = read_idx_images(path).astype(np.float32) / 255
    out = np.pad(images, ((0, 0), (2, 2), (2, 2)))
    out.setflags(write=False)
    return out


def to_gray_float(image: np.ndarray) -> np.ndarray:
    """Any uint8/bool/float image, gray or RGB(A), as a float32 grayscale array in [0, 1]."""
    from skimage.color import rgb2gray, rgba2rgb
    from skimage.util import img_as_float32

    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 4:
        image = rgba2rgb(image)
    if image.ndim == 3 and image.shape[-1] == 3:
        image = rgb2gray(image)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale or RGB image; got shape {image.shape}")
    return np.clip(img_as_float32(image), 0, 1).astype(np.float32)


@cache
def _sci_image(name: str) -> np.ndarray:
    import skimage.data

    out = to_gray_float(getattr(skimage.data, name)())
    out.setflags(write=False)
    return out


def sci_images(split: str) -> dict[str, np.ndarray]:
    """scikit-image's bundled images of one split, grayscale float32 in [0, 1], by name."""
    return {name: _sci_image(name) for name in SCI_SPLITS[_check_split(split)]}


def random_patches(images: list[np.ndarray], size: int, n: int, seed: int) -> np.ndarray:
    """``n`` random ``size x size`` crops, images chosen in proportion to their number of crops."""
    rng = np.random.default_rng(seed)
    images = [im for im in images if min(im.shape) >= size]
    if not images:
        raise ValueError(f"no image is at least {size} x {size}")
    counts = np.array([(im.shape[0] - size + 1) * (im.shape[1] - size + 1) for im in images])
    which = rng.choice(len(images), size=n, p=counts / counts.sum())
    out = np.empty((n, size, size), dtype=np.float32)
    for k, i in enumerate(which):
        im = images[i]
        r = rng.integers(0, im.shape[0] - size + 1)
        c = rng.integers(0, im.shape[1] - size + 1)
        out[k] = im[r:r + size, c:c + size]
    return out


def tiles(image: np.ndarray, size: int) -> np.ndarray:
    """Non-overlapping ``size x size`` tiles in raster order (edges that do not fit are dropped)."""
    rows, cols = image.shape[0] // size, image.shape[1] // size
    cropped = image[:rows * size, :cols * size]
    return cropped.reshape(rows, size, cols, size).swapaxes(1, 2).reshape(-1, size, size)


def sci_patches(split: str, size: int = 32, n: int | None = None, seed: int = 0) -> np.ndarray:
    """Patches of the scikit-image scientific set: ``(N, size, size)`` float32 in [0, 1].

    ``train``: ``n`` random crops (default 20000), seeded. ``test``: deterministic
    non-overlapping tiles of every held-out image, all of them unless ``n`` is given, in which
    case ``n`` tiles are drawn without replacement with ``seed``.
    """
    images = list(sci_images(split).values())
    if split == "train":
        return random_patches(images, size, 20000 if n is None else n, seed)
    out = np.concatenate([tiles(im, size) for im in images])
    if n is not None:
        idx = np.random.default_rng(seed).choice(len(out), size=min(n, len(out)), replace=False)
        out = out[np.sort(idx)]
    return out


def digits() -> np.ndarray:
    """scikit-learn's 1797 handwritten digits: ``(N, 8, 8)`` float32 in [0, 1]."""
    from sklearn.datasets import load_digits

    return (load_digits().images / 16).astype(np.float32)


def pinwheel(n: int, seed: int, *, arms: int = 5, radial_std: float = 0.3,
             tangential_std: float = 0.1, rate: float = 0.25) -> np.ndarray:
    """The pinwheel of Johnson et al. (NeurIPS 2016, SVAE): Gaussian blobs sheared into spirals."""
    rng = np.random.default_rng(seed)
    arm = rng.integers(0, arms, size=n)
    pts = rng.standard_normal((n, 2)) * np.array([radial_std, tangential_std])
    pts[:, 0] += 1.0
    angle = 2 * np.pi * arm / arms + rate * np.exp(pts[:, 0])
    cos, sin = np.cos(angle), np.sin(angle)
    return np.stack([cos * pts[:, 0] - sin * pts[:, 1], sin * pts[:, 0] + cos * pts[:, 1]], 1)


def toy2d(name: str, n: int, seed: int) -> np.ndarray:
    """``n`` points of a 2-D prior, ``(n, 2)`` float32, each coordinate with mean 0 and std 1.

    ``pinwheel`` (5 arms), ``s-curve`` (scikit-learn's S-curve, coordinates x and z) and
    ``moons`` (scikit-learn's two moons, noise 0.05). Standardisation uses constants computed
    once from 10^6 points (seed 12345), so every call shares the same affine map.
    """
    raw = _toy2d_raw(name, n, seed)
    mean, std = _toy2d_moments(name)
    return ((raw - mean) / std).astype(np.float32)


def _toy2d_raw(name: str, n: int, seed: int) -> np.ndarray:
    from sklearn.datasets import make_moons, make_s_curve

    if name not in TOY2D:
        raise ValueError(f"unknown 2-D prior {name!r}; choose one of {TOY2D}")
    if n < 1:
        raise ValueError(f"n must be >= 1; got {n}")
    if name == "pinwheel":
        return pinwheel(n, seed)
    if name == "s-curve":
        return make_s_curve(n, noise=0.0, random_state=seed)[0][:, [0, 2]]
    return make_moons(n, noise=0.05, random_state=seed)[0]


@cache
def _toy2d_moments(name: str) -> tuple[np.ndarray, np.ndarray]:
    ref = _toy2d_raw(name, 10**6, 12345)
    return ref.mean(0), ref.std(0)


def load_collection(path: str | Path) -> np.ndarray:
    """A user's clean collection: a ``.npy`` array ``(N, H, W)``/``(N, H, W, C)``/``(N, C, H, W)``
    (uint8 or float in [0, 1]) or a folder of images of one size; returned as float32 in [0, 1]
    with shape ``(N, C, H, W)``."""
    path = Path(path)
    if path.is_dir():
        from skimage.io import imread
        from skimage.util import img_as_float32

        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        images = [img_as_float32(imread(p)) for p in files]
        shapes = {im.shape for im in images}
        if len(shapes) > 1:
            raise ValueError(f"images in {path} differ in shape: {sorted(shapes)}; crop them first")
        array = np.stack(images)
    elif path.suffix == ".npy" and path.exists():
        array = np.load(path)
        if array.dtype == np.uint8:
            array = array.astype(np.float32) / 255
    else:
        raise ValueError(f"{path} is neither a folder of images nor an existing .npy file")
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4 and array.shape[-1] in (1, 3) and array.shape[1] not in (1, 3):
        array = array.transpose(0, 3, 1, 2)
    if array.ndim != 4 or array.shape[1] not in (1, 3):
        raise ValueError(f"expected (N, H, W), (N, H, W, C) or (N, C, H, W) with C in (1, 3); "
                         f"got {array.shape}")
    if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
        raise ValueError(f"{path}: values must be finite and in [0, 1] (or uint8)")
    return np.ascontiguousarray(array)
