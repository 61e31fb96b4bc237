"""The paper's 2-D experiment on the conditional DP plane: MSE vs W2 to the exact posterior over an
11-point lambda grid, against the baselines and (Gaussian prior) the closed-form D(P) curve, for a
Gaussian, a Gaussian mixture (exact denoisers) and the pinwheel, S-curve and two-moons priors (the
shipped MLP score models; their posteriors by importance resampling of 10^6 true prior draws).
Writes ``dp2d.csv`` (every point, per measurement) and ``dp2d.png`` (means over measurements).

    dpflow toy2d --out out/toy2d
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dpcore import theory
from dpcore.denoisers import GaussianDenoiser, GMMDenoiser
from dpcore.dp_plane import conditional_points, importance_posterior, traversals

LAMBDAS = [round(0.1 * i, 1) for i in range(11)]
KS = [1, 2, 4, 8, 16]
ALPHAS = [0.0, 0.25, 0.5, 0.75, 1.0]
SIGMA_Y = 0.5
TRAINED = ("pinwheel", "s-curve", "moons")


def analytic_priors() -> dict[str, GaussianDenoiser | GMMDenoiser]:
    """Unit-scale 2-D priors with exact denoisers and posteriors."""
    gauss = GaussianDenoiser(torch.zeros(2, dtype=torch.float64),
                             torch.tensor([[1.0, 0.6], [0.6, 0.5]], dtype=torch.float64))
    angles = torch.arange(8, dtype=torch.float64) * torch.pi / 4
    means = 1.4 * torch.stack([angles.cos(), angles.sin()], 1)
    covs = 0.03 * torch.eye(2, dtype=torch.float64).repeat(8, 1, 1)
    gmm = GMMDenoiser(torch.full((8,), 1 / 8, dtype=torch.float64), means, covs)
    return {"gaussian": gauss, "gmm": gmm}


def _float64(denoiser):
    """Run a float32 network on float64 inputs."""
    def call(x, sigma):
        return denoiser(x.float(), torch.as_tensor(sigma).float()).double()
    return call


def prior_and_posterior(name: str, seed: int):
    """(denoiser, clean draws fn, posterior sampler fn(y, n, generator)) for a prior name."""
    analytic = analytic_priors()
    if name in analytic:
        prior = analytic[name]
        draw = lambda n, s: prior.sample(n, generator=torch.Generator().manual_seed(s))  # noqa: E731
        post = lambda y, n, g: prior.posterior_sample(y.expand(n, 2), SIGMA_Y, generator=g)  # noqa: E731
        return prior, draw, post
    from data.checkpoints import load_denoiser
    from data.datasets import toy2d

    model = load_denoiser(name).eval()
    draw = lambda n, s: torch.from_numpy(toy2d(name, n, s)).double()  # noqa: E731
    pool = draw(10**6, seed + 100)
    post = lambda y, n, g: importance_posterior(pool, y, SIGMA_Y, n, g)  # noqa: E731
    return _float64(model), draw, post


def run_prior(name: str, *, n: int = 800, measurements: int = 3, seed: int = 0) -> list[dict]:
    """Conditional DP points of every traversal for ``measurements`` measurements of one prior."""
    denoiser, draw, posterior = prior_and_posterior(name, seed)
    g = torch.Generator().manual_seed(seed)
    clean = draw(measurements, seed)
    ys = clean + SIGMA_Y * torch.randn(clean.shape, generator=g, dtype=clean.dtype)
    points = []
    for m, y in enumerate(ys):
        with torch.no_grad():
            rows = traversals(denoiser, y.expand(n, 2).contiguous(), SIGMA_Y, lambdas=LAMBDAS,
                              ks=KS, alphas=ALPHAS, seed=seed + 10 * m)
        post_a, post_b = posterior(y[None], n, g), posterior(y[None], n, g)
        for p in conditional_points(rows, post_a, post_b):
            p.update(prior=name, measurement=m, y0=float(y[0]), y1=float(y[1]),
                     sigma_y=SIGMA_Y, n=n)
            if name == "gaussian":
                trace = float(torch.trace(analytic_priors()["gaussian"].posterior_cov(SIGMA_Y)))
                p["trace_post_cov"] = trace
            points.append(p)
    return points


def gaussian_theory(trace: float) -> dict[str, np.ndarray]:
    """The conditional optimal D(P) curve; the variance-scaled sampler lies on it."""
    perception = np.linspace(0, trace**0.5, 50)
    return {"w2": perception, "mse": theory.conditional_dp_curve(trace, perception).numpy()}


def run(out: Path, *, n: int = 800, measurements: int = 3, seed: int = 0,
        priors: tuple[str, ...] | None = None) -> Path:
    """Compute every prior's points, write ``dp2d.csv`` and ``dp2d.png`` under ``out``."""
    from data.report_toy2d import plot_dp2d

    out.mkdir(parents=True, exist_ok=True)
    names = priors or (*analytic_priors(), *TRAINED)
    table = pd.DataFrame([p for name in names
                          for p in run_prior(name, n=n, measurements=measurements, seed=seed)])
    table.to_csv(out / "dp2d.csv", index=False)
    trace = float(torch.trace(analytic_priors()["gaussian"].posterior_cov(SIGMA_Y)))
    plot_dp2d(table, out / "dp2d.png", gaussian_curve=gaussian_theory(trace))
    return out


if __name__ == "__main__":
    import sys

    print(run(Path(sys.argv[1] if len(sys.argv) > 1 else "out/toy2d")))
