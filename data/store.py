"""The chunked collection store (Zarr v3): the unit of work of the pipeline is one chunk.

Layout of ``STORE.zarr``::

    attrs["dpflow"]           kind, version, source, sigma mode, seed, config, counts, complete
    groups/g0/noisy           (N, C, H, W) float32, chunks of ``chunk_size`` images
    groups/g0/clean           same, only in benchmark mode (``add_noise``)
    groups/g0/sigma           (N,) float32, noise std in units of the [0, 1]-scaled image
    groups/g0/index           (N,) int64, position of each image in the collection's order
    groups/g0/ids, sources    (N,) strings
    groups/g0/scaling         (N,) JSON strings of :class:`data.collection.Scaling`
    skipped/ids, sources, reasons   (M,) strings: images that were not read, and why

Images are grouped by (C, H, W) in order of first appearance (g0, g1, ...); nothing is
padded. The work units are the (group, chunk index) pairs of every group.

Benchmark mode (``add_noise=S``) treats the images as clean and stores
``noisy = clean + S * n`` (not clipped: the sampler's measurement model is exactly Gaussian).
The noise of an image is drawn from ``numpy.random.default_rng(SeedSequence([seed, *h]))``
with ``h`` the four 32-bit words of the BLAKE2b-128 hash of its id, so it depends only on
(seed, image id): not on chunk size, order or which other images were skipped.

Output safety: the store is written under a hidden temporary name beside the target and
renamed into place when complete; its ``complete`` attribute is written last and
:func:`open_store` refuses a store without it. An existing store is replaced only with
``overwrite=True``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from data.collection import Collection, ImageRecord, Skipped, describe_error, open_collection

STORE_KIND = "dpflow-collection-store"
STORE_VERSION = 1
MAX_SIGMA = 1.0
_IO_ERRORS = {
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOSPC: "no space left on device (disk full)",
    errno.EDQUOT: "disk quota exceeded",
}


class OutputExistsError(FileExistsError, ValueError):
    """The output exists and ``overwrite`` was not given (both an OSError and a ValueError)."""

    def __str__(self) -> str:
        return str(self.strerror or self.args[0])


class OutputWriteError(OSError):
    """Writing the output failed (read-only, permission, disk full); nothing was left behind."""

    def __str__(self) -> str:
        return str(self.strerror or self.args[0])


def _disk_full(folder: Path, error: OSError) -> bool:
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return False
    return free < 2**20 or "written" in str(error)


@contextlib.contextmanager
def atomic_output(final: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a hidden temporary directory beside ``final``; rename it to ``final`` on success.

    On any error the temporary directory is removed, so a killed or failed write never leaves
    something at ``final`` that looks complete. I/O errors from a read-only or full disk are
    re-raised as :class:`OutputWriteError` with a one-line reason.
    """
    final = Path(final).expanduser().absolute()
    if final.exists() and not overwrite:
        raise OutputExistsError(errno.EEXIST, f"{final} already exists; pass overwrite=True "
                                "to replace it")
    temporary: Path | None = None
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        temporary = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial",
                                          dir=final.parent))
        yield temporary
        if final.exists():  # overwrite: move the old one aside first, drop it after the swap
            old = final.parent / f"{temporary.name[:-len('.partial')]}.old"
            os.rename(final, old)
            os.rename(temporary, final)
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink()
        else:
            os.rename(temporary, final)
        temporary = None
    except OSError as error:
        reason = _IO_ERRORS.get(error.errno or 0)
        if reason is None and error.errno is None and _disk_full(final.parent, error):
            reason = _IO_ERRORS[errno.ENOSPC]  # a short write (numpy, tifffile) carries no errno
        if reason is None or isinstance(error, OutputExistsError):
            raise
        raise OutputWriteError(error.errno, f"cannot write {final}: {reason}; nothing was "
                               "written there") from None
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)


@dataclass(frozen=True)
class WorkUnit:
    """One chunk of one group: images ``start:stop`` of ``groups/<group>``."""

    group: str
    chunk_index: int
    start: int
    stop: int


