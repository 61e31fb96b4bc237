"""A process-local progress hook (the CLI's progress bar). Kept out of the flow modules so that
nothing unpicklable ends up in what Prefect ships to Dask workers."""

from __future__ import annotations

from collections.abc import Callable

_HOOKS: list[Callable[[int, int], None]] = []


def set_hook(hook: Callable[[int, int], None] | None) -> None:
    _HOOKS.clear()
    if hook is not None:
        _HOOKS.append(hook)


def report(done: int, total: int) -> None:
    for hook in _HOOKS:
        hook(done, total)
