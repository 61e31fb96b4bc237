"""Report: figures and a Markdown summary next to the frontier dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from prefect import task
from prefect.cache_policies import NONE

from data.report import MAX_GRID
from data.store import open_store, read_chunk
from tasks.common import STORE


def grid_inputs(run_dir: Path) -> tuple[dict, dict]:
    """Noisy and clean versions of the first few images (by global index) for the lambda grid."""
    store_path = run_dir / STORE
    if not store_path.exists():
        return {}, {}
    noisy, clean = {}, {}
    for group in open_store(store_path).groups:
        chunk = read_chunk(store_path, group, 0)
        for j, i in enumerate(np.asarray(chunk["index"])[:MAX_GRID]):
            noisy[int(i)] = np.asarray(chunk["noisy"][j])
            if chunk.get("clean") is not None:
                clean[int(i)] = np.asarray(chunk["clean"][j])
    return noisy, clean


@task(name="report", cache_policy=NONE)
def report(frontier_path: str, out_dir: str) -> str:
    """Write dp_curve.png, image_frontiers.png, lambda_grid.png and summary.md."""
    from data.report import make_report

    noisy, clean = grid_inputs(Path(frontier_path).parent)
    return str(make_report(frontier_path, out_dir, noisy=noisy, clean=clean))
