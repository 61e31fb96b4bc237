"""The variance-scaled reverse diffusion of Wang et al. (CVPR 2025) and its DPS form.

Notation follows ../shared/MATH.md (VE / EDM). With ``D_i = D(x_i, sigma_i)`` the reverse step is

    mu_i    = D_i + (sigma_{i+1}^2 / sigma_i^2) (x_i - D_i)          (Gaussian bridge mean)
    v_i     = sigma_{i+1}^2 (sigma_i^2 - sigma_{i+1}^2) / sigma_i^2   (bridge variance)
    x_{i+1} = mu_i + sqrt(lambda v_i) z_i                            (variance-scaled step)

lambda in [0, 1] scales the VARIANCE (noise std sqrt(lambda)): lambda = 0 tracks the mean and
ends at the MMSE estimate for a Gaussian prior, lambda = 1 is ancestral posterior sampling.

``variance="split"`` (the default) is a second discretisation of the same continuous process,
``dx = -g^2 grad log p dt + sqrt(lambda) g dw``: it injects the step's noise partly before the
denoiser call and partly after, ``q_i = lambda a_i (s_i^2 - s_{i+1}^2)`` and
``p_i = lambda a_i r_i (s_i^2 - s_{i+1}^2)`` with ``r_i = s_{i+1}^2 / s_i^2`` and
``a_i = 2 / (1 + sqrt(r_i))^2``. For a Gaussian prior the exact transition variance is
``(s_i^2 - s_{i+1}^2) t`` with ``t = (c + s_{i+1}^2) / (c + s_i^2)`` for every prior variance ``c``,
while this scheme gives ``(s_i^2 - s_{i+1}^2)(a t^2 + a r)/t``; the weights are the minimax fit
over ``t in [r, 1]`` (relative error ``((1 - sqrt r) / (1 + sqrt r))^2`` per step). Both schemes
share the mean path, so lambda = 0 is unchanged and covariances still scale exactly with lambda;
the split one reaches the posterior covariance in far fewer steps (README, Measured).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from dpcore.denoisers import Denoiser, append_dims, sigma_per_sample
from dpcore.noise import CounterNoise, GeneratorNoise, row_keys
from dpcore.operators import LinearOperator
from dpcore.schedules import get_schedule

DEFAULT_STEPS = 20
VARIANCES = ("split", "bridge")


def check_lambdas(lambdas: Sequence[float] | Tensor) -> Tensor:
    """Validate a lambda grid: 1-D, finite, within [0, 1], no duplicates."""
    lam = torch.as_tensor(lambdas, dtype=torch.float64).reshape(-1)
    if lam.numel() == 0:
        raise ValueError("lambdas is empty; give at least one value in [0, 1]")
    if not torch.isfinite(lam).all() or (lam < 0).any() or (lam > 1).any():
        raise ValueError(f"lambdas must lie in [0, 1]; got {lam.tolist()}")
    if lam.unique().numel() != lam.numel():
        raise ValueError(f"lambdas has duplicates: {lam.tolist()}")
    return lam


def check_measurement(y: Tensor, sigma_y: Tensor | float) -> Tensor:
    """Validate ``y`` and return sigma_y as a ``(B,)`` tensor."""
    if y.ndim < 2:
        raise ValueError(f"y must be batched, shape (B, ...); got {tuple(y.shape)}")
    if not torch.isfinite(y).all():
        raise ValueError("y contains NaN or Inf values")
    sigma = torch.as_tensor(sigma_y, dtype=y.dtype, device=y.device)
    if sigma.ndim > 1 or (sigma.ndim == 1 and sigma.shape[0] != y.shape[0]):
        raise ValueError(
            f"sigma_y has shape {tuple(sigma.shape)}; expected a scalar or ({y.shape[0]},)"
        )
    if not torch.isfinite(sigma).all() or (sigma <= 0).any():
        raise ValueError(f"sigma_y must be finite and > 0; got {sigma.tolist()}")
    return sigma_per_sample(sigma, y.shape[0], like=y)


def make_noise(seed: int | None, sample_ids: Tensor | None, lam: Tensor, batch: int,
               generator: torch.Generator | None, noise: Callable | None = None) -> Callable:
    """The noise source: ``noise`` if given; counter noise keyed by (seed, sample id, lambda)
    when a seed is given; else the generator's stream."""
    if noise is not None:
        return noise
    if seed is None:
        return GeneratorNoise(generator)
    ids = torch.arange(batch) if sample_ids is None else torch.as_tensor(sample_ids).reshape(-1)
    if ids.numel() != batch:
        raise ValueError(f"sample_ids has {ids.numel()} entries for a batch of {batch}")
    return CounterNoise(row_keys(seed, ids, lam))


def step_variances(s: Tensor, s_next: Tensor, variance: str) -> tuple[Tensor, Tensor]:
    """Noise variances injected before and after the denoiser call, for lambda = 1."""
    a, b = s**2, s_next**2
    if variance == "bridge":
        return torch.zeros_like(a), b * (a - b) / a
    r = b / a
    alpha = 2 / (1 + r.sqrt()) ** 2
    pre = torch.where(b > 0, alpha * (a - b), torch.zeros_like(a))
    return pre, pre * r


