"""Trainable denoisers behind the contract ``D(x, sigma) -> E[x0 | x_sigma = x]``.

Every network here is wrapped in :class:`EDMPrecond`, the preconditioning of Karras et al.,
"Elucidating the Design Space of Diffusion-Based Generative Models" (NeurIPS 2022, Table 1,
"Ours" column): ``D(x, sigma) = c_skip x + c_out F(c_in x, c_noise)`` with

    c_skip  = sigma_data^2 / (sigma^2 + sigma_data^2)
    c_out   = sigma sigma_data / sqrt(sigma^2 + sigma_data^2)
    c_in    = 1 / sqrt(sigma^2 + sigma_data^2)
    c_noise = ln(sigma) / 4

so the raw network ``F`` sees unit-variance inputs and predicts a unit-variance target at every
noise level, and one network serves sigma from ~0.002 to far above the data scale. All sigmas
here are in the MODEL's units (images in [-1, 1], 2-D data standardised); conversion from a
user's units happens at the edge (``data/checkpoints.py``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dpcore.denoisers import append_dims, sigma_per_sample


def edm_coefficients(sigma: Tensor, sigma_data: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(c_skip, c_out, c_in, c_noise)`` of Karras et al. (2022, Table 1) for a ``(B,)`` sigma."""
    total = sigma**2 + sigma_data**2
    c_skip = sigma_data**2 / total
    c_out = sigma * sigma_data / total.sqrt()
    c_in = 1 / total.sqrt()
    c_noise = sigma.log() / 4
    return c_skip, c_out, c_in, c_noise


class NoiseEmbedding(nn.Module):
    """Sinusoidal features of ``c_noise`` (Vaswani et al. 2017 frequencies) followed by an MLP."""

    def __init__(self, dim: int, features: int = 32, max_period: float = 1e3):
        super().__init__()
        half = features // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half) / half)
        self.register_buffer("freqs", freqs, persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * half, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, c_noise: Tensor) -> Tensor:
        # c_noise = ln(sigma)/4 lies in about [-2, 1]; scale so the fastest frequency resolves it.
        angles = 100 * c_noise[:, None] * self.freqs.to(c_noise)
        return self.mlp(torch.cat([angles.cos(), angles.sin()], dim=1))


class MLP2D(nn.Module):
    """Raw network ``F(x, c_noise)`` for low-dimensional points: a noise-conditioned residual MLP."""

    def __init__(self, dim: int = 2, hidden: int = 128, layers: int = 4, emb_dim: int = 64):
        super().__init__()
        self.channels = dim
        self.embed = NoiseEmbedding(emb_dim)
        self.inp = nn.Linear(dim, hidden)
        self.cond = nn.ModuleList(nn.Linear(emb_dim, hidden) for _ in range(layers))
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden)) for _ in range(layers))
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, c_noise: Tensor) -> Tensor:
        emb = self.embed(c_noise)
        h = self.inp(x.reshape(x.shape[0], -1))
        for cond, block in zip(self.cond, self.blocks, strict=True):
            h = h + block(h + cond(emb))
        return self.out(h).reshape(x.shape)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the noise embedding as a per-channel scale and shift."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int = 8):
        super().__init__()
        self.norm1 = nn.GroupNorm(min(groups, c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(min(groups, c_out), c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.conv2(F.silu(self.norm2(h) * (1 + scale) + shift))
        return self.skip(x) + h


class UNet(nn.Module):
    """Raw network ``F(x, c_noise)``: a small fully convolutional noise-conditioned UNet.

    ``len(widths)`` resolution levels (``depth = len(widths) - 1`` halvings). Inputs of any
    ``H x W`` are reflect-padded to a multiple of ``2**depth`` and cropped back, so the network
    is translation-equivariant up to the padding and works on tiles of any size.
    """

    def __init__(self, channels: int = 1, widths: tuple[int, ...] = (32, 64, 64),
                 blocks: int = 1, emb_dim: int = 128):
        super().__init__()
        widths = tuple(widths)
        self.channels, self.depth = channels, len(widths) - 1
        self.embed = NoiseEmbedding(emb_dim)
        self.inp = nn.Conv2d(channels, widths[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.up = nn.ModuleList()
        skips = []
        c = widths[0]
        for level, w in enumerate(widths):
            for _ in range(blocks):
                self.down.append(ResBlock(c, w, emb_dim))
                c = w
                skips.append(c)
            if level < self.depth:
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.mid = ResBlock(c, c, emb_dim)
        for level, w in reversed(list(enumerate(widths))):
            for _ in range(blocks):
                self.up.append(ResBlock(c + skips.pop(), w, emb_dim))
                c = w
            if level > 0:
                # Upsample straight to the next level's width: the costliest conv, kept narrow.
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                             nn.Conv2d(c, widths[level - 1], 3, padding=1)))
                c = widths[level - 1]
        self.out = nn.Sequential(nn.GroupNorm(min(8, c), c), nn.SiLU(),
                                 nn.Conv2d(c, channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: Tensor, c_noise: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"expected (B, {self.channels}, H, W); got {tuple(x.shape)}")
        height, width = x.shape[-2:]
        m = 2**self.depth
        pad_h, pad_w = -height % m, -width % m
        if pad_h or pad_w:
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        emb = self.embed(c_noise)
        h = self.inp(x)
        skips = []
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
            if isinstance(layer, ResBlock):
                skips.append(h)
        h = self.mid(h, emb)
        for layer in self.up:
            h = layer(torch.cat([h, skips.pop()], 1), emb) if isinstance(layer, ResBlock) else layer(h)
        return self.out(h)[..., :height, :width]


class EDMPrecond(nn.Module):
    """A denoiser ``D(x, sigma)`` from a raw network by EDM preconditioning (Karras et al. 2022).

    ``forward(x, sigma)`` follows the project's denoiser contract: ``x`` is ``(B, ...)``, sigma a
    float or a ``(B,)`` tensor, in the model's units (data scaled to std about ``sigma_data``).
    """

    def __init__(self, net: nn.Module, sigma_data: float = 0.5):
        super().__init__()
        self.net = net
        self.sigma_data = float(sigma_data)

    @property
    def channels(self) -> int:
        return self.net.channels

    def raw(self, x: Tensor, sigma: Tensor | float) -> tuple[Tensor, Tensor, Tensor]:
        """``(F output, c_skip, c_out)`` with coefficients broadcast to ``x``; used by the loss."""
        sigma = sigma_per_sample(sigma, x.shape[0], like=x)
        c_skip, c_out, c_in, c_noise = edm_coefficients(sigma, self.sigma_data)
        out = self.net(append_dims(c_in, x.ndim) * x, c_noise)
        return out, append_dims(c_skip, x.ndim), append_dims(c_out, x.ndim)

    def forward(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        out, c_skip, c_out = self.raw(x, sigma)
        return c_skip * x + c_out * out


ARCHITECTURES: dict[str, type[nn.Module]] = {"mlp": MLP2D, "unet": UNet}


def build_denoiser(arch: str, *, sigma_data: float = 0.5, **kwargs) -> EDMPrecond:
    """Build a preconditioned denoiser from an architecture name and its keyword arguments."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    return EDMPrecond(ARCHITECTURES[arch](**kwargs), sigma_data=sigma_data)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
