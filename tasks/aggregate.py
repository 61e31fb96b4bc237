"""Aggregate the chunk results of a run into the frontier dataset (OUT/frontier.zarr)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from prefect import task
from prefect.cache_policies import NONE

from data.store import open_store, read_chunk
from tasks.common import FRONTIER, WORK, RunConfig, chunk_name, model_identity, retry_io_errors
from tasks.measure import perception_definition


def load_denoised(path: str) -> np.ndarray:
    with np.load(path) as f:
        return f["denoised"]


def chunk_record(store_path: str, group: str, chunk_index: int, run_dir: str,
                 config: RunConfig, keep_denoised: bool) -> dict:
    """One chunk's images, coordinates and metrics, read back from the run directory."""
    chunk = read_chunk(store_path, group, chunk_index)
    work = Path(run_dir) / WORK / chunk_name(group, chunk_index)
    with np.load(f"{work}.denoised.npz") as f:
        record = {"reasons": f["reasons"], "denoised": None}
    if keep_denoised:  # lazily: read when the dataset is written, one chunk at a time
        import dask
        import dask.array as da

        shape = (len(config.methods), len(config.lambdas), *np.asarray(chunk["noisy"]).shape)
        record["denoised"] = da.from_delayed(dask.delayed(load_denoised)(f"{work}.denoised.npz"),
                                             shape, dtype=np.float32)
    with np.load(f"{work}.metrics.npz") as f:
        record.update({k: f[k] for k in f.files if k != "index"})
    record.update({"index": np.asarray(chunk["index"]), "ids": np.asarray(chunk["ids"], object),
                   "source": np.asarray(chunk["sources"], object),
                   "sigma": np.asarray(chunk["sigma"], np.float64),
                   "shape": tuple(np.asarray(chunk["noisy"]).shape[1:])})
    record["has_clean"] = chunk.get("clean") is not None
    return record


def build_frontier(store_path: str, chunks: list[tuple[str, int]], run_dir: str,
                   config: RunConfig, failed: dict[str, str] | None = None) -> Path:
    """The body of :func:`aggregate`."""
    from data.frontier import assemble, write_frontier

    records = [chunk_record(store_path, g, k, run_dir, config, config.keep_denoised)
               for g, k in chunks]
    store = open_store(store_path)
    attrs = {
        "title": "distortion-perception frontiers of variance-scaled denoising",
        "config": config.to_json(),
        "model": json.dumps(model_identity(config.model)),
        "perception_definition": perception_definition(store.has_clean),
        "skipped_inputs": json.dumps([{"id": s.id, "source": s.source, "reason": s.reason}
                                      for s in store.skipped]),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "failed_chunks": json.dumps(failed or {}),
        "complete": "false" if failed else "true",
    }
    ds = assemble(records, lambdas=list(config.lambdas), methods=list(config.methods), attrs=attrs,
                  has_clean=any(r["has_clean"] for r in records), has_sure=config.sure,
                  chunk=max(g.chunk_size for g in store.groups.values()))
    return write_frontier(ds, Path(run_dir) / FRONTIER, overwrite=True)


@task(name="aggregate", retries=1, retry_delay_seconds=2,
      retry_condition_fn=retry_io_errors, cache_policy=NONE)
def aggregate(store_path: str, chunks: list[tuple[str, int]], run_dir: str,
              config: RunConfig, failed: dict[str, str] | None = None) -> str:
    """Assemble the finished chunks into OUT/frontier.zarr (written atomically); chunks that
    failed are listed in its attrs (``failed_chunks``, ``complete``)."""
    return str(build_frontier(store_path, chunks, run_dir, config, failed))
