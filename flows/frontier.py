"""The frontier flow: ingest -> fan out over chunks (sample, measure) -> aggregate -> report."""

from __future__ import annotations

import shutil
from contextlib import nullcontext
from pathlib import Path

from prefect import flow
from prefect.context import FlowRunContext
from prefect.futures import as_completed

from flows import progress
from tasks.aggregate import aggregate
from tasks.chunk import process_chunk, warm_worker
from tasks.common import FRONTIER, REPORT, RUN_JSON, STORE, WORK, RunConfig, atomic_write_text, check_config
from tasks.ingest import check_model, ingest, list_chunks
from tasks.report import report


def check_out(source: str, out: str | Path) -> None:
    """The run directory must not be, contain or lie inside a local input (inputs stay as
    they are: nothing is ever written among them)."""
    src = Path(str(source).split("#")[0])
    if str(source).startswith("sample:") or not src.exists():
        return
    src, run_dir = src.resolve(), Path(out).resolve()
    if src == run_dir or src in run_dir.parents or run_dir in src.parents:
        raise ValueError(f"--out {run_dir} overlaps the input {src}; choose a separate folder")


def prepare_run_dir(out: Path, config: RunConfig, *, overwrite: bool, resume: bool) -> None:
    """Refuse to clobber an earlier run; check that a resumed run has the same settings."""
    if overwrite and resume:
        raise ValueError("give either --overwrite or --resume, not both")
    run_json = out / RUN_JSON
    earlier = run_json.exists() or (out / FRONTIER).exists()
    if earlier and overwrite:
        for name in (STORE, STORE + ".tmp", WORK, FRONTIER, REPORT, RUN_JSON):
            target = out / name
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else \
                target.unlink(missing_ok=True)
    elif earlier and resume:
        if not run_json.exists():
            raise ValueError(f"{out} holds a frontier but no {RUN_JSON}; cannot resume it")
        before = RunConfig.from_json(run_json.read_text()).numeric_key()
        diff = [k for k, v in config.numeric_key().items() if before.get(k) != v]
        if diff:
            raise ValueError(f"--resume with different settings than the run in {out}: "
                             f"{', '.join(diff)} differ; use --overwrite to start again")
    elif earlier:
        raise ValueError(f"{out} already holds a run; pass --resume to continue it or "
                         f"--overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_json, config.to_json())


def dask_client():
    """The Dask client of the running flow's task runner (None on another runner)."""
    runner = FlowRunContext.get().task_runner
    return getattr(runner, "client", None)


def on_gpu() -> bool:
    """Whether the flow's Dask cluster has GPU workers."""
    from flows.cluster import has_gpu_workers

    client = dask_client()
    return client is not None and has_gpu_workers(client)


def gpu_annotation(gpu: bool):
    """Ask Dask for one GPU per chunk task when the cluster has GPU workers."""
    import dask

    return dask.annotate(resources={"GPU": 1}) if gpu else nullcontext()


def warm_workers(model: str) -> list:
    """Have every worker import the chunk task and load the model now, while the flow ingests
    (plain Dask futures, pinned one per worker; ``[]`` if the runner is not Dask). A failure
    there is not reported: the chunks that need the model report it."""
    client = dask_client()
    if client is None:
        return []
    workers = list(client.scheduler_info().get("workers", {}))
    return [client.submit(warm_worker, model, workers=[w], allow_other_workers=False, pure=False)
            for w in workers]


def make_config(*, source: str, sigma: float | None, estimate_sigma: bool,
                add_noise: float | None, seed: int, lambdas: list[float], steps: int, model: str,
                chunk_size: int | None, methods: list[str], sure: bool,
                keep_denoised: bool = True) -> RunConfig:
    """The checked run configuration (raises ValueError with one line on a bad parameter)."""
    return check_config(RunConfig(
        source=str(source), lambdas=tuple(float(v) for v in lambdas), steps=steps, model=model,
        seed=seed, chunk_size=chunk_size, sigma=sigma, estimate_sigma=estimate_sigma,
        add_noise=add_noise, methods=tuple(methods), sure=sure, keep_denoised=keep_denoised))


@flow(name="frontier-pipeline")
def frontier_pipeline(out: str, config: RunConfig) -> dict:
    """The work itself, on whatever task runner the caller attached."""
    # The workers import and load the model while the flow ingests.
    warming = warm_workers(config.model)
    # Ingest: the collection becomes the run's chunked store (once; resumed runs reuse it).
    gpu = on_gpu()
    store = ingest(out, config, gpu)
    chunks = list_chunks(store)
    check_model(store, config.model)
    # Sample and measure: one task per chunk, spread over the Dask workers.
    with gpu_annotation(gpu):
        futures = [process_chunk.submit(store, g, k, out, config) for g, k in chunks]
    failures, done = {}, 0
    for _ in as_completed(futures):
        done += 1
        progress.report(done, len(chunks))
    for (g, k), future in zip(chunks, futures, strict=True):
        future.wait()  # the final state the worker returned, not the API's possibly older one
        state = future.state
        if state.is_failed() or state.is_crashed():
            error = state.result(raise_on_failure=False)
            failures[(g, k)] = f"{type(error).__name__}: {error}".splitlines()[0]
    del warming
    good = [c for c in chunks if c not in failures]
    if not good:
        first = next(iter(failures.values()), "no chunks")
        raise ValueError(f"every chunk failed ({first})")
    # Aggregate: one dataset, written atomically.
    failed = {f"{g}/{k}": msg for (g, k), msg in failures.items()}
    frontier = aggregate(store, good, out, config, failed)
    # Report: PNG figures and a Markdown summary next to the dataset.
    report_dir = report(frontier, str(Path(out) / REPORT))
    return {"frontier": frontier, "report": report_dir, "chunks": len(chunks),
            "failed": failed}


@flow(name="frontier")
def frontier(
    source: str,
    out: str,
    sigma: float | None = None,
    estimate_sigma: bool = False,
    add_noise: float | None = None,
    seed: int = 0,
    lambdas: list[float] = [0.0, 0.25, 0.5, 0.75, 1.0],  # noqa: B006 (Prefect parameter)
    steps: int = 20,
    model: str = "sci-patches",
    chunk_size: int | None = None,
    methods: list[str] = ["variance-scaled"],  # noqa: B006
    workers: int | None = None,
    dask_address: str | None = None,
    overwrite: bool = False,
    resume: bool = False,
    sure: bool = True,
    keep_denoised: bool = True,
) -> dict:
    """Distortion-perception frontiers of a collection: per image and for the whole dataset.

    ``lambdas`` scale the variance of the sampler's injected noise (0: mean path, 1: posterior
    sampling); ``sigma`` is in units of the [0, 1]-scaled image. Writes OUT/frontier.zarr and
    OUT/report/. ``out`` may contain ``{date}`` (today, UTC), for scheduled runs.
    """
    config = make_config(source=source, sigma=sigma, estimate_sigma=estimate_sigma,
                         add_noise=add_noise, seed=seed, lambdas=lambdas, steps=steps,
                         model=model, chunk_size=chunk_size, methods=methods, sure=sure,
                         keep_denoised=keep_denoised)
    if "{date}" in out:  # nightly deployments: one run directory per (UTC) day
        from datetime import UTC, datetime

        out = out.replace("{date}", datetime.now(UTC).strftime("%Y-%m-%d"))
    run_dir = Path(out).resolve()
    check_out(config.source, run_dir)
    prepare_run_dir(run_dir, config, overwrite=overwrite, resume=resume)
    from flows.cluster import task_runner

    pipeline = frontier_pipeline.with_options(task_runner=task_runner(workers, dask_address))
    return pipeline(str(run_dir), config)


if __name__ == "__main__":
    import sys

    frontier(source=sys.argv[1], out=sys.argv[2], add_noise=0.1)
