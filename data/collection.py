"""Image collections: one streaming view over folders, array files, Zarr/OME-Zarr and samples.

Every source yields the same per-image record: an ``id``, the ``source`` path, a float32
array in channels-first layout ``(C, H, W)`` with ``C`` in {1, 3} and values in [0, 1], and
the :class:`Scaling` that maps those values back to the original dtype and range.

Choices (the issue leaves them open, so they are written down here):

- Intensity scaling (``scaling="dtype"``, the default): uint8 / 255, uint16 / 65535, int8 and
  int16 shifted by their minimum and divided by their full range, so a given sigma means the
  same thing for every image of a bit depth and integer round trips are exact. Integers wider
  than 16 bits are min-max scaled per image (``mode="range"``). Float images already in [0, 1]
  are kept (``mode="identity"``); other float images are min-max scaled per image.
  ``scaling="range"`` min-max scales every image (a 12-bit camera in a uint16 file then uses
  the whole [0, 1] range; sigma is then relative to each image's range).
- Channels: a colour (sample) axis of size 3 is RGB; 4 is RGBA and loses alpha; 2 is
  grey + alpha and loses alpha. An explicit channel axis (OME ``c``, TIFF ``C``) of a size
  other than 1 or 3 is split into grey images ``<id>_c000``, ``<id>_c001``, ...
- Stacks: any axis other than y, x and channel (z, t, a TIFF page series, the image axis of
  an .npy stack) is split into separate 2-D images: ``<id>_z003``, ``<id>_t001``,
  ``<stem>_0042``.
- Very large images (more than ``max_pixels`` pixels per plane, default 4096 x 4096) are
  refused per image, before their pixels are decoded, with advice to tile them.
- Per-image faults never stop the collection: they come back as :class:`Skipped` records
  (id, source, one-line reason) while good images keep flowing. Hidden files (names starting
  with ".") in a folder are ignored; any other file that is not an image is reported.
- Iteration streams: folders are read file by file, TIFF stacks page by page, .npy files are
  memory-mapped, Zarr arrays are read one image at a time; .npz members are loaded one at a
  time (the format cannot be memory-mapped).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_MAX_PIXELS = 4096 * 4096
DEFAULT_MIN_SIDE = 8
TIFF_SUFFIXES = (".tif", ".tiff")
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg")
IMAGE_SUFFIXES = TIFF_SUFFIXES + RASTER_SUFFIXES
SCALINGS = ("dtype", "range")
LAYOUTS = ("HW", "HWC", "CHW", "NHW", "NHWC", "NCHW")
# Axis letters: Y, X image plane; S colour samples; C explicit channels; anything else splits.
_SPLIT_TAGS = {"Z": "z", "Q": "z", "I": "z", "T": "t", "C": "c", "S": "c", "N": ""}


@dataclass(frozen=True)
class Scaling:
    """How an image was mapped to [0, 1]: ``x01 = (raw - offset) / scale``."""

    dtype: str
    scale: float
    offset: float
    mode: str  # "dtype", "range", "identity" or "fixed" (a sample's documented range)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, record: dict[str, Any] | Scaling) -> Scaling:
        if isinstance(record, Scaling):
            return record
        return cls(str(record["dtype"]), float(record["scale"]), float(record["offset"]),
                   str(record["mode"]))

    def restore(self, x01: np.ndarray) -> np.ndarray:
        """Undo the scaling: back to the original dtype and range (integers rounded, clipped)."""
        values = np.asarray(x01, dtype=np.float64) * self.scale + self.offset
        dtype = np.dtype(self.dtype)
        if dtype.kind in "iu":
            if not np.isfinite(values).all():
                raise ValueError("cannot restore an image with NaN/Inf values to an integer dtype")
            info = np.iinfo(dtype)
            return np.clip(np.rint(values), info.min, info.max).astype(dtype)
        return values.astype(dtype)


@dataclass(frozen=True)
class ImageRecord:
    """One good image: float32 (C, H, W) in [0, 1] plus its scaling record."""

    id: str
    source: str
    array: np.ndarray
    scaling: Scaling


@dataclass(frozen=True)
class Skipped:
    """One image (or file) that was not read, with a one-line reason."""

    id: str
    source: str
    reason: str


class ImageFault(ValueError):
    """A problem with one image; collections turn it into a :class:`Skipped` record."""


class Collection:
    """A re-iterable, streaming collection of images.

    ``for record in collection`` yields the good :class:`ImageRecord` s and fills
    ``collection.skipped`` as it goes; ``collection.items()`` yields both kinds in order.
    """

    def __init__(self, source: str, producer: Callable[[], Iterator[ImageRecord | Skipped]]):
        self.source = source
        self._producer = producer
        self.skipped: list[Skipped] = []

    def items(self) -> Iterator[ImageRecord | Skipped]:
        return self._producer()

    def __iter__(self) -> Iterator[ImageRecord]:
        self.skipped = []
        for item in self._producer():
            if isinstance(item, Skipped):
                self.skipped.append(item)
            else:
                yield item

    def load(self) -> tuple[list[ImageRecord], list[Skipped]]:
        """Everything at once (small collections and tests only)."""
        images = list(self)
        return images, list(self.skipped)

    def __repr__(self) -> str:
        return f"Collection({self.source!r})"


# ---------------------------------------------------------------------------- conversions


def describe_error(error: BaseException) -> str:
    """One line naming an exception, for skip reasons and error messages."""
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    line = f"{type(error).__name__}: {first}" if first else type(error).__name__
    return line[:200]


def check_dtype(dtype: np.dtype) -> None:
    """Refuse dtypes that are not intensities (bool masks, complex, strings, objects)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        raise ImageFault("unsupported dtype bool (a mask, not an intensity image)")
    if dtype.kind not in "iuf":
        raise ImageFault(f"unsupported dtype {dtype} (need integer or real float pixels)")


