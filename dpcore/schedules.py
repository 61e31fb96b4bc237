"""Noise schedules for the exact-start sampler: pure functions returning a descending tensor.

Each schedule takes ``steps`` and ``sigma_max`` (a float, or a ``(B,)`` tensor for per-sample
start levels) and returns ``(steps + 1, *sigma_max.shape)``, descending from ``sigma_max`` to 0.
Every schedule scales linearly with ``sigma_max``, so per-sample measurement noise levels share
one shape. The defaults were chosen with ``benchmarks/schedule_convergence.py`` (README).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

DEFAULT_SIGMA_MIN_RATIO = 2e-3
DEFAULT_RHO = 2.0


def _unit_to_sigmas(unit: Tensor, sigma_max: Tensor | float) -> Tensor:
    sigma_max = torch.as_tensor(sigma_max, dtype=torch.float64)
    unit = unit.to(sigma_max.device)  # the grid is built on the CPU; sigma_max may be on a GPU
    unit = torch.cat([unit, unit.new_zeros(1)])
    return unit.reshape((-1,) + (1,) * sigma_max.ndim) * sigma_max


def karras(
    steps: int,
    sigma_max: Tensor | float,
    *,
    sigma_min_ratio: float = DEFAULT_SIGMA_MIN_RATIO,
    rho: float = DEFAULT_RHO,
) -> Tensor:
    """Karras et al. (2022, eq. 5) spacing from ``sigma_max`` to ``sigma_min_ratio * sigma_max``, then 0."""
    t = torch.linspace(0, 1, steps, dtype=torch.float64)
    lo = sigma_min_ratio ** (1 / rho)
    return _unit_to_sigmas((1 + t * (lo - 1)) ** rho, sigma_max)


def geometric(
    steps: int, sigma_max: Tensor | float, *, sigma_min_ratio: float = DEFAULT_SIGMA_MIN_RATIO
) -> Tensor:
    """Log-uniform spacing from ``sigma_max`` to ``sigma_min_ratio * sigma_max``, then 0."""
    return _unit_to_sigmas(torch.logspace(0, torch.log10(torch.tensor(sigma_min_ratio)), steps,
                                          dtype=torch.float64), sigma_max)


def linear(steps: int, sigma_max: Tensor | float) -> Tensor:
    """Uniform spacing in sigma from ``sigma_max`` down to 0 (``steps`` equal decrements)."""
    return _unit_to_sigmas(torch.linspace(1, 0, steps + 1, dtype=torch.float64)[:-1], sigma_max)


SCHEDULES: dict[str, Callable[..., Tensor]] = {
    "karras": karras,
    "geometric": geometric,
    "linear": linear,
}


def get_schedule(name: str) -> Callable[..., Tensor]:
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of {sorted(SCHEDULES)}")
    return SCHEDULES[name]
