"""The export flow: write a run's denoised archive at a chosen operating point."""

from __future__ import annotations

from prefect import flow

from tasks.export import export


@flow(name="export")
def export_flow(
    frontier: str,
    out: str,
    point: str = "knee",
    method: str | None = None,
    format: str | None = None,
    overwrite: bool = False,
) -> str:
    """Export OUT/frontier.zarr's denoised images at ``point`` (``lambda=V``, ``budget=B`` or
    ``knee``) as ``format`` (zarr, ome-zarr or tiff; inferred from ``out`` when omitted), each
    image in its original dtype and intensity range."""
    # Export: one task, reading the dataset and the run's store (for each image's scaling).
    return export(frontier, out, point, method, format, overwrite)


if __name__ == "__main__":
    import sys

    export_flow(frontier=sys.argv[1], out=sys.argv[2])