def to_unit_range(raw: np.ndarray, *, scaling: str = "dtype") -> tuple[np.ndarray, Scaling]:
    """Scale one image to float32 [0, 1]; refuse NaN/Inf and constant images (module doc)."""
    if scaling not in SCALINGS:
        raise ValueError(f"unknown scaling {scaling!r}; choose one of {SCALINGS}")
    raw = np.asarray(raw)
    check_dtype(raw.dtype)
    dtype = raw.dtype
    if dtype.kind == "f":
        bad = int(np.size(raw) - np.count_nonzero(np.isfinite(raw)))
        if bad:
            raise ImageFault(f"{bad} NaN/Inf pixel(s)")
    low, high = raw.min(), raw.max()
    if low == high:
        raise ImageFault(f"constant image (every pixel = {low}): nothing to denoise")
    if scaling == "dtype" and dtype.kind in "iu" and dtype.itemsize <= 2:
        info = np.iinfo(dtype)
        record = Scaling(str(dtype), float(info.max) - float(info.min), float(info.min), "dtype")
    elif scaling == "dtype" and dtype.kind == "f" and low >= 0 and high <= 1:
        record = Scaling(str(dtype), 1.0, 0.0, "identity")
    else:
        record = Scaling(str(dtype), float(high) - float(low), float(low), "range")
    x01 = (raw.astype(np.float64) - record.offset) / record.scale
    return x01.astype(np.float32), record


def _plan_axes(axes: str, shape: tuple[int, ...]) -> tuple[list[int], int | None, str]:
    """Which axes split into separate images, the channel axis, and how to treat it."""
    if "Y" not in axes or "X" not in axes or len(axes) != len(shape):
        raise ValueError(f"axes {axes!r} do not describe an image of shape {shape}")
    split = [i for i, a in enumerate(axes) if a not in "YXSC"]
    channel, channel_mode = None, "grey"
    for i, a in enumerate(axes):
        if a not in "SC":
            continue
        size = shape[i]
        if size == 1 or size == 3 or (a == "S" and size in (2, 4)):
            channel, channel_mode = i, {1: "grey", 2: "grey+alpha", 3: "rgb", 4: "rgba"}[size]
        else:
            split.append(i)
    return sorted(split), channel, channel_mode


def _split_id(base: str, axes: str, split: list[int], shape: tuple[int, ...], index: tuple) -> str:
    parts = [base]
    for axis, i in zip(split, index, strict=True):
        letter = axes[axis]
        tag = _SPLIT_TAGS.get(letter, letter.lower())
        width = max(3, len(str(shape[axis] - 1)))
        parts.append(f"{tag}{i:0{width}d}")
    return "_".join(parts)


