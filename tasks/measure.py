"""Per-image metrics of a sampled chunk: mse / psnr / ssim against the clean reference when there
is one, Stein's unbiased risk estimate of the MSE whenever sigma is known, and the perception
index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from data.store import read_chunk
from tasks.common import WORK, RunConfig, atomic_savez, chunk_name, device_name, get_denoiser
from tasks.sample import denoise_grid, set_threads

NO_REFERENCE_DEFINITION = (
    "no clean reference: dpcore.metrics.residual_noise_distance, the patch sliced-W2 distance "
    "between the residual (y - x_hat) / sigma and white Gaussian noise (a consistency proxy that "
    "falls as the output approaches posterior sampling; not a perception measure)")


def perception_definition(has_clean: bool) -> str:
    """What the ``perception`` variable means in a run with or without clean references."""
    from dpcore.metrics import PERCEPTION_DEFINITION

    return PERCEPTION_DEFINITION if has_clean else NO_REFERENCE_DEFINITION


def as_numpy(values: torch.Tensor) -> np.ndarray:
    return values.detach().double().cpu().numpy()


def run_metrics(store_path: str, group: str, chunk_index: int, run_dir: str,
                config: RunConfig) -> Path:
    """Per-image metrics of one sampled chunk; write OUT/.work/<chunk>.metrics.npz (the second
    stage of :func:`tasks.chunk.process_chunk`)."""
    from dpcore import metrics

    path = Path(run_dir) / WORK / f"{chunk_name(group, chunk_index)}.metrics.npz"
    if path.exists():
        return path
    set_threads()
    from dpcore.sure import sure_mse_grid
    chunk = read_chunk(store_path, group, chunk_index)
    with np.load(Path(run_dir) / WORK / f"{chunk_name(group, chunk_index)}.denoised.npz") as f:
        denoised, reasons = f["denoised"], f["reasons"]
    good = reasons == ""
    M, L, B = denoised.shape[:3]
    names = ["mse", "psnr", "ssim", "perception", "sure_mse"]
    values = {k: np.full((M, L, B), np.nan, np.float64) for k in names}
    clean = chunk.get("clean")
    y = torch.from_numpy(np.asarray(chunk["noisy"], np.float32)[good])
    sigma = torch.from_numpy(np.asarray(chunk["sigma"], np.float64)[good]).float()
    ids = torch.as_tensor(np.asarray(chunk["index"])[good], dtype=torch.long)
    ref = torch.from_numpy(np.asarray(clean, np.float32)[good]) if clean is not None else None
    device = device_name()
    for m, method in enumerate(config.methods):
        if not good.any():
            break
        x = torch.from_numpy(denoised[m][:, good])  # (L, b, C, H, W)
        # On the worker's device (a GPU worker measures on its GPU); values come back as float64.
        xd, yd, refd = (None if t is None else t.to(device) for t in (x, y, ref))
        if refd is not None:  # the whole lambda grid at once: the references' patches once
            values["perception"][m][:, good] = as_numpy(
                metrics.perception_index(xd, refd, seed=config.seed))
        for l in range(L):
            if refd is not None:
                values["mse"][m, l, good] = as_numpy(metrics.mse(xd[l], refd))
                values["psnr"][m, l, good] = as_numpy(metrics.psnr(xd[l], refd))
                values["ssim"][m, l, good] = as_numpy(metrics.ssim(xd[l], refd))
            else:  # no reference: how far the residual is from the measurement noise
                values["perception"][m, l, good] = as_numpy(metrics.residual_noise_distance(
                    yd, xd[l], sigma.to(device), seed=config.seed, sample_ids=ids))
        if config.sure:
            model = get_denoiser(config.model, device)

            def f(v, method=method, model=model):
                return denoise_grid(model, v.to(device), sigma.to(device), config, method,
                                    ids).float().cpu()

            values["sure_mse"][m][:, good] = sure_mse_grid(
                f, y, sigma, fy=x, seed=config.seed, sample_ids=ids).double().numpy()
    return atomic_savez(path, index=np.asarray(chunk["index"]), **values)
