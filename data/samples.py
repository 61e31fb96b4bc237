"""Built-in collections addressed as ``sample:NAME`` or ``sample:NAME:N`` (the first N images).

- ``sample:cells`` (alias ``sample:sci``): non-overlapping 32 x 32 tiles of the HELD-OUT
  scikit-image scientific images (``data.datasets.sci_images("test")``: moon, coins, camera),
  so a model trained on the training split never saw them. Default 64 tiles spread evenly over
  all tiles (tiles of constant intensity are left out); ids ``<image>_y0032_x0064``.
- ``sample:fashion-mnist``: the Fashion-MNIST t10k test images from Debian's
  ``dataset-fashion-mnist`` package, padded with zeros from 28 x 28 to 32 x 32; default 256.
- ``sample:digits``: scikit-learn's bundled 8 x 8 digits (values 0..16); default 64.

All yield the same :class:`data.collection.ImageRecord` s as files do, streaming, with a
scaling record that restores the original values (uint8 / 255; digits / 16).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from data.collection import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_SIDE,
    Collection,
    ImageFault,
    ImageRecord,
    Scaling,
    Skipped,
)

SAMPLES: dict[str, str] = {
    "cells": "32x32 tiles of the held-out scikit-image scientific images (default 64)",
    "fashion-mnist": "Fashion-MNIST t10k test images padded to 32x32 (default 256, max 10000)",
    "digits": "scikit-learn 8x8 digits, values 0..16 (default 64, max 1797)",
}
_ALIASES = {"sci": "cells"}
_DEFAULT_COUNT = {"cells": 64, "fashion-mnist": 256, "digits": 64}
_MAX_COUNT = {"fashion-mnist": 10000, "digits": 1797}


def parse_sample(spec: str) -> tuple[str, int | None]:
    """``sample:NAME[:N]`` -> (NAME, N or None), with a clear error for anything else."""
    parts = spec.split(":")
    if parts[0] != "sample" or len(parts) not in (2, 3):
        raise ValueError(f"bad sample spec {spec!r}; use sample:NAME or sample:NAME:N")
    name = _ALIASES.get(parts[1], parts[1])
    if name not in SAMPLES:
        raise ValueError(f"unknown sample {parts[1]!r}; choose one of {sorted(SAMPLES)}")
    if len(parts) == 2:
        return name, None
    try:
        count = int(parts[2])
    except ValueError:
        raise ValueError(f"bad image count {parts[2]!r} in {spec!r}; use sample:NAME:N") from None
    if count < 1:
        raise ValueError(f"image count must be >= 1; got {count} in {spec!r}")
    return name, count


def _record(image_id: str, source: str, raw: np.ndarray, scaling: Scaling,
            min_side: int, max_pixels: int) -> ImageRecord | Skipped:
    """A sample image with a fixed, documented scaling (same checks as file images)."""
    height, width = raw.shape[-2:]
    if min(height, width) < min_side:
        return Skipped(image_id, source, f"image is {height}x{width}, smaller than "
                       f"min_side={min_side} pixels")
    if height * width > max_pixels:
        return Skipped(image_id, source, f"image is {height}x{width}, over max_pixels={max_pixels}")
    if raw.min() == raw.max():
        return Skipped(image_id, source, f"constant image (every pixel = {raw.min()})")
    x01 = ((raw.astype(np.float64) - scaling.offset) / scaling.scale).astype(np.float32)
    return ImageRecord(image_id, source, x01[None], scaling)


def _as_uint8(image: np.ndarray) -> np.ndarray:
    """Float [0, 1] images that are exact multiples of 1/255 back to their uint8 values."""
    raw = np.rint(np.asarray(image, dtype=np.float64) * 255)
    if np.abs(raw - image * 255.0).max() > 1e-3:
        raise ImageFault("sample image is not 8-bit")
    return raw.astype(np.uint8)


def _cell_tiles(count: int, tile_size: int) -> list[tuple[str, str, np.ndarray]]:
    """``count`` non-constant tiles, evenly spread over all tiles of the held-out images."""
    from data.datasets import sci_images

    candidates = []
    for name, image in sci_images("test").items():
        raw = _as_uint8(image)
        for top in range(0, raw.shape[0] - tile_size + 1, tile_size):
            for left in range(0, raw.shape[1] - tile_size + 1, tile_size):
                tile = raw[top:top + tile_size, left:left + tile_size]
                if tile.min() != tile.max():
                    candidates.append((f"{name}_y{top:04d}_x{left:04d}", name, tile))
    if count > len(candidates):
        raise ValueError(f"sample:cells has {len(candidates)} tiles of {tile_size}x{tile_size}; "
                         f"asked for {count}")
    chosen = np.unique(np.linspace(0, len(candidates) - 1, count).round().astype(int))
    return [candidates[i] for i in chosen]


def _cells(tiles: list, options: dict) -> Iterator[ImageRecord | Skipped]:
    scaling = Scaling("uint8", 255.0, 0.0, "dtype")
    for image_id, name, tile in tiles:
        yield _record(image_id, f"sample:cells/skimage.data.{name}", tile, scaling, **options)


def _fashion_mnist(count: int, options: dict) -> Iterator[ImageRecord | Skipped]:
    from data.datasets import FASHION_MNIST_DIR, read_idx_images

    path = FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz"
    if not path.exists():
        raise ValueError(f"{path} not found; install it with "
                         f"`apt-get install dataset-fashion-mnist`")
    images = read_idx_images(path)
    scaling = Scaling("uint8", 255.0, 0.0, "dtype")
    for i in range(count):
        padded = np.pad(images[i], 2)
        yield _record(f"fmnist_{i:05d}", f"{path}#{i}", padded, scaling, **options)


def _digits(count: int, options: dict) -> Iterator[ImageRecord | Skipped]:
    from sklearn.datasets import load_digits

    images = load_digits().images
    scaling = Scaling("uint8", 16.0, 0.0, "fixed")
    for i in range(count):
        yield _record(f"digit_{i:04d}", f"sklearn.datasets.load_digits#{i}",
                      images[i].astype(np.uint8), scaling, **options)


def sample_collection(
    spec: str,
    *,
    tile_size: int = 32,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = DEFAULT_MIN_SIDE,
    scaling: str = "dtype",
) -> Collection:
    """The built-in collection ``sample:NAME[:N]`` (see module doc) as a streaming Collection.

    ``scaling`` is accepted for symmetry with files; samples always use their fixed scaling.
    """
    name, count = parse_sample(spec)
    count = _DEFAULT_COUNT[name] if count is None else count
    if tile_size < 1:
        raise ValueError(f"tile_size must be >= 1; got {tile_size}")
    if count > _MAX_COUNT.get(name, count):
        raise ValueError(f"sample:{name} has {_MAX_COUNT[name]} images; asked for {count}")
    options = dict(min_side=min_side, max_pixels=max_pixels)
    if name == "cells":
        tiles = _cell_tiles(count, tile_size)
        return Collection(spec, lambda: _cells(tiles, options))
    if name == "fashion-mnist":
        return Collection(spec, lambda: _fashion_mnist(count, options))
    return Collection(spec, lambda: _digits(count, options))


def list_samples() -> dict[str, str]:
    """Name -> one-line description of every built-in collection."""
    return dict(SAMPLES)
