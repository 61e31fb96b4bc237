"""How many denoiser evaluations the sampler needs for the lambda = 1 covariance to reach the
exact posterior covariance of a Gaussian prior (issue 2's step-count measurement).

The covariance is computed exactly (dpcore.diagnostics.exact_end_covariance: the chain is affine
in its noise for a Gaussian prior), so the figures carry no Monte-Carlo error. One JSON line per
(variance, schedule, steps): the worst relative Frobenius error over the priors and sigma_y.

    python benchmarks/schedule_convergence.py [--max-steps 40]
"""

from __future__ import annotations

import argparse
import json

import torch

from dpcore.denoisers import GaussianDenoiser
from dpcore.diagnostics import exact_end_covariance

SIGMAS_Y = [0.1, 0.5, 2.0]


def priors() -> dict[str, GaussianDenoiser]:
    """Anisotropic Gaussians: variances over three decades (0.01-10) in d = 2 and d = 16."""
    out = {}
    for d in (2, 16):
        g = torch.Generator().manual_seed(d)
        q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
        cov = (q * torch.logspace(-2, 1, d, dtype=torch.float64)) @ q.T
        out[f"gauss-d{d}"] = GaussianDenoiser(torch.zeros(d, dtype=torch.float64), cov)
    return out


def worst_error(variance: str, schedule: str, steps: int) -> float:
    worst = 0.0
    for prior in priors().values():
        y = torch.full((1, prior.dim), 0.5, dtype=torch.float64)
        for sigma_y in SIGMAS_Y:
            cov = exact_end_covariance(prior, y, sigma_y, 1.0, steps=steps, variance=variance,
                                       schedule=schedule)
            post = prior.posterior_cov(sigma_y)
            worst = max(worst, float((cov - post).norm() / post.norm()))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=40)
    args = parser.parse_args()
    grid = [s for s in (4, 6, 8, 10, 12, 15, 20, 25, 30, 40, 60, 80) if s <= args.max_steps]
    for variance in ("split", "bridge"):
        for schedule in ("karras", "geometric", "linear"):
            first_within = None
            for steps in grid:
                err = worst_error(variance, schedule, steps)
                print(json.dumps({"bench": "schedule_convergence", "variance": variance,
                                  "schedule": schedule, "steps": steps,
                                  "worst_rel_cov_error": round(err, 5)}), flush=True)
                if err <= 0.02 and first_within is None:
                    first_within = steps
            print(json.dumps({"bench": "schedule_convergence_summary", "variance": variance,
                              "schedule": schedule, "evaluations_for_2pct": first_within}),
                  flush=True)


if __name__ == "__main__":
    main()
