"""Thin typed Prefect tasks: each passes store paths and chunk indices, never arrays."""
