"""The frontier and export flows end to end: Prefect (one session harness) + a local Dask cluster."""

from __future__ import annotations

import numpy as np
import pytest

from data.frontier import load_frontier
from tests.conftest import tree_hashes

pytestmark = pytest.mark.usefixtures("prefect_harness")
LAMS = [0.0, 0.5, 1.0]


def params(images, prior, out, **extra):
    return dict(source=str(images), out=str(out), add_noise=0.1, seed=3, lambdas=LAMS, steps=6,
                model=f"gaussian:{prior}", **extra)


@pytest.fixture(scope="module")
def two_runs(gaussian_collection, tmp_path_factory):
    """The same collection with (chunk 5, 1 worker) and (chunk 24, 2 workers)."""
    from flows.frontier import frontier

    images, prior = gaussian_collection
    before = tree_hashes(images.parent)
    base = tmp_path_factory.mktemp("flows")
    a = frontier(**params(images, prior, base / "a", chunk_size=5, workers=1))
    b = frontier(**params(images, prior, base / "b", chunk_size=24, workers=2))
    return a, b, before, images


def test_result_independent_of_chunks_and_workers(two_runs):
    a, b, _, _ = two_runs
    assert a["chunks"] == 5 and b["chunks"] == 1 and not a["failed"] and not b["failed"]
    da, db = load_frontier(a["frontier"]), load_frontier(b["frontier"])
    for name in ("denoised", "mse", "psnr", "ssim", "sure_mse", "perception", "on_frontier"):
        np.testing.assert_allclose(da[name].values, db[name].values, rtol=1e-5, atol=1e-7,
                                   err_msg=name)
    # lambda = 0 is deterministic and lambda > 0 is not: outputs differ across lambda.
    assert not np.allclose(da.denoised.isel(lam=0).values, da.denoised.isel(lam=2).values)


def test_inputs_untouched_and_report_written(two_runs):
    a, _, before, images = two_runs
    assert tree_hashes(images.parent) == before
    from pathlib import Path

    report = Path(a["report"])
    assert {"dp_curve.png", "image_frontiers.png", "lambda_grid.png", "summary.md"} <= {
        p.name for p in report.iterdir()}


def test_refuses_overwrite_then_resumes_only_missing_chunks(two_runs, gaussian_collection):
    from pathlib import Path

    from flows.frontier import frontier

    a, _, _, _ = two_runs
    images, prior = gaussian_collection
    out = Path(a["frontier"]).parent
    with pytest.raises(ValueError, match="--resume"):
        frontier(**params(images, prior, out, chunk_size=5, workers=1))
    with pytest.raises(ValueError, match="chunk_size"):
        frontier(**params(images, prior, out, chunk_size=6, workers=1, resume=True))
    work = sorted((out / ".work").glob("*.npz"))
    stamps = {p: p.stat().st_mtime_ns for p in work}
    gone = [p for p in work if "chunk-00002" in p.name]
    for p in gone:
        p.unlink()
    before = load_frontier(out / "frontier.zarr").load()
    result = frontier(**params(images, prior, out, chunk_size=5, workers=1, resume=True))
    recomputed = [p for p in work if p.stat().st_mtime_ns != stamps.get(p)]
    assert sorted(recomputed) == sorted(gone)
    after = load_frontier(result["frontier"])
    np.testing.assert_allclose(after.denoised.values, before.denoised.values, rtol=1e-6)


def test_export_restores_dtype_at_operating_point(two_runs, tmp_path):
    import zarr

    from flows.export import export_flow

    a, _, _, _ = two_runs
    path = export_flow(frontier=a["frontier"], out=str(tmp_path / "den.zarr"), point="lambda=0.5")
    ds = load_frontier(a["frontier"])
    root = zarr.open_group(path, mode="r")
    names = {m["id"]: m["name"] for m in root.attrs["dpflow_export"]["images"]}
    assert set(names) == set(ds.id.values)
    stored = root[f"images/{names[str(ds.id.values[0])]}"][:]
    assert stored.dtype == np.float32  # the .npy input was float32
    np.testing.assert_allclose(stored, ds.denoised.isel(image=0, lam=1).values, atol=1e-6)


def test_failed_chunk_is_reported_and_the_rest_completes(gaussian_collection, tmp_path):
    """A model that cannot take one size group (an 8x8 analytic prior, a 12x12 image): that
    group's chunk fails with its reason, every other image is in the dataset, marked incomplete."""
    import json

    from skimage.io import imsave

    from flows.frontier import frontier

    images, prior = gaussian_collection
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, image in enumerate(np.load(images)[:3, 0]):
        imsave(folder / f"a{i}.png", (image * 255).round().astype(np.uint8), check_contrast=False)
    imsave(folder / "big.png", rng.integers(60, 200, (12, 12)).astype(np.uint8),
           check_contrast=False)
    result = frontier(**{**params(folder, prior, tmp_path / "run", chunk_size=4, workers=1),
                         "lambdas": [0.0, 1.0], "steps": 3})
    assert len(result["failed"]) == 1
    assert "shape" in next(iter(result["failed"].values()))
    ds = load_frontier(result["frontier"])
    assert ds.sizes["image"] == 3 and ds.attrs["complete"] == "false"
    assert json.loads(ds.attrs["failed_chunks"]) == result["failed"]
