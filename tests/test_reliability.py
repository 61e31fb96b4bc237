"""Real faults during a frontier run: a Dask worker killed mid-run, the whole flow process killed
mid-run and resumed, a dataset write killed half-way; and results that do not depend on the order
in which chunks complete. Each run is compared with an undisturbed one (tests.test_tasks.run_direct,
the same work without Prefect or Dask)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from data.frontier import load_frontier
from tasks.common import WORK, RunConfig
from tests.conftest import tree_hashes
from tests.test_dask_cluster import dask_cluster  # noqa: F401 (fixture: scheduler + 2 workers)
from tests.test_tasks import run_direct

REPO = Path(__file__).resolve().parents[1]
LAMS = (0.0, 0.5, 1.0)
COMPARE = ("denoised", "mse", "psnr", "ssim", "sure_mse", "perception", "on_frontier")


def assert_same_dataset(a, b) -> None:
    assert list(a.id.values) == list(b.id.values)
    for name in COMPARE:
        np.testing.assert_allclose(a[name].values, b[name].values, rtol=1e-5, atol=1e-7,
                                   err_msg=name)


def finished(out: Path, kind: str = "metrics") -> set[str]:
    return {p.name for p in (out / WORK).glob(f"*.{kind}.npz")} if (out / WORK).exists() else set()


def wait_for(predicate, timeout: float, poll: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(poll)
    return False


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    from data.analytic import write_gaussian_collection

    return write_gaussian_collection(tmp_path_factory.mktemp("rel"), 48, seed=5)


def config_of(images, prior, **kw) -> RunConfig:
    base = dict(source=str(images), model=f"gaussian:{prior}", add_noise=0.1, seed=11,
                lambdas=LAMS, steps=40, chunk_size=2)
    return RunConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def reference(collection, tmp_path_factory):
    """The undisturbed dataset (chunk after chunk in this process)."""
    images, prior = collection
    return run_direct(tmp_path_factory.mktemp("ref") / "run", config_of(images, prior))[0].load()


# ------------------------------------------------------------------------------ worker death

@pytest.mark.slow
@pytest.mark.timeout(500)
def test_worker_killed_mid_run_the_run_completes_with_the_same_dataset(
        dask_cluster, collection, reference, tmp_path):  # noqa: F811
    from distributed import Client

    from flows.frontier import frontier

    images, prior = collection
    out = tmp_path / "run"
    with Client(dask_cluster) as client:
        pids = client.run(os.getpid)  # worker address -> worker process pid
    victim = sorted(pids.values())[0]
    killed: dict = {}

    def killer():
        if wait_for(lambda: len(finished(out, "denoised")) >= 1, timeout=300):
            killed["done_before"] = len(finished(out))
            os.kill(victim, signal.SIGKILL)
            killed["at"] = time.monotonic()

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    result = frontier(source=str(images), out=str(out), add_noise=0.1, seed=11,
                      lambdas=list(LAMS), steps=40, chunk_size=2, model=f"gaussian:{prior}",
                      dask_address=dask_cluster)
    thread.join(5)
    assert "at" in killed, "the worker was never killed"
    assert killed["done_before"] < result["chunks"] == 24  # killed mid-run
    with pytest.raises(ProcessLookupError):
        os.kill(victim, 0)  # that worker process is really gone
    assert result["failed"] == {}, result["failed"]
    ds = load_frontier(result["frontier"])
    assert ds.attrs["complete"] == "true"
    assert_same_dataset(ds, reference)


# -------------------------------------------------------------------------------- flow death

def cli_args(images, prior, out) -> list[str]:
    return ["frontier", str(images), "--out", str(out), "--add-noise", "0.1", "--seed", "11",
            "--lambdas", "0,0.5,1", "--steps", "40", "--chunk-size", "2", "--workers", "1",
            "--model", f"gaussian:{prior}"]


@pytest.mark.slow
@pytest.mark.timeout(500)
def test_killed_flow_resumes_recomputing_only_unfinished_chunks(prefect_harness, collection,
                                                                reference, tmp_path):
    from prefect.settings import PREFECT_API_URL

    from flows.cli import app

    images, prior = collection
    out = tmp_path / "run"
    inputs = tree_hashes(images.parent)
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(),
           "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "flows.cli", *cli_args(images, prior, out)],
                               cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        assert wait_for(lambda: len(finished(out)) >= 3, timeout=300), "no chunk finished"
    finally:  # the whole process group: the flow and its local Dask workers, like a node crash
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)
    time.sleep(1)  # orphaned grandchildren (if any) see their parent gone
    done = finished(out)
    sampled = finished(out, "denoised")
    assert 3 <= len(done) < 24, len(done)
    # Output safety: the killed run left no dataset, and its partial state is not overwritten.
    with pytest.raises(ValueError):
        load_frontier(out / "frontier.zarr")
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / WORK).glob("*.npz")}
    runner = CliRunner()
    refused = runner.invoke(app, cli_args(images, prior, out))
    assert refused.exit_code == 1 and "--resume" in refused.output
    assert {p.name: p.stat().st_mtime_ns for p in (out / WORK).glob("*.npz")} == stamps

    resumed = runner.invoke(app, [*cli_args(images, prior, out), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    after = {p.name: p.stat().st_mtime_ns for p in (out / WORK).glob("*.npz")}
    kept = {name for name, stamp in stamps.items() if after.get(name) == stamp}
    assert kept == set(stamps)  # nothing finished before the kill was recomputed
    recomputed_samples = {n for n in after if n.endswith(".denoised.npz")} - sampled
    recomputed_metrics = {n for n in after if n.endswith(".metrics.npz")} - done
    assert len(recomputed_metrics) == 24 - len(done) > 0
    assert len(recomputed_samples) == 24 - len(sampled)
    ds = load_frontier(out / "frontier.zarr")
    assert ds.attrs["complete"] == "true"
    assert_same_dataset(ds, reference)
    assert tree_hashes(images.parent) == inputs


# ------------------------------------------------------------------ a killed dataset write

def test_killed_dataset_write_leaves_nothing_that_opens(tmp_path):
    """SIGKILL while write_frontier streams a dataset to disk: nothing at the target path, and
    load_frontier refuses it; the temporary is hidden and never taken for the dataset."""
    target = tmp_path / "frontier.zarr"
    script = textwrap.dedent(f"""
        import time
        import dask, dask.array as da, numpy as np, xarray as xr
        from data.frontier import write_frontier

        def block(i):
            if i == 2:
                print("writing", flush=True)
            time.sleep(0.5)
            return np.full((4, 64), float(i), np.float32)

        parts = [da.from_delayed(dask.delayed(block)(i), (4, 64), np.float32) for i in range(40)]
        ds = xr.Dataset({{"denoised": (("image", "x"), da.concatenate(parts))}},
                        attrs={{"complete": "true"}})
        with dask.config.set(scheduler="synchronous"):
            write_frontier(ds, {str(target)!r})
    """)
    process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, text=True,
                               stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert process.stdout.readline().strip() == "writing"
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    assert not target.exists()
    with pytest.raises(ValueError, match="no frontier dataset"):
        load_frontier(target)
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert leftovers and all(n.startswith(".frontier.zarr.") for n in leftovers), leftovers


# ---------------------------------------------------------------------- completion order

def test_same_dataset_whatever_the_order_chunks_complete(collection, reference, tmp_path):
    """Chunks sampled and measured in reverse and in shuffled order give the same dataset
    bit for bit (per-image seeding; aggregation orders by global index)."""
    from tasks.aggregate import build_frontier
    from tasks.ingest import ingest, list_chunks
    from tasks.measure import run_metrics
    from tasks.sample import run_sampler

    images, prior = collection
    config = config_of(images, prior, chunk_size=5)
    results = []
    for name, order in (("reverse", slice(None, None, -1)), ("shuffled", None)):
        out = tmp_path / name
        store = ingest.fn(str(out), config)
        chunks = list_chunks.fn(store)
        todo = chunks[order] if order else [chunks[i] for i in
                                            np.random.default_rng(3).permutation(len(chunks))]
        for g, k in todo:
            run_sampler(store, g, k, str(out), config)
        for g, k in reversed(todo):
            run_metrics(store, g, k, str(out), config)
        results.append(load_frontier(build_frontier(store, chunks, str(out), config)).load())
    for name in COMPARE:
        np.testing.assert_array_equal(results[0][name].values, results[1][name].values)
    assert_same_dataset(results[0], reference)  # and equal to chunk size 2, in order
