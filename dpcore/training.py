"""Denoising score matching with the EDM loss, EMA weights, and a resumable plain-dict state.

Karras et al. (NeurIPS 2022), Sec. 5 and Table 1: ``ln sigma ~ N(P_mean, P_std^2)``, weight
``lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2``. With the preconditioning of
``dpcore.nets.EDMPrecond`` the weighted loss ``lambda(sigma) ||D(x + sigma n) - x||^2`` equals the
unweighted regression ``||F(c_in x_sigma, c_noise) - (x - c_skip x_sigma) / c_out||^2``, which is
what is computed (better conditioned). A denoiser minimising it is the MMSE estimate
``E[x | x_sigma]`` at every sigma (Vincent 2011), i.e. the denoiser of the project's contract.

The training state is a plain dict (``model``, ``ema``, ``optimizer``, ``step``, ``losses``,
``generator``), so resuming from a saved state continues the run bit for bit on the same device.
No I/O here: progress goes to a callback.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor

from dpcore.denoisers import append_dims
from dpcore.nets import EDMPrecond

BatchSampler = Callable[[torch.Generator, int], Tensor]


def edm_loss(model: EDMPrecond, x0: Tensor, sigma: Tensor, noise: Tensor) -> Tensor:
    """Per-sample EDM-weighted denoising loss (Karras et al. 2022, eq. 2 with Table 1 weights)."""
    x_sigma = x0 + append_dims(sigma, x0.ndim) * noise
    out, c_skip, c_out = model.raw(x_sigma, sigma)
    target = (x0 - c_skip * x_sigma) / c_out
    return (out - target).square().flatten(1).mean(1)


def sample_sigmas(n: int, p_mean: float, p_std: float, generator: torch.Generator,
                  device: torch.device | str = "cpu") -> Tensor:
    """``n`` log-normal noise levels, ``ln sigma ~ N(p_mean, p_std^2)`` (EDM training)."""
    return (p_mean + p_std * torch.randn(n, generator=generator)).exp().to(device)


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p, 1 - decay)


def ema_decay_at(step: int, decay: float) -> float:
    """EMA decay with a warm-up, so early averages are not dominated by the initial weights."""
    return min(decay, (1 + step) / (10 + step))


def init_state(model: EDMPrecond, *, lr: float, seed: int) -> dict:
    """A fresh training state for ``model`` (weights are taken as they are)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    return {"model": model.state_dict(), "ema": copy.deepcopy(model.state_dict()),
            "optimizer": optimizer.state_dict(), "step": 0, "losses": [],
            "generator": generator.get_state(), "seed": seed, "lr": lr}


def train(
    model: EDMPrecond,
    sample_batch: BatchSampler,
    *,
    steps: int,
    batch_size: int,
    state: dict | None = None,
    lr: float = 1e-3,
    warmup: int = 200,
    ema_decay: float = 0.999,
    p_mean: float = -1.2,
    p_std: float = 1.2,
    seed: int = 0,
    grad_clip: float = 1.0,
    device: torch.device | str = "cpu",
    callback: Callable[[dict], None] | None = None,
) -> dict:
    """Train ``model`` by EDM denoising score matching until ``state['step'] == steps``.

    ``sample_batch(generator, batch_size)`` returns clean data in the model's units (on CPU);
    all randomness (batches, sigmas, noise) comes from one CPU generator kept in the state, so
    ``train(steps=2k)`` equals ``train(steps=k)`` followed by ``train(steps=2k, state=...)``.
    Returns the new state; ``model`` ends holding the trained (non-EMA) weights.
    """
    if steps < 0 or batch_size < 1:
        raise ValueError(f"need steps >= 0 and batch_size >= 1; got {steps}, {batch_size}")
    state = init_state(model, lr=lr, seed=seed) if state is None else state
    model.to(device).load_state_dict(state["model"])
    ema = copy.deepcopy(model)
    ema.load_state_dict(state["ema"])
    ema.requires_grad_(False)
    optimizer = torch.optim.Adam(model.parameters(), lr=state["lr"])
    optimizer.load_state_dict(state["optimizer"])
    generator = torch.Generator().manual_seed(0)
    generator.set_state(state["generator"])
    losses = list(state["losses"])
    model.train()
    for step in range(state["step"], steps):
        x0 = sample_batch(generator, batch_size).to(device)
        sigma = sample_sigmas(batch_size, p_mean, p_std, generator, device)
        noise = torch.randn(x0.shape, generator=generator).to(device)
        loss = edm_loss(model, x0, sigma, noise).mean()
        for group in optimizer.param_groups:
            group["lr"] = state["lr"] * min(1.0, (step + 1) / max(warmup, 1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        update_ema(ema, model, ema_decay_at(step, ema_decay))
        losses.append(float(loss.detach()))
        if callback is not None:
            callback({"step": step + 1, "loss": losses[-1], "steps": steps})
    return {**state, "model": copy.deepcopy(model.state_dict()),
            "ema": copy.deepcopy(ema.state_dict()), "optimizer": optimizer.state_dict(),
            "step": max(steps, state["step"]), "losses": losses,
            "generator": generator.get_state()}
