"""`--dask-address`: the frontier flow on a real `dask scheduler` + two `dask worker` processes
on loopback, giving the same dataset as the in-process computation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.processes import free_port, stop

REPO = Path(__file__).resolve().parents[1]
DASK = str(Path(sys.executable).parent / "dask")


@pytest.fixture
def dask_cluster(prefect_harness):
    """A scheduler and two single-threaded workers, each a subprocess with PREFECT_API_URL."""
    from distributed import Client

    from flows.cluster import worker_env

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, **worker_env(threads=1)}
    procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--dashboard-address", ":0"], env=env, cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)]
    try:
        for i in range(2):
            procs.append(subprocess.Popen(
                [DASK, "worker", address, "--nworkers", "1", "--nthreads", "1", "--name",
                 f"w{i}", "--no-dashboard"], env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True))
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        for proc in reversed(procs):
            stop(proc)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_frontier_on_existing_scheduler(dask_cluster, gaussian_collection, tmp_path):
    from distributed import Client

    from data.frontier import load_frontier
    from flows.frontier import frontier
    from tasks.common import RunConfig
    from tests.test_tasks import run_direct

    images, prior = gaussian_collection
    kw = dict(source=str(images), add_noise=0.1, seed=2, steps=5, chunk_size=4,
              model=f"gaussian:{prior}")
    result = frontier(out=str(tmp_path / "remote"), lambdas=[0.0, 0.5, 1.0],
                      dask_address=dask_cluster, **kw)
    assert result["chunks"] == 6 and not result["failed"], result
    remote = load_frontier(result["frontier"])
    with Client(dask_cluster) as client:  # the run used the external two-worker cluster
        assert len(client.scheduler_info()["workers"]) == 2
    local, _, _ = run_direct(tmp_path / "local", RunConfig(lambdas=(0.0, 0.5, 1.0), **kw))
    for name in ("denoised", "mse", "sure_mse", "perception"):
        np.testing.assert_allclose(remote[name].values, local[name].values, rtol=1e-5,
                                   atol=1e-7, err_msg=name)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_gpu_cluster_pins_one_device_per_worker(prefect_harness):
    """The GPU layout, on any machine: one worker per device, CUDA_VISIBLE_DEVICES pinned,
    resources {"GPU": 1}; tasks annotated with the GPU resource run only there."""
    import dask
    from distributed import Client

    from flows.cluster import has_gpu_workers, local_cluster

    with local_cluster(gpus=2) as cluster, Client(cluster) as client:
        client.wait_for_workers(2, timeout=120)
        pinned = client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))
        assert sorted(pinned.values()) == ["0", "1"]
        resources = [w["resources"] for w in client.scheduler_info()["workers"].values()]
        assert resources == [{"GPU": 1}, {"GPU": 1}] and has_gpu_workers(client)
        api = client.run(lambda: os.environ.get("PREFECT_API_URL"))
        assert all(url and url.startswith("http") for url in api.values())
        with dask.annotate(resources={"GPU": 1}):
            futures = client.map(lambda i: os.environ["CUDA_VISIBLE_DEVICES"], range(4), pure=False)
        assert set(client.gather(futures)) <= {"0", "1"}


def worker_settings() -> tuple:
    import dask

    return (os.environ.get("MALLOC_TRIM_THRESHOLD_"), os.environ.get("OMP_NUM_THREADS"),
            dask.config.get("distributed.worker.profile.enabled"))


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("gpus", [0, 1])
def test_local_workers_run_without_malloc_trimming_or_profiler(prefect_harness, gpus):
    """Dask's default MALLOC_TRIM_THRESHOLD_ and stack profiler doubled the sampler's CPU time in
    a worker (docs/performance.md); the project's workers run without them, one thread each,
    and the calling process keeps its own Dask settings."""
    import dask
    from distributed import Client

    from flows.cluster import local_cluster

    before = dask.config.get("distributed.nanny.pre-spawn-environ")
    with local_cluster(1, gpus=gpus) as cluster, Client(cluster) as client:
        client.wait_for_workers(1, timeout=120)
        assert list(client.run(worker_settings).values()) == [(None, "1", False)]
    assert dask.config.get("distributed.nanny.pre-spawn-environ") == before
    assert "MALLOC_TRIM_THRESHOLD_" in before and dask.config.get("distributed.worker.profile.enabled")