def records_from_array(
    base: str,
    source: str,
    array: Any,
    axes: str,
    *,
    scaling: str = "dtype",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = DEFAULT_MIN_SIDE,
) -> Iterator[ImageRecord | Skipped]:
    """Yield the images of a lazily indexable array (numpy, memmap, zarr) with named axes.

    ``axes`` uses Y, X for the plane, S for colour samples, C for channels; every other
    letter is split into separate images. Pixels are read one image at a time.
    """
    shape = tuple(int(n) for n in array.shape)
    try:
        check_dtype(array.dtype)
        split, channel, channel_mode = _plan_axes(axes, shape)
        height, width = shape[axes.index("Y")], shape[axes.index("X")]
        if min(height, width) < min_side:
            raise ImageFault(f"image is {height}x{width}, smaller than min_side={min_side} pixels")
        if height * width > max_pixels:
            raise ImageFault(
                f"image is {height}x{width}, over max_pixels={max_pixels}; cut it into tiles "
                f"(e.g. 1024x1024) first, or raise max_pixels if memory allows"
            )
    except ImageFault as fault:
        yield Skipped(base, source, str(fault))
        return
    keep = [i for i in range(len(axes)) if i not in split]
    kept_axes = "".join(axes[i] for i in keep)
    order = [kept_axes.index(a) for a in (axes[channel] if channel is not None else "", "Y", "X")
             if a]
    for index in product(*(range(shape[i]) for i in split)):
        image_id = _split_id(base, axes, split, shape, index) if split else base
        selector: list[Any] = [slice(None)] * len(axes)
        for axis, i in zip(split, index, strict=True):
            selector[axis] = i
        try:
            plane = np.asarray(array[tuple(selector)]).transpose(order)
            if channel is None:
                plane = plane[None]
            elif channel_mode in ("grey+alpha", "rgba"):
                plane = plane[:-1]
            x01, record = to_unit_range(plane, scaling=scaling)
        except ImageFault as fault:
            yield Skipped(image_id, source, str(fault))
            continue
        except Exception as error:  # a decoder fault in one plane must not stop the rest
            yield Skipped(image_id, source, f"unreadable: {describe_error(error)}")
            continue
        yield ImageRecord(image_id, source, x01, record)


# ------------------------------------------------------------------------------- readers


def infer_layout(shape: tuple[int, ...]) -> str:
    """Guess the layout of an array stack (HW, HWC, NHW, NCHW or NHWC); see module doc."""
    if len(shape) == 2:
        return "HW"
    if len(shape) == 3:
        if shape[-1] in (3, 4) and min(shape[:2]) > 4:
            return "HWC"
        return "NHW"
    if len(shape) == 4:
        if shape[1] in (1, 3, 4):
            return "NCHW"
        if shape[-1] in (1, 3, 4):
            return "NHWC"
    raise ValueError(f"cannot infer the layout of an array of shape {shape}; pass layout= one "
                     f"of {LAYOUTS}")


def _layout_axes(layout: str | None, shape: tuple[int, ...]) -> str:
    layout = layout or infer_layout(shape)
    if layout not in LAYOUTS or len(layout) != len(shape):
        raise ValueError(f"layout {layout!r} does not fit an array of shape {shape}; use one of "
                         f"{LAYOUTS} with as many letters as dimensions")
    return layout.replace("H", "Y").replace("W", "X").replace("C", "S")


class _TiffPages:
    """A TIFF series as a lazily indexed array that decodes one page per image."""

    def __init__(self, series: Any, leading: int):
        self.series, self.shape, self.dtype = series, tuple(series.shape), series.dtype
        self.leading = leading

    def __getitem__(self, selector: tuple) -> np.ndarray:
        index = selector[: self.leading]
        flat = int(np.ravel_multi_index(index, self.shape[: self.leading])) if index else 0
        page = np.asarray(self.series.pages[flat].asarray())
        rest = selector[self.leading :]
        return page.reshape(self.shape[self.leading :])[rest]


