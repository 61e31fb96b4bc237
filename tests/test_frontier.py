"""The frontier dataset (data/frontier.py) and its report (data/report.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from data.frontier import assemble, denoised_of, load_frontier, pareto_mask, to_frame, write_frontier
from data.report import make_report

LAMS = [0.0, 0.5, 1.0]


def test_pareto_mask_known_cases():
    d = np.array([1.0, 2.0, 3.0, 2.5])
    p = np.array([3.0, 2.0, 1.0, 2.5])  # the last point is dominated by (2, 2)
    np.testing.assert_array_equal(pareto_mask(d, p), [True, True, True, False])
    # Ties are not dominance; NaN is never optimal.
    np.testing.assert_array_equal(pareto_mask(np.array([1.0, 1.0, np.nan]),
                                              np.array([1.0, 1.0, 0.0])), [True, True, False])


def record(index, shape, rng, clean=True):
    b, (c, h, w) = len(index), shape
    metrics = {k: rng.random((1, len(LAMS), b)) for k in ("mse", "psnr", "ssim", "sure_mse",
                                                          "perception")}
    return {"index": np.asarray(index), "shape": shape, "ids": np.array([f"im{i}" for i in index]),
            "source": np.array(["src"] * b), "sigma": np.full(b, 0.1),
            "reasons": np.array([""] * b), "has_clean": clean,
            "denoised": rng.random((1, len(LAMS), b, c, h, w)).astype(np.float32), **metrics}


def build(records):
    return assemble(records, lambdas=LAMS, methods=["variance-scaled"],
                    attrs={"config": json.dumps({"source": "src", "steps": 4, "seed": 0}),
                           "model": json.dumps({"name": "m", "sha256": "0" * 64})},
                    has_clean=True, has_sure=True)


def test_mixed_sizes_are_padded_and_order_is_global():
    rng = np.random.default_rng(0)
    a, b = record([0, 2], (1, 8, 8), rng), record([1, 3], (1, 4, 6), rng)
    ds = build([a, b])
    assert ds.denoised.shape == (4, 3, 1, 8, 8)  # method of size 1 squeezed
    assert list(ds.id.values) == ["im0", "im1", "im2", "im3"]
    np.testing.assert_array_equal(ds.height.values, [8, 4, 8, 4])
    one = denoised_of(ds, 1)
    assert one.shape == (3, 1, 4, 6)
    np.testing.assert_array_equal(one.values, np.moveaxis(b["denoised"][0], 1, 0)[0])
    assert np.isnan(ds.denoised.values[1, :, :, 4:, :]).all()
    # Same dataset whatever order the chunks arrive in.
    ds2 = build([b, a])
    xr.testing.assert_identical(ds.drop_attrs(), ds2.drop_attrs())
    # Dataset curve = mean over images; on_frontier = Pareto set of (mse, perception).
    np.testing.assert_allclose(ds.dataset_mse.values, ds.mse.values.mean(0))
    np.testing.assert_array_equal(ds.on_frontier.values,
                                  pareto_mask(ds.mse.values, ds.perception.values))


def test_write_is_atomic_and_never_overwrites(tmp_path):
    rng = np.random.default_rng(1)
    ds = build([record([0, 1], (1, 8, 8), rng)])
    path = write_frontier(ds, tmp_path / "frontier.zarr")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left
    with pytest.raises(ValueError, match="--overwrite"):
        write_frontier(ds, path)
    loaded = load_frontier(path)
    assert float(loaded.dataset_mse[1]) == pytest.approx(float(ds.dataset_mse[1]))
    assert loaded.mse.attrs["units"] and "VARIANCE" in loaded.attrs["lambda_convention"]
    plain = xr.open_zarr(path)  # the documented way in
    assert set(plain.dims) >= {"image", "lam"}
    assert loaded.sel(method="variance-scaled").mse.shape == (2, 3) or "method" not in loaded.dims
    frame = to_frame(loaded)
    assert len(frame) == 2 * 3 and {"id", "lam", "mse", "on_frontier"} <= set(frame.columns)


def test_report_files(tmp_path):
    rng = np.random.default_rng(2)
    ds = build([record(list(range(6)), (1, 8, 8), rng)])
    path = write_frontier(ds, tmp_path / "frontier.zarr")
    out = make_report(path, tmp_path / "report")
    for name in ("dp_curve.png", "image_frontiers.png", "lambda_grid.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    summary = (out / "summary.md").read_text()
    assert "| variance-scaled | 0.5 |" in summary and "lambda" in summary