@dataclass(frozen=True)
class GroupInfo:
    name: str
    shape: tuple[int, int, int, int]  # (N, C, H, W)
    chunk_size: int

    @property
    def n_chunks(self) -> int:
        return -(-self.shape[0] // self.chunk_size)


@dataclass
class StoreInfo:
    """What :func:`open_store` reports about a complete store."""

    path: Path
    groups: dict[str, GroupInfo]
    n_images: int
    skipped: list[Skipped]
    has_clean: bool
    attrs: dict[str, Any] = field(repr=False)

    @property
    def chunks(self) -> list[WorkUnit]:
        """Every (group, chunk index) work unit, groups in order."""
        units = []
        for group in self.groups.values():
            for k in range(group.n_chunks):
                start = k * group.chunk_size
                units.append(WorkUnit(group.name, k, start, min(start + group.chunk_size,
                                                                  group.shape[0])))
        return units


def noise_for(image_id: str, seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """Standard Gaussian noise for one image, a function of (seed, image id) only."""
    words = np.frombuffer(hashlib.blake2b(image_id.encode(), digest_size=16).digest(), "<u4")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), *map(int, words)]))
    return rng.standard_normal(shape, dtype=np.float32)


def estimate_noise_sigma(image: np.ndarray) -> float:
    """Noise std of one (C, H, W) image by wavelet MAD (Donoho & Johnstone 1994), skimage."""
    from skimage.restoration import estimate_sigma

    return float(estimate_sigma(np.asarray(image, dtype=np.float64), channel_axis=0,
                                average_sigmas=True))


