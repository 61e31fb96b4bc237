"""Sample a chunk: every lambda of the grid (and every method) in one batched sampler call."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from data.store import read_chunk
from tasks.common import K_MAX, WORK, RunConfig, atomic_savez, chunk_name, device_name, get_denoiser


def method_knobs(method: str, lambdas: tuple[float, ...]) -> list[float]:
    """Each method's own knob at each lambda of the grid, chosen so that for a Gaussian posterior
    all methods have the same MSE ``(1 + lambda) tr S_y`` at the same lambda:

    - variance-scaled: lambda itself (it scales the variance of the injected noise);
    - k-average: K = round(1 / lambda) posterior samples averaged (error ``(1 + 1/K) S_y``),
      capped at K_MAX; lambda = 0 is the K -> inf limit, the lambda = 0 (mean-path) output;
    - interpolate: alpha = sqrt(lambda) between the lambda = 0 output and a posterior sample
      (error ``(1 + alpha^2) S_y``).
    """
    if method == "variance-scaled":
        return list(lambdas)
    if method == "k-average":
        return [0.0 if lam == 0 else float(min(K_MAX, max(1, round(1 / lam)))) for lam in lambdas]
    if method == "interpolate":
        return [float(np.sqrt(lam)) for lam in lambdas]
    raise ValueError(f"unknown method {method!r}")


def denoise_grid(model, y: torch.Tensor, sigma: torch.Tensor, config: RunConfig, method: str,
                 sample_ids: torch.Tensor) -> torch.Tensor:
    """``(L, B, C, H, W)`` outputs of one method over the lambda grid, seeded per image."""
    from dpcore.baselines import interpolate, k_average
    from dpcore.sampler import variance_scaled_denoise

    kw = {"steps": config.steps, "seed": config.seed, "sample_ids": sample_ids}
    if method == "variance-scaled":
        return variance_scaled_denoise(model, y, sigma, list(config.lambdas), **kw)
    knobs = method_knobs(method, config.lambdas)
    if method == "interpolate":
        return interpolate(model, y, sigma, knobs, **kw)
    ks = [int(k) for k in knobs if k > 0]
    averages = iter(k_average(model, y, sigma, ks, **kw) if ks else [])
    mmse = variance_scaled_denoise(model, y, sigma, [0.0], **kw)[0] if 0 in knobs else None
    return torch.stack([mmse if k == 0 else next(averages) for k in knobs])


def screen(noisy: np.ndarray, sigma: np.ndarray) -> list[str]:
    """Per-image reasons to skip ("" for a good image): non-finite pixels or a bad sigma."""
    reasons = []
    for x, s in zip(noisy, sigma, strict=True):
        if not np.isfinite(x).all():
            reasons.append("non-finite pixels (NaN or Inf)")
        elif not (np.isfinite(s) and s > 0):
            reasons.append(f"sigma {s} is not > 0")
        else:
            reasons.append("")
    return reasons


def set_threads() -> None:
    threads = int(os.environ.get("DPFLOW_TORCH_THREADS", "0"))
    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def run_sampler(store_path: str, group: str, chunk_index: int, run_dir: str,
                config: RunConfig) -> Path:
    """Denoise one chunk at every lambda and method; write OUT/.work/<chunk>.denoised.npz
    (the first stage of :func:`tasks.chunk.process_chunk`)."""
    path = Path(run_dir) / WORK / f"{chunk_name(group, chunk_index)}.denoised.npz"
    if path.exists():  # finished before an interruption: never recompute
        return path
    set_threads()
    chunk = read_chunk(store_path, group, chunk_index)
    noisy, sigma = np.asarray(chunk["noisy"], np.float32), np.asarray(chunk["sigma"], np.float64)
    reasons = screen(noisy, sigma)
    good = np.array([r == "" for r in reasons])
    L, M = len(config.lambdas), len(config.methods)
    out = np.full((M, L, *noisy.shape), np.nan, np.float32)
    if good.any():
        device = device_name()
        model = get_denoiser(config.model, device, expect_channels=noisy.shape[1])
        y = torch.from_numpy(noisy[good]).to(device)
        s = torch.from_numpy(sigma[good]).float().to(device)
        ids = torch.as_tensor(np.asarray(chunk["index"])[good], dtype=torch.long)
        for m, method in enumerate(config.methods):
            out[m][:, good] = denoise_grid(model, y, s, config, method, ids).float().cpu().numpy()
    return atomic_savez(path, denoised=out, index=np.asarray(chunk["index"]),
                        reasons=np.asarray(reasons, dtype=str))