def _tiff_records(path: Path, base: str, options: dict) -> Iterator[ImageRecord | Skipped]:
    import tifffile

    try:
        tif = tifffile.TiffFile(path)
    except Exception as error:
        yield Skipped(base, str(path), f"unreadable TIFF: {describe_error(error)}")
        return
    with tif:
        try:
            series = tif.series[0]
            axes = series.axes.replace("R", "Y")  # some writers tag rows as R
            leading = min(axes.index("Y"), axes.index("X"))
            planes = math.prod(series.shape[:leading])
            split, _, _ = _plan_axes(axes, tuple(series.shape))
            array: Any = series
            if len(series.pages) == planes and all(i in split for i in range(leading)):
                array = _TiffPages(series, leading)
            else:  # pages do not map to planes one to one: decode the series at once
                array = series.asarray()
        except Exception as error:
            yield Skipped(base, str(path), f"unreadable TIFF: {describe_error(error)}")
            return
        yield from records_from_array(base, str(path), array, axes, **options)


def _raster_records(path: Path, base: str, options: dict) -> Iterator[ImageRecord | Skipped]:
    import imageio.v3 as iio
    from PIL import Image

    try:
        with Image.open(path) as header:  # reads the header only: refuse huge images cheaply
            width, height = header.size
        if height * width > options["max_pixels"]:
            yield from records_from_array(base, str(path), np.empty((height, width), np.uint8),
                                          "YX", **options)
            return
        raw = iio.imread(path)
    except Exception as error:
        kind = path.suffix.lstrip(".").upper()
        yield Skipped(base, str(path), f"unreadable {kind}: {describe_error(error)}")
        return
    axes = "YX" if raw.ndim == 2 else "YXS" if raw.ndim == 3 else None
    if axes is None:
        yield Skipped(base, str(path), f"unsupported image of shape {raw.shape}")
        return
    yield from records_from_array(base, str(path), raw, axes, **options)


def _file_ids(names: list[str]) -> dict[str, str]:
    """File stems as ids; the full name where two files share a stem."""
    stems = [Path(n).stem for n in names]
    return {n: (Path(n).stem if stems.count(Path(n).stem) == 1 else n) for n in names}


def _image_file_records(path: Path, image_id: str, options: dict):
    suffix = path.suffix.lower()
    if path.stat().st_size == 0:
        yield Skipped(image_id, str(path), "empty file (0 bytes)")
    elif suffix in TIFF_SUFFIXES:
        yield from _tiff_records(path, image_id, options)
    else:
        yield from _raster_records(path, image_id, options)


def _folder_records(folder: Path, names: list[str], options: dict):
    ids = _file_ids(names)
    for name in names:
        path = folder / name
        image_id = ids[name]
        if path.is_dir():
            yield Skipped(image_id, str(path), "subdirectory (not read; pass it as its own source)")
        elif path.suffix.lower() not in IMAGE_SUFFIXES:
            yield Skipped(image_id, str(path), f"not an image file (suffix {path.suffix!r}; "
                          f"supported {', '.join(IMAGE_SUFFIXES)})")
        else:
            yield from _image_file_records(path, image_id, options)


def _npy_records(path: Path, layout: str | None, options: dict):
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    yield from records_from_array(path.stem, str(path), array,
                                  _layout_axes(layout, array.shape), **options)


def _npz_records(path: Path, layout: str | None, options: dict):
    with np.load(path, allow_pickle=False) as archive:
        for key in archive.files:
            try:
                array = archive[key]
                axes = _layout_axes(layout, array.shape)
            except Exception as error:
                yield Skipped(key, str(path), f"unreadable array: {describe_error(error)}")
                continue
            yield from records_from_array(key, str(path), array, axes, **options)


def ome_multiscales(attrs: dict) -> list | None:
    """The ``multiscales`` list of an OME-Zarr image group (NGFF 0.4 or 0.5), or None."""
    if "ome" in attrs and isinstance(attrs["ome"], dict):
        attrs = attrs["ome"]
    scales = attrs.get("multiscales")
    return scales if isinstance(scales, list) and scales else None


def _ome_axes(multiscale: dict, ndim: int) -> str:
    axes = multiscale.get("axes") or ["t", "c", "z", "y", "x"][-ndim:]
    names = [a["name"] if isinstance(a, dict) else str(a) for a in axes]
    if len(names) != ndim:
        raise ValueError(f"OME axes {names} do not match the level-0 array's {ndim} dimensions")
    return "".join(n.upper()[0] for n in names)


