"""The frontier dataset: assembly from chunk results, atomic writing, loading, a pandas view.

One ``xarray.Dataset`` at ``OUT/frontier.zarr`` (``xr.open_zarr``), dims ``image`` and ``lam``
(plus ``method`` when several traversals ran). Mixed image sizes are PADDED into one dataset:
``denoised`` is ``(image, [method,] lam, channel, y, x)`` at the largest height, width and
channel count of the collection, the padding is NaN, and the per-image coordinates ``height``,
``width`` and ``channels`` give each image's true extent (``denoised_of(ds, i)`` crops). Padding
keeps every per-image metric on one ``image`` axis, which is what frontier analysis wants; the
cost is disk space when sizes differ widely (the report says so).

Lambda convention: lambda scales the VARIANCE of the injected noise (std ``sqrt(lambda)``);
lambda = 0 follows the mean path, lambda = 1 is ancestral posterior sampling.
"""

from __future__ import annotations

import json
import shutil
import uuid
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

LAMBDA_CONVENTION = ("lambda scales the VARIANCE of the injected noise (noise std sqrt(lambda)); "
                     "lambda = 0: mean path (least distortion), lambda = 1: ancestral posterior "
                     "sampling (Wang et al., CVPR 2025)")
METRIC_ATTRS = {
    "mse": ("mean squared error against the clean reference", "([0, 1] image units)^2"),
    "psnr": ("peak signal-to-noise ratio against the clean reference (data range 1)", "dB"),
    "ssim": ("structural similarity against the clean reference (Wang et al. 2004)", "1"),
    "sure_mse": ("Stein's unbiased estimate of the mean squared error (no reference needed)",
                 "([0, 1] image units)^2"),
    "perception": ("perception index (lower is better; definition in attrs)", "1"),
}
PER_IMAGE = ("mse", "psnr", "ssim", "sure_mse", "perception")


def pareto_mask(distortion: np.ndarray, perception: np.ndarray) -> np.ndarray:
    """Pareto-optimal points along the last axis: no other point is at least as good on both
    (distortion, perception) and better on one. NaN points are never optimal."""
    d = distortion[..., :, None]
    p = perception[..., :, None]
    d2, p2 = distortion[..., None, :], perception[..., None, :]
    dominated = ((d2 <= d) & (p2 <= p) & ((d2 < d) | (p2 < p))).any(-1)
    return ~dominated & np.isfinite(distortion) & np.isfinite(perception)


def padded_images(records: list[dict], order: np.ndarray, size: tuple[int, int, int],
                  chunk: int) -> da.Array:  # noqa: F821
    """``(image, method, lam, C, H, W)`` as a lazy dask array: each record's ``denoised``
    ``(M, L, b, c, h, w)`` (numpy or dask) NaN-padded to ``size``, images in global order,
    ``chunk`` images per block. Nothing is loaded until the array is written."""
    import dask.array as da

    C, H, W = size
    parts = []
    for r in records:
        block = da.moveaxis(da.asarray(r["denoised"]), 2, 0)
        c, h, w = block.shape[-3:]
        parts.append(da.pad(block, [(0, 0)] * 3 + [(0, C - c), (0, H - h), (0, W - w)],
                            constant_values=np.nan))
    return da.concatenate(parts)[order].rechunk({0: chunk})


