"""The pipeline's task logic, called directly (``.fn`` / plain bodies): values, not just shapes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from data.analytic import expected_mse, mse_spread, write_gaussian_collection
from tasks.aggregate import build_frontier
from tasks.common import WORK, RunConfig, check_config, get_denoiser
from tasks.export import choose_lambdas, knee_index
from tasks.ingest import ingest, list_chunks
from tasks.measure import run_metrics
from tasks.sample import method_knobs, run_sampler

SIGMA = 0.1
LAMS = (0.0, 0.5, 1.0)


def run_direct(out, config: RunConfig):
    """The flow's work without Prefect or Dask, chunk after chunk."""
    store = ingest.fn(str(out), config)
    chunks = list_chunks.fn(store)
    for g, k in chunks:
        run_sampler(store, g, k, str(out), config)
        run_metrics(store, g, k, str(out), config)
    from data.frontier import load_frontier

    return load_frontier(build_frontier(store, chunks, str(out), config)), store, chunks


@pytest.fixture(scope="module")
def big_gaussian(tmp_path_factory):
    return write_gaussian_collection(tmp_path_factory.mktemp("big"), 300, seed=7)


def test_frontier_matches_gaussian_theory(big_gaussian, tmp_path):
    """Mean MSE per lambda is (1 + lambda) tr(S_y) / d (MATH.md), within the Monte-Carlo error of
    300 images (closed-form spread) plus 1% for the 20-step discretisation; SURE agrees too."""
    torch.set_num_threads(1)
    images, prior = big_gaussian
    config = RunConfig(source=str(images), model=f"gaussian:{prior}", add_noise=SIGMA,
                       lambdas=LAMS, steps=20, chunk_size=128)
    ds, _, _ = run_direct(tmp_path / "run", config)
    theory = expected_mse(prior, SIGMA, LAMS)
    n = ds.sizes["image"]
    for l, lam in enumerate(LAMS):
        got = float(ds.dataset_mse.values[l])
        tol = 4 * mse_spread(prior, SIGMA, lam) / np.sqrt(n) + 0.01 * theory[l]
        assert abs(got - theory[l]) < tol, (lam, got, theory[l], tol)
        sure = ds.sure_mse.values[:, l]
        sure_tol = 4 * np.std(sure - ds.mse.values[:, l]) / np.sqrt(n) + tol
        assert abs(sure.mean() - theory[l]) < sure_tol, (lam, sure.mean(), theory[l])
    # The slope is the posterior trace: distinguishes variance scaling from std scaling.
    assert ds.dataset_mse.values[-1] / ds.dataset_mse.values[0] == pytest.approx(2, rel=0.06)


def test_results_do_not_depend_on_chunk_size(gaussian_collection, tmp_path):
    images, prior = gaussian_collection
    runs = []
    for size in (5, 24):
        config = RunConfig(source=str(images), model=f"gaussian:{prior}", add_noise=SIGMA,
                           lambdas=LAMS, steps=8, chunk_size=size)
        runs.append(run_direct(tmp_path / f"c{size}", config)[0])
    for name in ("denoised", "mse", "sure_mse", "perception", "on_frontier"):
        np.testing.assert_allclose(runs[0][name].values, runs[1][name].values, rtol=1e-5,
                                   atol=1e-7, err_msg=name)
    assert list(runs[0].id.values) == list(runs[1].id.values)


def test_bad_image_is_skipped_rest_completes(tmp_path, gaussian_collection):
    """A NaN pixel in one image: that image is recorded as skipped, every other one computed."""
    _, prior = gaussian_collection
    images = write_gaussian_collection(tmp_path / "in", 6, seed=2)[0]
    data = np.load(images)
    data[3, 0, 2, 2] = np.nan
    np.save(images, data)
    config = RunConfig(source=str(images), model=f"gaussian:{prior}", sigma=SIGMA, lambdas=LAMS,
                       steps=4, chunk_size=4)
    ds, _, _ = run_direct(tmp_path / "run", config)
    skipped = json.loads(ds.attrs["skipped_inputs"])
    reasons = {s["id"]: s["reason"] for s in skipped}
    per_image = {i: r for i, r in zip(ds.id.values, ds.skip_reason.values, strict=True) if r}
    bad = {**reasons, **per_image}
    assert len(bad) == 1 and ("nan" in next(iter(bad.values())).lower()
                              or "finite" in next(iter(bad.values())).lower())
    good = ds.skip_reason.values == ""
    assert np.isfinite(ds.sure_mse.values[good]).all() and good.sum() >= 5


