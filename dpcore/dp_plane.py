"""Points on the conditional distortion-perception plane for low-dimensional priors (the paper's
2-D study, Wang et al. CVPR 2025, Sec. 5.1).

For one measurement ``y``, distortion is ``E||xhat - x||^2`` with ``x`` drawn from the exact
posterior ``p(x | y)`` independently of ``xhat``; perception is ``W2(p_{X|y}, p_{Xhat|y})``, the
quantity of the paper's optimality theorem. Both laws are represented by sample sets, so W2 (POT,
dpcore.metrics.w2_samples) comes with its finite-sample floor: W2 between two exact posterior
sample sets of the same size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from dpcore import baselines
from dpcore.denoisers import Denoiser
from dpcore.metrics import w2_samples
from dpcore.sampler import variance_scaled_denoise


def traversals(
    denoiser: Denoiser, y: Tensor, sigma_y: float, *, lambdas: Sequence[float],
    ks: Sequence[int], alphas: Sequence[float], seed: int = 0, steps: int = 20,
) -> list[tuple[str, float, Tensor]]:
    """Outputs of every traversal for the measurements ``y``: ``(method, knob, outputs)`` rows."""
    rows = []
    grid = variance_scaled_denoise(denoiser, y, sigma_y, lambdas, steps=steps, seed=seed)
    rows += [("variance-scaled", float(lam), out) for lam, out in zip(lambdas, grid)]
    averages = baselines.k_average(denoiser, y, sigma_y, ks, seed=seed + 1, steps=steps)
    rows += [("k-average", float(k), out) for k, out in zip(ks, averages)]
    mixed = baselines.interpolate(denoiser, y, sigma_y, alphas, seed=seed + 2, steps=steps)
    rows += [("interpolate", float(a), out) for a, out in zip(alphas, mixed)]
    rows.append(("tweedie", 0.0, baselines.tweedie_mmse(denoiser, y, sigma_y)))
    return rows


def conditional_points(
    rows: list[tuple[str, float, Tensor]], posterior: Tensor, held_out: Tensor,
) -> list[dict]:
    """(MSE, W2, floor) of each row's outputs for one measurement; ``posterior`` and ``held_out``
    are two independent exact posterior sample sets of the outputs' size."""
    floor = w2_samples(posterior, held_out)
    return [
        {"method": method, "knob": knob, "mse": float((out - held_out).pow(2).sum(-1).mean()),
         "w2": w2_samples(out, posterior), "w2_floor": floor}
        for method, knob, out in rows
    ]


def importance_posterior(prior_samples: Tensor, y: Tensor, sigma_y: float, n: int,
                         generator: torch.Generator | None = None) -> Tensor:
    """``n`` draws from ``p(x | y)`` by resampling prior draws with weights ``N(y; x, sigma_y^2)``
    (exact as the number of prior draws grows; for priors known only through samples)."""
    log_w = -(prior_samples - y).pow(2).sum(-1) / (2 * sigma_y**2)
    idx = torch.multinomial(torch.softmax(log_w, 0), n, replacement=True, generator=generator)
    return prior_samples[idx]
