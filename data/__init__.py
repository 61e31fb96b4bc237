"""dpflow I/O: image collections, chunked Zarr stores, checkpoints, bundled samples, reports."""
