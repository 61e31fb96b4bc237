"""One chunk, end to end on one worker: sample the lambda grid, then measure every output.

One Prefect task per chunk rather than one per stage: each task run costs Prefect a fixed
0.1-0.4 s in the worker (context hydration, client, state changes; benchmarks/pipeline_overhead.py
and docs/performance.md), which is a large share of a small chunk's work. The stages still write
their own files (``.work/<chunk>.denoised.npz``, ``.metrics.npz``), so an interrupted run resumes
at the stage it had reached.
"""

from __future__ import annotations

import logging
import time

from prefect import task
from prefect.cache_policies import NONE
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger

from tasks.common import RunConfig, get_denoiser
from tasks.measure import run_metrics
from tasks.sample import run_sampler, set_threads


@task(name="process-chunk", cache_policy=NONE)
def process_chunk(store_path: str, group: str, chunk_index: int, run_dir: str,
                  config: RunConfig) -> str:
    """Denoise one chunk at every lambda and method, then its per-image metrics; returns the path
    of ``.work/<chunk>.metrics.npz``."""
    start = time.perf_counter()
    run_sampler(store_path, group, chunk_index, run_dir, config)
    sampled = time.perf_counter()
    path = run_metrics(store_path, group, chunk_index, run_dir, config)
    _logger().info("chunk %s/%d: sampled in %.2f s, measured in %.2f s", group, chunk_index,
                   sampled - start, time.perf_counter() - sampled)
    return str(path)


def _logger() -> logging.Logger | logging.LoggerAdapter:
    """The task run's logger (its lines reach the Prefect UI), or a plain one outside a run."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("dpflow.chunk")


def warm_worker(model: str) -> bool:
    """Import the chunk task's dependencies and load the model into the worker's cache, so that
    the first chunk does not pay for them (run on every worker while the flow ingests)."""
    import torchmetrics.functional.image  # noqa: F401 (ssim and psnr import it on first use)

    import dpcore.metrics  # noqa: F401
    import dpcore.sampler  # noqa: F401
    import dpcore.sure  # noqa: F401
    from tasks.common import device_name

    set_threads()
    get_denoiser(model, device_name())
    return True
