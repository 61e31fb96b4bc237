"""Export: the denoised archive at a chosen operating point, in the original dtype and range."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr
from prefect import task
from prefect.cache_policies import NONE

from tasks.common import STORE, retry_io_errors


def knee_index(perception: np.ndarray, distortion: np.ndarray) -> int:
    """The knee of a curve: the point farthest from the chord joining its ends, both axes
    rescaled to [0, 1] (Satopaa et al. 2011, "Kneedle", in its simplest form)."""
    ok = np.isfinite(perception) & np.isfinite(distortion)
    if ok.sum() < 3:
        return int(np.flatnonzero(ok)[0]) if ok.any() else 0
    p = (perception - np.nanmin(perception[ok])) / max(np.ptp(perception[ok]), 1e-30)
    d = (distortion - np.nanmin(distortion[ok])) / max(np.ptp(distortion[ok]), 1e-30)
    ends = np.flatnonzero(ok)[[0, -1]]
    a = np.array([p[ends[0]], d[ends[0]]])
    b = np.array([p[ends[1]], d[ends[1]]])
    chord = (b - a) / max(np.linalg.norm(b - a), 1e-30)
    rel = np.stack([p - a[0], d - a[1]], 1)
    dist = np.abs(rel[:, 0] * chord[1] - rel[:, 1] * chord[0])
    dist[~ok] = -1
    return int(np.argmax(dist))


def choose_lambdas(ds: xr.Dataset, point: str) -> np.ndarray:
    """Per image, the lambda position of the operating point ``point``:

    - ``lambda=V``: that lambda of the grid for every image;
    - ``budget=B``: per image the largest lambda whose distortion (mse, or sure_mse without a
      clean reference) is at most B (per-pixel, [0, 1] units); lambda = 0 when none is;
    - ``knee``: the knee of the dataset distortion-perception curve, for every image.
    """
    lams = ds.lam.values
    dist_name = "mse" if "mse" in ds else "sure_mse"
    n = ds.sizes["image"]
    kind, _, value = point.partition("=")
    if kind == "lambda":
        match = np.flatnonzero(np.isclose(lams, float(value)))
        if not match.size:
            raise ValueError(f"lambda {value} is not in the run's grid {lams.tolist()}")
        return np.full(n, match[0])
    if kind == "budget":
        budget = float(value)
        if not budget > 0:
            raise ValueError(f"the distortion budget must be > 0; got {value}")
        dist = ds[dist_name].values  # (image, lam)
        within = np.where(np.isfinite(dist), dist <= budget, False)
        order = np.argsort(lams)
        pos = np.zeros(n, int)
        for i in range(n):
            ok = order[within[i, order]]
            pos[i] = ok[-1] if ok.size else order[0]
        return pos
    if kind == "knee":
        k = knee_index(ds["dataset_perception"].values, ds[f"dataset_{dist_name}"].values)
        return np.full(n, k)
    raise ValueError(f"unknown operating point {point!r}; use lambda=V, budget=B or knee")


def export_frontier(frontier_path: str, out: str, *, point: str, method: str | None = None,
                    format: str | None = None, overwrite: bool = False) -> Path:
    """Write every good image's denoised output at ``point`` with ``data.export``."""
    from data.export import ExportRecord, export_images
    from data.frontier import denoised_of, load_frontier
    from data.store import iter_chunks

    ds = load_frontier(frontier_path)
    if "denoised" not in ds:
        raise ValueError(f"{frontier_path} holds no denoised images (it was run with --no-keep-denoised)")
    if "method" in ds.dims:
        names = [str(m) for m in ds.method.values]
        method = method or names[0]
        if method not in names:
            raise ValueError(f"method {method!r} not in the run ({', '.join(names)})")
        ds = ds.isel(method=names.index(method))
    positions = choose_lambdas(ds, point)
    store_path = Path(frontier_path).resolve().parent / STORE
    scaling = {}
    for _, _, chunk in iter_chunks(store_path):
        for i, s in zip(np.asarray(chunk["index"]), chunk["scaling"], strict=True):
            scaling[int(i)] = s
    good = np.flatnonzero(ds.skip_reason.values == "")

    def records():
        for i in good:
            image = denoised_of(ds, int(i)).isel(lam=int(positions[i])).values
            yield ExportRecord(str(ds.id.values[i]), image.astype(np.float32),
                               scaling[int(ds["index"].values[i])], str(ds.source.values[i]))

    info = export_images(records(), out, format=format, overwrite=overwrite,
                         protect=[str(Path(frontier_path).resolve().parent)])
    return info.path


@task(name="export", retries=1, retry_delay_seconds=2,
      retry_condition_fn=retry_io_errors, cache_policy=NONE)
def export(frontier_path: str, out: str, point: str, method: str | None = None,
           format: str | None = None, overwrite: bool = False) -> str:
    """Write the denoised archive at an operating point (original dtype restored)."""
    return str(export_frontier(frontier_path, out, point=point, method=method, format=format,
                               overwrite=overwrite))
