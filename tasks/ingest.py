"""Ingest: read a collection once into the run's chunked Zarr store (the unit of work is a chunk)."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from tasks.common import STORE, RunConfig


@task(name="ingest", retries=1, retry_delay_seconds=2, cache_policy=NONE)
def ingest(run_dir: str, config: RunConfig) -> str:
    """Write the collection store of ``config.source`` under ``run_dir`` (kept when complete)."""
    from data.store import open_store, write_collection

    store_path = Path(run_dir) / STORE
    if store_path.exists():
        try:
            open_store(store_path)  # complete: a resumed run reuses it as it is
            return str(store_path)
        except ValueError:
            pass  # interrupted write: start it again
    write_collection(config.source, store_path, chunk_size=config.chunk_size, sigma=config.sigma,
                     estimate_sigma=config.estimate_sigma, add_noise=config.add_noise,
                     seed=config.seed, overwrite=True)
    return str(store_path)


@task(name="list-chunks", cache_policy=NONE)
def list_chunks(store_path: str) -> list[tuple[str, int]]:
    """Every (size group, chunk index) of the store: the fan-out of the run."""
    from data.store import open_store

    return [(unit.group, unit.chunk_index) for unit in open_store(store_path).chunks]
