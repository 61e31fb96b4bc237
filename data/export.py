"""Export denoised images at their ORIGINAL dtype and range: Zarr v3, OME-Zarr or TIFF.

Each image arrives as float values in the [0, 1] scale with the :class:`Scaling` it was read
with; :meth:`Scaling.restore` undoes it (integers rounded and clipped to the dtype, so a uint16
image stays uint16 and an unchanged image comes back bit for bit).

Formats (one entry per image, so mixed sizes and dtypes need no grouping):

- ``tiff``: a folder with ``<id>.tif`` per image; grey as (H, W), RGB as (H, W, 3).
- ``zarr``: a Zarr v3 group with one array ``images/<id>`` of shape (C, H, W) per image.
- ``ome-zarr``: a Zarr v3 group with one OME-Zarr (NGFF 0.5) image ``<id>`` per image,
  axes c, y, x; ``pyramid_levels`` extra levels, each downsampled by 2 (default 0).

The root attributes (Zarr) or ``export.json`` (TIFF) list ids, sources and scaling records.
The output is written under a temporary name and renamed when complete
(:func:`data.store.atomic_output`): a failed or killed export leaves nothing that looks
complete, an existing output is replaced only with ``overwrite=True``, and an output that is or
contains an input file is refused. Read-only or full disks give an
:class:`data.store.OutputWriteError` with a one-line reason.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from data.collection import ImageRecord, Scaling
from data.store import atomic_output

FORMATS = ("tiff", "zarr", "ome-zarr")


@dataclass(frozen=True)
class ExportRecord:
    """A denoised image to write: float (C, H, W) in the [0, 1] scale, and how to undo it."""

    id: str
    array: np.ndarray
    scaling: Scaling | dict
    source: str = ""


@dataclass(frozen=True)
class ExportInfo:
    path: Path
    format: str
    ids: list[str]


def infer_format(out_path: str | os.PathLike) -> str:
    """``.ome.zarr`` -> ome-zarr, ``.zarr`` -> zarr, anything else -> a folder of TIFF."""
    name = Path(out_path).name.lower()
    if name.endswith(".ome.zarr"):
        return "ome-zarr"
    return "zarr" if name.endswith(".zarr") else "tiff"


def _safe_name(image_id: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", image_id).strip(".")
    return name or "image"


def _is_within(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def _restore(record: ExportRecord | ImageRecord) -> np.ndarray:
    array = np.asarray(record.array)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[0] not in (1, 3):
        raise ValueError(f"image {record.id!r}: expected (C, H, W) with C in (1, 3); got shape "
                         f"{array.shape}")
    try:
        return Scaling.from_dict(record.scaling).restore(array)
    except ValueError as error:
        raise ValueError(f"image {record.id!r}: {error}") from None


def _write_tiff(folder: Path, name: str, image: np.ndarray) -> None:
    import tifffile

    if image.shape[0] == 1:
        tifffile.imwrite(folder / f"{name}.tif", image[0], photometric="minisblack")
    else:
        tifffile.imwrite(folder / f"{name}.tif", np.moveaxis(image, 0, -1), photometric="rgb")


def _write_ome(root: Any, name: str, image: np.ndarray, pyramid_levels: int) -> None:
    from ome_zarr.writer import write_image

    levels = min(pyramid_levels, max(0, int(np.log2(min(image.shape[1:])))))
    write_image(image, root.create_group(name), axes="cyx",
                scale_factors=[2 ** (k + 1) for k in range(levels)])


def export_images(
    records: Iterable[ExportRecord | ImageRecord],
    out_path: str | os.PathLike,
    *,
    format: str | None = None,
    overwrite: bool = False,
    pyramid_levels: int = 0,
    protect: Iterable[str | os.PathLike] = (),
) -> ExportInfo:
    """Write images at their original dtype and range; see the module doc for the layouts.

    ``records`` is streamed (one image in memory at a time). Paths in ``protect`` and every
    record's ``source`` must not be the output or lie inside it. Ids must be unique.
    """
    format = format or infer_format(out_path)
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of {FORMATS}")
    if pyramid_levels < 0:
        raise ValueError(f"pyramid_levels must be >= 0; got {pyramid_levels}")
    final = Path(out_path).expanduser().absolute()
    protected = [Path(p).expanduser().absolute() for p in protect]

    def check_input(source: str) -> None:
        for path in [*protected, *([Path(source).absolute()] if source else [])]:
            if _is_within(path, final):
                raise ValueError(f"refusing to write {final}: it is or contains the input "
                                 f"{path}; choose another output")

    check_input("")
    with atomic_output(final, overwrite=overwrite) as temporary:
        root = None
        if format != "tiff":
            import zarr

            root = zarr.open_group(str(temporary), mode="w", zarr_format=3)
        manifest: list[dict[str, Any]] = []
        names: set[str] = set()
        for record in records:
            source = getattr(record, "source", "") or ""
            check_input(source.split("#")[0] if "://" not in source else "")
            name = _safe_name(record.id)
            if name in names:
                raise ValueError(f"duplicate image id {record.id!r} (as file name {name!r})")
            names.add(name)
            image = _restore(record)
            if format == "tiff":
                _write_tiff(temporary, name, image)
            elif format == "zarr":
                array = root.create_array(f"images/{name}", shape=image.shape, dtype=image.dtype,
                                          dimension_names=("c", "y", "x"))
                array[...] = image
            else:
                _write_ome(root, name, image, pyramid_levels)
            manifest.append(dict(id=record.id, name=name, source=source,
                                 dtype=str(image.dtype), shape=list(image.shape),
                                 scaling=Scaling.from_dict(record.scaling).to_dict()))
        if not manifest:
            raise ValueError("nothing to export: no images were given")
        summary = dict(kind="dpflow-export", format=format, n_images=len(manifest),
                       images=manifest)
        if root is None:
            (temporary / "export.json").write_text(json.dumps(summary, indent=1))
        else:
            root.attrs["dpflow_export"] = summary
    return ExportInfo(final, format, [m["id"] for m in manifest])