def assemble(
    records: list[dict], *, lambdas: list[float], methods: list[str], attrs: dict,
    has_clean: bool, has_sure: bool, chunk: int = 16,
) -> xr.Dataset:
    """Build the frontier dataset from chunk records.

    Each record holds ``index`` (global image numbers), ``shape`` ``(C, H, W)``, ``ids``,
    ``source``, ``sigma``,
    ``reasons`` (skip reason or ""), ``denoised`` ``(M, L, b, C, H, W)`` or None, and metric
    arrays ``(M, L, b)``. Images are ordered by their global index, so the result does not depend
    on the chunking. ``denoised`` stays lazy (dask, ``chunk`` images a block): it streams to
    disk in :func:`write_frontier` and is never held whole in memory.
    """
    if not records:
        raise ValueError("no images to assemble: the collection is empty or every image was bad")
    index = np.concatenate([np.asarray(r["index"]) for r in records])
    order = np.argsort(index, kind="stable")
    n, M = len(index), len(methods)

    def gather(key):
        return np.concatenate([np.asarray(r[key]) for r in records])[order]

    metrics = {k: np.concatenate([r[k] for r in records], axis=2)[:, :, order] for k in PER_IMAGE}
    keep_denoised = all(r.get("denoised") is not None for r in records)
    chans, heights, widths = (
        np.concatenate([[r["shape"][j]] * len(r["index"]) for r in records])[order]
        for j in range(3))
    dims_ml = ("image", "method", "lam")
    data: dict[str, tuple] = {}
    for key in PER_IMAGE:
        if (key in ("mse", "psnr", "ssim") and not has_clean) or (key == "sure_mse" and not has_sure):
            continue
        long_name, units = METRIC_ATTRS[key]
        data[key] = (dims_ml, metrics[key].transpose(2, 0, 1),
                     {"long_name": long_name, "units": units})
    distortion = metrics["mse"] if has_clean else metrics["sure_mse"]
    on = pareto_mask(distortion.transpose(2, 0, 1), metrics["perception"].transpose(2, 0, 1))
    data["on_frontier"] = (dims_ml, on, {
        "long_name": "lambda is Pareto-optimal for this image on (distortion, perception)",
        "distortion": "mse" if has_clean else "sure_mse"})
    for key in [k for k in PER_IMAGE if k in data]:
        with warnings.catch_warnings():  # all-NaN columns (no good image) stay NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            curve = np.nanmean(np.where(np.isfinite(data[key][1]), data[key][1], np.nan), axis=0)
        data[f"dataset_{key}"] = (("method", "lam"), curve, {
            "long_name": f"mean over the good images of {key}", "units": data[key][2]["units"]})
    if keep_denoised:
        den = padded_images(records, order, (int(chans.max()), int(heights.max()),
                                             int(widths.max())), chunk)
        data["denoised"] = (("image", "method", "lam", "channel", "y", "x"), den, {
            "long_name": "denoised image (NaN outside the image's own height/width/channels)",
            "units": "[0, 1] image units"})
    coords = {
        "image": np.arange(n), "index": ("image", index[order].astype(np.int64)),
        "lam": np.asarray(lambdas, np.float64),
        "method": np.asarray(methods, dtype=object),
        "id": ("image", gather("ids").astype(object)),
        "source": ("image", gather("source").astype(object)),
        "sigma": ("image", gather("sigma").astype(np.float64),
                  {"long_name": "noise standard deviation", "units": "[0, 1] image units"}),
        "skip_reason": ("image", gather("reasons").astype(object)),
        "height": ("image", heights.astype(np.int64)), "width": ("image", widths.astype(np.int64)),
        "channels": ("image", chans.astype(np.int64)),
    }
    ds = xr.Dataset(data, coords=coords, attrs=dict(attrs))
    ds["lam"].attrs.update({"long_name": "tradeoff value lambda", "units": "1",
                            "convention": LAMBDA_CONVENTION})
    ds.attrs["lambda_convention"] = LAMBDA_CONVENTION
    ds.attrs["layout"] = ("mixed sizes are padded: denoised is NaN outside each image's "
                          "height x width x channels coordinates")
    if M == 1:
        ds = ds.squeeze("method", drop=False)
    return ds


def write_frontier(ds: xr.Dataset, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write atomically: to a temporary sibling, then rename. A complete dataset is the only
    thing ever found at ``path``; an existing one is kept unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise ValueError(f"{path} exists; pass --overwrite to replace it")
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    ds = ds.copy()
    for name in ds.variables:  # strings as variable-length UTF-8 (a Zarr v3 data type)
        if ds[name].dtype.kind in "UO":
            ds[name] = ds[name].astype(object)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
            ds.to_zarr(tmp, mode="w", consolidated=True, zarr_format=3)
        if path.exists():
            old = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.old")
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def load_frontier(path: str | Path) -> xr.Dataset:
    """Open a frontier dataset (lazily, via ``xr.open_zarr``)."""
    path = Path(path)
    if path.is_dir() and (path / "frontier.zarr").exists():
        path = path / "frontier.zarr"
    if not path.exists():
        raise ValueError(f"no frontier dataset at {path}")
    ds = xr.open_zarr(path)
    # Small string coordinates as Python objects, so that ``ds.sel(method="k-average")`` works.
    strings = [k for k, v in ds.coords.items() if v.dtype.kind in "OUT" and v.ndim == 1]
    return ds.assign_coords({k: (ds[k].dims, ds[k].values.astype(object), ds[k].attrs)
                             for k in strings})


def run_config(ds: xr.Dataset) -> dict:
    """The run configuration stored with the dataset."""
    return json.loads(ds.attrs["config"])


def to_frame(ds: xr.Dataset) -> pd.DataFrame:  # noqa: F821
    """Per-image metrics as a long pandas frame: one row per (image, [method,] lam)."""
    names = [k for k in (*PER_IMAGE, "on_frontier") if k in ds]
    sub = ds[names].reset_coords(["id", "source", "sigma", "skip_reason"])
    frame = sub.to_dataframe().reset_index()
    drop = [c for c in ("height", "width", "channels") if c in frame]
    return frame.drop(columns=drop)


def denoised_of(ds: xr.Dataset, image: int) -> xr.DataArray:
    """One image's denoised outputs, cropped to its own extent."""
    one = ds["denoised"].isel(image=image)
    return one.isel(channel=slice(0, int(ds.channels[image])), y=slice(0, int(ds.height[image])),
                    x=slice(0, int(ds.width[image])))