def _zarr_array_axes(array: Any, layout: str | None) -> str:
    names = getattr(array.metadata, "dimension_names", None)
    if layout is None and names and all(n and n.lower() in ("c", "y", "x", "z", "t")
                                        for n in names):
        return "".join(n.upper() for n in names)
    return _layout_axes(layout, tuple(array.shape))


def _zarr_records(path: Path, node: Any, base: str, layout: str | None, options: dict):
    import zarr

    if isinstance(node, zarr.Array):
        yield from records_from_array(base, str(path), node, _zarr_array_axes(node, layout),
                                      **options)
        return
    multiscales = ome_multiscales(dict(node.attrs))
    if multiscales is not None:
        level0 = node[multiscales[0]["datasets"][0]["path"]]
        yield from records_from_array(base, str(path), level0,
                                      _ome_axes(multiscales[0], level0.ndim), **options)
        return
    for name in sorted(node.keys()):  # a plain group: read its members, nested groups too
        try:
            member = node[name]
        except Exception as error:
            yield Skipped(name, str(path), f"unreadable Zarr member: {describe_error(error)}")
            continue
        yield from _zarr_records(path / name, member, name, layout, options)


def _zarr_stem(path: Path) -> str:
    name = path.name
    for suffix in (".ome.zarr", ".zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or name
    return name


def is_zarr(path: Path) -> bool:
    return path.is_dir() and any((path / m).exists() for m in ("zarr.json", ".zgroup", ".zarray"))


def open_collection(
    source: str | os.PathLike,
    *,
    scaling: str = "dtype",
    layout: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = DEFAULT_MIN_SIDE,
) -> Collection:
    """Open a folder, image file, .npy/.npz, Zarr/OME-Zarr path or ``sample:NAME`` lazily.

    Raises ValueError (one line) for a missing path, an unsupported source or one with no
    images; faults of single images come back as :class:`Skipped` records while iterating.
    ``layout`` (one of LAYOUTS) overrides the guess for .npy/.npz/plain Zarr arrays.
    """
    if scaling not in SCALINGS:
        raise ValueError(f"unknown scaling {scaling!r}; choose one of {SCALINGS}")
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {LAYOUTS}")
    if int(max_pixels) < 1 or int(min_side) < 1:
        raise ValueError("max_pixels and min_side must be positive")
    options = dict(scaling=scaling, max_pixels=int(max_pixels), min_side=int(min_side))
    text = str(source)
    if text.startswith("sample:"):
        from data.samples import sample_collection

        return sample_collection(text, **options)
    path = Path(text).expanduser()
    if not path.exists():
        raise ValueError(f"source not found: {path}")
    if is_zarr(path):
        import zarr

        try:
            node = zarr.open(str(path), mode="r")
        except Exception as error:
            raise ValueError(f"cannot open Zarr store {path}: {describe_error(error)}") from None
        if isinstance(node, zarr.Group) and not list(node.keys()):
            raise ValueError(f"empty collection: Zarr group {path} has no arrays")
        stem = _zarr_stem(path)
        return Collection(text, lambda: _zarr_records(path, node, stem, layout, options))
    if path.is_dir():
        names = sorted(e.name for e in os.scandir(path) if not e.name.startswith("."))
        if not any(Path(n).suffix.lower() in IMAGE_SUFFIXES for n in names):
            raise ValueError(f"empty collection: no image files ({', '.join(IMAGE_SUFFIXES)}) "
                             f"in {path}")
        return Collection(text, lambda: _folder_records(path, names, options))
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
        except Exception as error:
            raise ValueError(f"cannot read {path}: {describe_error(error)}") from None
        if 0 in shape:
            raise ValueError(f"empty collection: {path} has shape {shape}")
        _layout_axes(layout, shape)
        return Collection(text, lambda: _npy_records(path, layout, options))
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                keys = list(archive.files)
        except Exception as error:
            raise ValueError(f"cannot read {path}: {describe_error(error)}") from None
        if not keys:
            raise ValueError(f"empty collection: {path} holds no arrays")
        return Collection(text, lambda: _npz_records(path, layout, options))
    if suffix in IMAGE_SUFFIXES:
        return Collection(text, lambda: _image_file_records(path, path.stem, options))
    raise ValueError(f"unsupported source {path}: give a folder, an image file, .npy, .npz, a "
                     f"Zarr/OME-Zarr path or sample:NAME")