def check_sigma(sigma: float, name: str = "sigma") -> float:
    """A noise std in units of the [0, 1]-scaled image: finite, > 0, at most MAX_SIGMA."""
    try:
        value = float(sigma)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number; got {sigma!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0; got {sigma!r}")
    if value > MAX_SIGMA:
        raise ValueError(f"{name}={value:g} is absurd for images scaled to [0, 1] (max "
                         f"{MAX_SIGMA:g}); give it in [0, 1] units, e.g. 25/255 for 25 grey "
                         "levels of an 8-bit image")
    return value


def _sigma_mode(sigma: float | None, estimate_sigma: bool, add_noise: float | None) -> str:
    chosen = [sigma is not None, bool(estimate_sigma), add_noise is not None]
    if sum(chosen) == 0:
        raise ValueError("noise level unknown: pass sigma=S, estimate_sigma=True or add_noise=S")
    if sum(chosen) > 1:
        raise ValueError("choose one of sigma=, estimate_sigma=True and add_noise= (benchmark "
                         "mode knows its sigma)")
    if sigma is not None:
        check_sigma(sigma)
        return "given"
    if add_noise is not None:
        check_sigma(add_noise, "add_noise")
        return "benchmark"
    return "estimated"


class _GroupWriter:
    """Appends images of one (C, H, W) to a store group, one full chunk at a time."""

    def __init__(self, root: Any, name: str, shape: tuple[int, int, int], chunk_size: int,
                 with_clean: bool):
        group = root.require_group(f"groups/{name}")
        self.name, self.chunk_size, self.n = name, chunk_size, 0
        images = ("noisy", "clean") if with_clean else ("noisy",)
        self.arrays = {key: group.create_array(key, shape=(0, *shape), dtype="float32",
                                               chunks=(chunk_size, *shape),
                                               dimension_names=("image", "c", "y", "x"))
                       for key in images}
        for key, dtype in (("sigma", "float32"), ("index", "int64"), ("ids", str),
                           ("sources", str), ("scaling", str)):
            self.arrays[key] = group.create_array(key, shape=(0,), dtype=dtype,
                                                  chunks=(chunk_size,), dimension_names=("image",))
        self.buffer: dict[str, list] = {key: [] for key in self.arrays}

    def add(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            self.buffer[key].append(value)
        if len(self.buffer["noisy"]) == self.chunk_size:
            self.flush()

    def flush(self) -> None:
        count = len(self.buffer["noisy"])
        if count == 0:
            return
        for key, array in self.arrays.items():
            values = self.buffer[key]
            block = np.stack(values) if key in ("noisy", "clean") else np.asarray(values)
            array.resize((self.n + count, *array.shape[1:]))
            array[self.n:self.n + count] = block
            self.buffer[key] = []
        self.n += count


def _write_skipped(root: Any, skipped: list[Skipped]) -> None:
    group = root.require_group("skipped")
    for key, values in (("ids", [s.id for s in skipped]), ("sources", [s.source for s in skipped]),
                        ("reasons", [s.reason for s in skipped])):
        array = group.create_array(key, shape=(len(values),), dtype=str,
                                   chunks=(max(1, min(len(values), 4096)),))
        if values:
            array[:] = np.asarray(values, dtype=str)


MAX_AUTO_CHUNK = 4096


def auto_chunk_size(shape: tuple[int, ...], chunk_pixels: int) -> int:
    """Images of ``shape`` (C, H, W) per chunk so that a chunk holds about ``chunk_pixels``
    pixels: at least 1, at most ``MAX_AUTO_CHUNK``."""
    return int(max(1, min(MAX_AUTO_CHUNK, chunk_pixels // int(np.prod(shape)))))


def write_collection(
    collection: Collection | str | os.PathLike,
    store_path: str | os.PathLike,
    *,
    chunk_size: int | None = 64,
    chunk_pixels: int = 2**19,
    sigma: float | None = None,
    estimate_sigma: bool = False,
    add_noise: float | None = None,
    seed: int = 0,
    overwrite: bool = False,
    progress: Callable[[ImageRecord | Skipped], None] | None = None,
) -> StoreInfo:
    """Write a collection (or a source for :func:`open_collection`) as a chunked Zarr v3 store.

    Exactly one of ``sigma`` (known noise std), ``estimate_sigma=True`` (per image, wavelet
    MAD) or ``add_noise`` (benchmark: images are clean, seeded noise is added) sets sigma, in
    units of the [0, 1]-scaled image. Images are streamed; at most one chunk per group is held
    in memory. Raises ValueError when no image could be read (with the first skip reasons).

    ``chunk_size=None`` sizes each group's chunks from its image shape: :func:`auto_chunk_size`
    with ``chunk_pixels`` pixels per chunk.
    """
    mode = _sigma_mode(sigma, estimate_sigma, add_noise)
    if chunk_size is not None and (isinstance(chunk_size, bool)
                                   or not isinstance(chunk_size, int | np.integer)
                                   or chunk_size < 1):
        raise ValueError(f"chunk_size must be an integer >= 1 or None (automatic); "
                         f"got {chunk_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0; got {seed!r}")
    if not isinstance(collection, Collection):
        collection = open_collection(collection)
    import zarr

    config = dict(source=collection.source,
                  chunk_size=None if chunk_size is None else int(chunk_size), sigma_mode=mode,
                  sigma=None if sigma is None else float(sigma),
                  add_noise=None if add_noise is None else float(add_noise), seed=int(seed))
    with atomic_output(store_path, overwrite=overwrite) as temporary:
        root = zarr.open_group(str(temporary), mode="w", zarr_format=3)
        writers: dict[tuple[int, int, int], _GroupWriter] = {}
        skipped: list[Skipped] = []
        ids_seen: set[str] = set()
        n_images = 0
        for item in collection.items():
            if progress is not None:
                progress(item)
            if isinstance(item, Skipped):
                skipped.append(item)
                continue
            if item.id in ids_seen:  # noise is keyed by id, so ids must be unique
                skipped.append(Skipped(item.id, item.source, "duplicate image id"))
                continue
            ids_seen.add(item.id)
            values = _image_values(item, mode, sigma, add_noise, seed)
            if isinstance(values, Skipped):
                skipped.append(values)
                continue
            shape = tuple(item.array.shape)
            if shape not in writers:
                size = auto_chunk_size(shape, chunk_pixels) if chunk_size is None \
                    else int(chunk_size)
                writers[shape] = _GroupWriter(root, f"g{len(writers)}", shape, size,
                                              mode == "benchmark")
            writers[shape].add({**values, "index": n_images})
            n_images += 1
        if n_images == 0:
            reasons = "; ".join(f"{s.id}: {s.reason}" for s in skipped[:3])
            raise ValueError(f"no readable images in {collection.source} ({len(skipped)} "
                             f"skipped{': ' + reasons if reasons else ''})")
        for writer in writers.values():
            writer.flush()
        _write_skipped(root, skipped)
        attrs = dict(
            kind=STORE_KIND, version=STORE_VERSION, **config,
            n_images=n_images, n_skipped=len(skipped),
            groups={w.name: dict(shape=[w.n, *shape]) for shape, w in writers.items()},
            noise_seeding="numpy default_rng(SeedSequence([seed, *blake2b-128(id) as 4 uint32]))",
            sigma_units="std of the noise in units of the [0, 1]-scaled image",
            created=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        root.attrs["dpflow"] = attrs
        root.attrs["complete"] = True  # written last: the completion marker
    return open_store(store_path)


def _image_values(item: ImageRecord, mode: str, sigma: float | None, add_noise: float | None,
                  seed: int) -> dict[str, Any] | Skipped:
    values: dict[str, Any] = dict(ids=item.id, sources=item.source,
                                  scaling=item.scaling.to_json())
    if mode == "benchmark":
        values["clean"] = item.array
        values["noisy"] = item.array + np.float32(add_noise) * noise_for(item.id, seed,
                                                                         item.array.shape)
        values["sigma"] = add_noise
    elif mode == "given":
        values["noisy"], values["sigma"] = item.array, sigma
    else:
        try:
            estimate = estimate_noise_sigma(item.array)
        except Exception as error:
            return Skipped(item.id, item.source, f"sigma estimate failed: {describe_error(error)}")
        if not np.isfinite(estimate) or estimate <= 0:
            return Skipped(item.id, item.source, f"estimated sigma {estimate:g} is not > 0 (no "
                           "measurable noise); give sigma= instead")
        values["noisy"], values["sigma"] = item.array, estimate
    return values


def _open_root(store_path: str | os.PathLike) -> Any:
    import zarr

    path = Path(store_path).expanduser()
    if not path.exists():
        raise ValueError(f"store not found: {path}")
    try:
        root = zarr.open_group(str(path), mode="r")
    except Exception as error:
        raise ValueError(f"{path} is not a Zarr store: {describe_error(error)}") from None
    attrs = dict(root.attrs)
    if attrs.get("dpflow", {}).get("kind") != STORE_KIND:
        raise ValueError(f"{path} is not a dpflow collection store")
    if attrs.get("complete") is not True:
        raise ValueError(f"store {path} is incomplete (its write was interrupted); write it "
                         "again with overwrite=True")
    return root


def open_store(store_path: str | os.PathLike) -> StoreInfo:
    """Describe a complete store: groups, shapes, counts, work units, skipped images, attrs."""
    root = _open_root(store_path)
    attrs = dict(root.attrs)["dpflow"]
    groups = {}
    for name in attrs["groups"]:
        noisy = root[f"groups/{name}/noisy"]
        groups[name] = GroupInfo(name, tuple(int(n) for n in noisy.shape), int(noisy.chunks[0]))
    skipped_group = root["skipped"]
    skipped = [Skipped(str(i), str(s), str(r)) for i, s, r in
               zip(skipped_group["ids"][:], skipped_group["sources"][:],
                   skipped_group["reasons"][:], strict=True)]
    return StoreInfo(Path(store_path), groups, int(attrs["n_images"]), skipped,
                     attrs["sigma_mode"] == "benchmark", attrs)


def _strings(values: Any) -> np.ndarray:
    """Zarr's variable-length strings as a plain numpy unicode array."""
    return np.array([str(v) for v in values], dtype=str)


def read_chunk(store_path: str | os.PathLike, group: str, chunk_index: int) -> dict[str, Any]:
    """One work unit as numpy arrays.

    Keys: ``noisy`` (k, C, H, W) float32, ``clean`` (same, or None), ``sigma`` (k,) float32,
    ``ids`` (k,) str, ``index`` (k,) int64 (position in the collection), ``sources`` (k,) str,
    ``scaling`` (list of k dicts, see :class:`data.collection.Scaling`).
    """
    root = _open_root(store_path)
    groups = dict(root.attrs)["dpflow"]["groups"]
    if group not in groups:
        raise ValueError(f"no group {group!r} in {store_path}; groups are {sorted(groups)}")
    node = root[f"groups/{group}"]
    size = int(node["noisy"].chunks[0])
    count = int(node["noisy"].shape[0])
    n_chunks = -(-count // size)
    if isinstance(chunk_index, bool) or not 0 <= int(chunk_index) < n_chunks:
        raise ValueError(f"chunk index {chunk_index!r} out of range for group {group!r} "
                         f"({n_chunks} chunks)")
    part = slice(int(chunk_index) * size, min((int(chunk_index) + 1) * size, count))
    names = set(node.array_keys())
    return dict(
        noisy=node["noisy"][part],
        clean=node["clean"][part] if "clean" in names else None,
        sigma=node["sigma"][part],
        ids=_strings(node["ids"][part]),
        index=node["index"][part],
        sources=_strings(node["sources"][part]),
        scaling=[json.loads(s) for s in node["scaling"][part]],
    )


def iter_chunks(store_path: str | os.PathLike) -> Iterable[tuple[str, int, dict[str, Any]]]:
    """Every work unit in order as (group, chunk index, :func:`read_chunk` dict)."""
    for unit in open_store(store_path).chunks:
        yield unit.group, unit.chunk_index, read_chunk(store_path, unit.group, unit.chunk_index)
