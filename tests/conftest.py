"""Shared fixtures: one Prefect test harness per session, analytic Gaussian collections."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect API (SQLite) for every flow test of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def gaussian_collection(tmp_path_factory) -> tuple[Path, Path]:
    """24 clean 8x8 images drawn from a known Gaussian prior: ``(images.npy, prior.npz)``."""
    from data.analytic import write_gaussian_collection

    return write_gaussian_collection(tmp_path_factory.mktemp("gauss"), 24, seed=1)


def tree_hashes(path: Path) -> dict[str, str]:
    """sha256 of every file under ``path`` (or of ``path`` itself)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