def test_chunk_results_are_kept_on_resume(gaussian_collection, tmp_path):
    """A finished chunk's file is never rewritten (a resumed run recomputes only the others)."""
    images, prior = gaussian_collection
    config = RunConfig(source=str(images), model=f"gaussian:{prior}", add_noise=SIGMA,
                       lambdas=LAMS, steps=4, chunk_size=10)
    run_direct(tmp_path, config)
    files = sorted((tmp_path / WORK).glob("*.npz"))
    assert len(files) == 6  # 3 chunks x (denoised, metrics)
    stamps = {f: f.stat().st_mtime_ns for f in files}
    files[0].unlink()
    run_direct(tmp_path, config)
    assert files[0].exists()
    assert all(f.stat().st_mtime_ns == stamps[f] for f in files[1:])


def test_channel_mismatch_is_refused(gaussian_collection):
    _, prior = gaussian_collection
    with pytest.raises(ValueError, match="channel"):
        get_denoiser(f"gaussian:{prior}", "cpu", expect_channels=3)


@pytest.mark.parametrize("field,value,match", [
    ("lambdas", (0.0, 1.5), "lambdas"), ("lambdas", (0.5, 0.5), "duplicates"),
    ("sigma", -0.1, "sigma"), ("steps", 0, "steps"), ("methods", ("magic",), "unknown method"),
    ("add_noise", 0.0, "add-noise"),
])
def test_bad_parameters_are_refused(field, value, match):
    with pytest.raises(ValueError, match=match):
        check_config(RunConfig(source="x", **{field: value}))


def test_method_knobs_match_gaussian_mse():
    """k-average uses K = round(1 / lambda) (lambda = 0: the mean path), interpolate
    alpha = sqrt(lambda): both give MSE (1 + lambda) tr S_y for a Gaussian posterior."""
    assert method_knobs("k-average", (0.0, 0.25, 0.5, 1.0)) == [0.0, 4.0, 2.0, 1.0]
    assert method_knobs("k-average", (0.001,)) == [16.0]
    assert method_knobs("interpolate", (0.0, 0.25, 1.0)) == [0.0, 0.5, 1.0]


def test_knee_and_budget_operating_points():
    import xarray as xr

    # An L-shaped curve: the corner (index 2) is the knee.
    assert knee_index(np.array([4.0, 2.0, 1.0, 0.9, 0.8]), np.array([1.0, 1.1, 1.2, 3.0, 6.0])) == 2
    lam = np.array([0.0, 0.5, 1.0])
    ds = xr.Dataset({"mse": (("image", "lam"), [[1.0, 2.0, 3.0], [1.0, 1.5, 1.9], [4, 5, 6]])},
                    coords={"lam": lam})
    np.testing.assert_array_equal(choose_lambdas(ds, "budget=2.0"), [1, 2, 0])
    np.testing.assert_array_equal(choose_lambdas(ds, "lambda=0.5"), [1, 1, 1])
    with pytest.raises(ValueError, match="not in the run's grid"):
        choose_lambdas(ds, "lambda=0.3")


def test_methods_share_the_ends_of_the_grid(gaussian_collection, tmp_path):
    """With one seed, every traversal meets the others at lambda = 0 (the mean path) and at
    lambda = 1 (the same posterior sample), and differs in between."""
    images, prior = gaussian_collection
    config = RunConfig(source=str(images), model=f"gaussian:{prior}", add_noise=SIGMA,
                       lambdas=(0.0, 0.25, 1.0), steps=6, chunk_size=24,
                       methods=("variance-scaled", "k-average", "interpolate"))
    ds, _, _ = run_direct(tmp_path, config)
    den = ds.denoised.transpose("method", "lam", ...).values
    assert list(ds.method.values) == list(config.methods)
    for m in (1, 2):
        np.testing.assert_allclose(den[m, 0], den[0, 0], atol=1e-6)
        np.testing.assert_allclose(den[m, 2], den[0, 2], atol=1e-6)
        assert not np.allclose(den[m, 1], den[0, 1], atol=1e-3)
    assert ds.on_frontier.dims == ("image", "method", "lam")


