"""Ingest: read a collection once into the run's chunked Zarr store (the unit of work is a chunk)."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from tasks.common import STORE, RunConfig, chunk_pixels, retry_io_errors


@task(name="ingest", retries=1, retry_delay_seconds=2,
      retry_condition_fn=retry_io_errors, cache_policy=NONE)
def ingest(run_dir: str, config: RunConfig, gpu: bool = False) -> str:
    """Write the collection store of ``config.source`` under ``run_dir`` (kept when complete);
    ``gpu``: the chunks go to GPU workers (larger automatic chunks)."""
    from data.store import open_store, write_collection

    store_path = Path(run_dir) / STORE
    if store_path.exists():
        try:
            open_store(store_path)  # complete: a resumed run reuses it as it is
            return str(store_path)
        except ValueError:
            pass  # interrupted write: start it again
    write_collection(config.source, store_path, chunk_size=config.chunk_size,
                     chunk_pixels=chunk_pixels(config, gpu), sigma=config.sigma,
                     estimate_sigma=config.estimate_sigma, add_noise=config.add_noise,
                     seed=config.seed, overwrite=True)
    return str(store_path)


@task(name="list-chunks", cache_policy=NONE)
def list_chunks(store_path: str) -> list[tuple[str, int]]:
    """Every (size group, chunk index) of the store: the fan-out of the run."""
    from data.store import open_store

    return [(unit.group, unit.chunk_index) for unit in open_store(store_path).chunks]


@task(name="check-model", cache_policy=NONE)
def check_model(store_path: str, model: str) -> None:
    """Refuse at once a model whose channel count does not match the data (before fan-out)."""
    from data.store import open_store
    from tasks.common import get_denoiser

    denoiser = get_denoiser(model, "cpu")
    for group in open_store(store_path).groups.values():
        channels = group.shape[1]
        if channels != denoiser.channels:
            raise ValueError(f"model {model!r} expects {denoiser.channels} channel(s) but images "
                             f"of group {group.name} have {channels}; choose a matching model")
