"""The Dask side of a run: a local cluster (one worker per GPU, or a few CPU workers) or an
existing scheduler, wrapped in Prefect's DaskTaskRunner.

Past one machine, start a scheduler and workers with dask-jobqueue (SLURM, PBS: e.g.
``SLURMCluster(cores=8, processes=1, job_extra_directives=["--gres=gpu:1"],
worker_extra_args=["--resources", "GPU=1"])``) or dask-kubernetes, and pass the scheduler's
address with ``--dask-address``. Give GPU workers ``--resources GPU=1`` so that chunk tasks,
which ask for one GPU each, land there; the workers need PREFECT_API_URL in their environment,
and should run without ``MALLOC_TRIM_THRESHOLD_`` and without the worker profiler
(``DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False``), as the local cluster's do.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def prefect_api_url() -> str:
    """The Prefect API every worker must report to. Without a configured one, start (once) the
    same temporary local server the flow process uses, so workers never start their own."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if url:
        return url
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start()
    return server.api_url


def worker_env(threads: int = 1) -> dict[str, str]:
    """Environment of each Dask worker process."""
    env = {
        "PREFECT_API_URL": prefect_api_url(),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": os.environ.get("PREFECT_LOGGING_LEVEL", "WARNING"),
        "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
        "DPFLOW_TORCH_THREADS": str(threads),
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH"))
                                      if p),
    }
    if os.environ.get("PREFECT_HOME"):
        env["PREFECT_HOME"] = os.environ["PREFECT_HOME"]
    return env


def spawn_environ() -> dict:
    """Dask's environment for new worker processes, less ``MALLOC_TRIM_THRESHOLD_``.

    Dask sets it to 64 KiB so that workers hand memory back to the OS; that also fixes glibc's
    mmap threshold, so every tensor over 128 KiB is mapped and unmapped at each allocation. On
    the sampler and metrics that doubled the CPU time (half of it page faults in the kernel;
    ``docs/performance.md``). Workers keep glibc's adaptive defaults instead.
    """
    import dask

    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    return environ


def local_cluster(n_workers: int | None = None, threads: int = 1, gpus: int | None = None):
    """One worker process per GPU (resources {"GPU": 1}, CUDA_VISIBLE_DEVICES pinned), or without
    a GPU ``n_workers`` single-threaded CPU worker processes (default: half the cores, 1 to 4)."""
    import dask
    import distributed
    import torch

    gpus = torch.cuda.device_count() if gpus is None else gpus
    env = worker_env(threads)
    # Nannies read the spawn environment and the workers' config when they are built, i.e.
    # inside the constructors. The workers' statistical profiler (a stack sample of the task
    # thread every 10 ms) is off: it cost the sampler about a third of its CPU time.
    with dask.config.set({"distributed.nanny.pre-spawn-environ": spawn_environ(),
                          "distributed.worker.profile.enabled": False}):
        if gpus:
            workers = {
                f"gpu-{i}": {"cls": distributed.Nanny, "options": {
                    "nthreads": 1, "resources": {"GPU": 1},
                    "env": {**env, "CUDA_VISIBLE_DEVICES": str(i)}}}
                for i in range(gpus if n_workers is None else min(gpus, n_workers))
            }
            scheduler = {"cls": distributed.Scheduler, "options": {"dashboard_address": ":0"}}
            return distributed.SpecCluster(workers=workers, scheduler=scheduler, silence_logs=40)
        if n_workers is None:
            n_workers = max(1, min(4, (os.cpu_count() or 2) // 2))
        return distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1,
                                        processes=True, dashboard_address=":0", env=env,
                                        silence_logs=40)


def task_runner(workers: int | None = None, dask_address: str | None = None):
    """A DaskTaskRunner on ``dask_address`` or on a fresh local cluster."""
    from prefect_dask import DaskTaskRunner

    if dask_address:
        return DaskTaskRunner(address=dask_address)
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1; got {workers}")
    return DaskTaskRunner(cluster_class=local_cluster, cluster_kwargs={"n_workers": workers})


def has_gpu_workers(client) -> bool:
    """Whether any worker of the cluster advertises a GPU resource."""
    info = client.scheduler_info(n_workers=-1) if _takes_n_workers(client) else \
        client.scheduler_info()
    return any(w.get("resources", {}).get("GPU") for w in info.get("workers", {}).values())


def _takes_n_workers(client) -> bool:
    import inspect

    return "n_workers" in inspect.signature(client.scheduler_info).parameters
