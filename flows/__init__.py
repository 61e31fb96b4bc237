"""Prefect flows (orchestration only) and the ``dpflow`` command line."""