@torch.no_grad()
def variance_scaled_denoise(
    denoiser: Denoiser,
    y: Tensor,
    sigma_y: Tensor | float,
    lambdas: Sequence[float] | Tensor,
    *,
    steps: int = DEFAULT_STEPS,
    schedule: str = "karras",
    variance: str = "split",
    seed: int | None = None,
    sample_ids: Tensor | None = None,
    generator: torch.Generator | None = None,
    noise: Callable | None = None,
    callback: Callable[[dict], None] | None = None,
) -> Tensor:
    """Denoise ``y = x + sigma_y n`` at every lambda of a grid, from the exact start at sigma_y.

    Wang et al. (CVPR 2025), the variance-scaled reverse step (see module docstring), started at
    ``x_0 = y`` with ``sigma_0 = sigma_y`` (``y`` has the law of ``x_{sigma_y}``, so no guidance
    term is needed). All lambdas advance together: one denoiser call on ``L * B`` rows per step.
    ``seed`` makes each (seed, sample id, lambda) draw the same noise whatever the batch;
    ``noise(draw, shape, dtype=, device=)`` replaces the noise source entirely (two draws a step).

    Returns ``(len(lambdas), *y.shape)``.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1; got {steps}")
    if variance not in VARIANCES:
        raise ValueError(f"unknown variance {variance!r}; choose one of {VARIANCES}")
    lam = check_lambdas(lambdas)
    sigma = check_measurement(y, sigma_y)
    L, B = lam.numel(), y.shape[0]
    noise = make_noise(seed, sample_ids, lam, B, generator, noise)
    # The grid is the batch: row l * B + b holds sample b at lambda l.
    x = y.unsqueeze(0).expand(L, *y.shape).reshape(L * B, *y.shape[1:]).clone()
    lam_rows = append_dims(lam.to(y).repeat_interleave(B), x.ndim)
    sigmas = get_schedule(schedule)(steps, sigma.double().repeat(L)).to(y)  # (steps + 1, L * B)
    stochastic = bool((lam > 0).any())
    for i in range(steps):
        s, s_next = sigmas[i], sigmas[i + 1]
        pre, post = (append_dims(v, x.ndim) for v in step_variances(s, s_next, variance))
        # Part of the step's noise enters before the denoiser sees x (split scheme only).
        if stochastic and variance == "split":
            x = x + (lam_rows * pre).sqrt() * noise(2 * i, x.shape, dtype=x.dtype, device=x.device)
        denoised = denoiser(x, s)
        # Gaussian bridge mean, then the variance-scaled noise.
        x = denoised + append_dims(s_next**2 / s**2, x.ndim) * (x - denoised)
        if stochastic:
            z = noise(2 * i + 1, x.shape, dtype=x.dtype, device=x.device)
            x = x + (lam_rows * post).sqrt() * z
        if callback is not None:
            callback({"x": x, "i": i, "sigma": s, "denoised": denoised})
    return x.reshape(L, *y.shape)


def variance_scaled_dps(
    denoiser: Denoiser,
    y: Tensor,
    operator: LinearOperator,
    sigma_y: Tensor | float,
    lambdas: Sequence[float] | Tensor,
    *,
    x_shape: Sequence[int],
    sigma_max: float = 10.0,
    steps: int = 100,
    zeta: float | None = None,
    schedule: str = "karras",
    variance: str = "bridge",
    seed: int | None = None,
    sample_ids: Tensor | None = None,
    generator: torch.Generator | None = None,
    noise: Callable | None = None,
    callback: Callable[[dict], None] | None = None,
) -> Tensor:
    """Variance-scaled reverse diffusion with DPS guidance for ``y = A x + sigma_y n``.

    Wang et al. (CVPR 2025) general form, from pure noise at ``sigma_max``: each variance-scaled
    step is followed by the data-consistency step of Chung et al. (ICLR 2023, DPS, Alg. 1),
    ``x_{i+1} -= zeta * grad_{x_i} ||y - A D(x_i, sigma_i)||``, the gradient taken through the
    denoiser. ``zeta`` defaults to the operator's ``dps_zeta``, tuned for the default 100 steps
    (the guidance acts once a step, so ``zeta * steps`` is what matters; tests/test_dps.py measures
    the accuracy reached). ``x_shape`` is the shape of one clean signal.
    Returns ``(len(lambdas), B, *x_shape)``.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1; got {steps}")
    lam = check_lambdas(lambdas)
    check_measurement(y, sigma_y)  # DPS weights the residual norm, not sigma_y (Chung et al.)
    zeta = operator.dps_zeta if zeta is None else zeta
    L, B = lam.numel(), y.shape[0]
    noise = make_noise(seed, sample_ids, lam, B, generator, noise)
    y_rows = y.unsqueeze(0).expand(L, *y.shape).reshape(L * B, *y.shape[1:])
    shape = torch.Size((L * B, *x_shape))
    lam_rows = append_dims(lam.to(y).repeat_interleave(B), len(shape))
    sigmas = get_schedule(schedule)(steps, torch.full((L * B,), sigma_max, dtype=torch.float64))
    sigmas = sigmas.to(y)
    x = sigma_max * noise(2 * steps, shape, dtype=y.dtype, device=y.device)
    for i in range(steps):
        s, s_next = sigmas[i], sigmas[i + 1]
        pre, post = (append_dims(v, x.ndim) for v in step_variances(s, s_next, variance))
        x = (x + (lam_rows * pre).sqrt() * noise(2 * i, shape, dtype=x.dtype, device=x.device))
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            denoised = denoiser(x, s)
            residual = (y_rows - operator(denoised)).flatten(1).norm(dim=1)
            (grad,) = torch.autograd.grad(residual.sum(), x)
        # Variance-scaled step, then the data-consistency step.
        mu = denoised + append_dims(s_next**2 / s**2, x.ndim) * (x - denoised)
        z = noise(2 * i + 1, shape, dtype=x.dtype, device=x.device)
        x = (mu + (lam_rows * post).sqrt() * z - zeta * grad).detach()
        if callback is not None:
            callback({"x": x, "i": i, "sigma": s, "denoised": denoised.detach()})
    return x.reshape(L, B, *x_shape)