def test_archive_without_clean_uses_sure_and_seed_moves_only_stochastic_lambdas(
        gaussian_collection, tmp_path):
    """A noisy archive with known sigma (no clean images): distortion is SURE, perception the
    no-reference residual proxy, the report still renders; a new sampler seed changes lambda > 0
    only (lambda = 0 is deterministic)."""
    from data.report import make_report

    images, prior = gaussian_collection
    clean = np.load(images)
    noisy_path = tmp_path / "noisy.npy"
    rng = np.random.default_rng(5)
    np.save(noisy_path, (clean + SIGMA * rng.standard_normal(clean.shape)).astype(np.float32))
    runs = []
    for seed in (0, 1):
        config = RunConfig(source=str(noisy_path), model=f"gaussian:{prior}", sigma=SIGMA,
                           lambdas=LAMS, steps=6, chunk_size=8, seed=seed)
        runs.append(run_direct(tmp_path / f"s{seed}", config)[0])
    ds = runs[0]
    assert "mse" not in ds and "ssim" not in ds and "sure_mse" in ds
    assert ds.on_frontier.attrs["distortion"] == "sure_mse"
    assert ds.attrs["perception_definition"].startswith("no clean reference")
    # SURE of the mean path is close to its true MSE on average (the clean images are known here).
    true_mse = ((ds.denoised.isel(lam=0).values - clean) ** 2).mean((1, 2, 3))
    sure = ds.sure_mse.isel(lam=0).values
    assert abs(sure.mean() - true_mse.mean()) < 4 * np.std(sure - true_mse) / np.sqrt(len(sure))
    a, b = runs[0].denoised.values, runs[1].denoised.values
    np.testing.assert_array_equal(a[:, 0], b[:, 0])
    assert not np.allclose(a[:, 1:], b[:, 1:])
    out = make_report(tmp_path / "s0" / "frontier.zarr", tmp_path / "report")
    assert "sure_mse" in (out / "summary.md").read_text()


def test_without_denoised_images_metrics_stay_and_export_refuses(gaussian_collection, tmp_path):
    from tasks.export import export_frontier

    images, prior = gaussian_collection
    config = RunConfig(source=str(images), model=f"gaussian:{prior}", add_noise=SIGMA,
                       lambdas=LAMS, steps=4, chunk_size=12, keep_denoised=False)
    ds, _, _ = run_direct(tmp_path / "run", config)
    assert "denoised" not in ds and np.isfinite(ds.mse.values).all()
    with pytest.raises(ValueError, match="no denoised images"):
        export_frontier(str(tmp_path / "run" / "frontier.zarr"), str(tmp_path / "x.zarr"),
                        point="knee")


def test_automatic_chunk_size_follows_the_grid_and_the_workers(gaussian_collection, tmp_path):
    from dataclasses import replace

    from data.store import auto_chunk_size, open_store
    from tasks.common import CHUNK_ROW_PIXELS, chunk_pixels

    images, prior = gaussian_collection
    config = RunConfig(source=str(images), model=f"gaussian:{prior}", add_noise=SIGMA,
                       lambdas=LAMS, methods=("variance-scaled", "interpolate"))
    assert config.chunk_size is None  # automatic by default
    # A chunk is one sampler batch of lambdas x methods rows per image.
    assert chunk_pixels(config, gpu=False) == CHUNK_ROW_PIXELS["cpu"] // 6
    assert chunk_pixels(config, gpu=True) == CHUNK_ROW_PIXELS["gpu"] // 6
    assert chunk_pixels(replace(config, lambdas=(0.0, 1.0)), gpu=False) > chunk_pixels(config,
                                                                                     gpu=False)
    for gpu in (False, True):
        store = open_store(ingest.fn(str(tmp_path / f"run-{gpu}"), config, gpu))
        for group in store.groups.values():
            assert group.chunk_size == auto_chunk_size(group.shape[1:], chunk_pixels(config, gpu))
