"""Learned full-reference perceptual distances (LPIPS, DISTS) and VGG16 features, in torch.

The networks are built from plain dicts of tensors (``data.weights`` reads them from files that
ship in packages); this module does no I/O. Images are ``(B, C, H, W)`` in [0, 1]; grayscale
(``C == 1``) is repeated to three channels, and images whose smaller side is under
``MIN_SIDE`` pixels are upsampled bilinearly so that side becomes ``UPSAMPLE_SIDE`` (AlexNet's
stride-4 stem and VGG's four poolings leave nothing of an 8x8 or 28x28 image otherwise).

- LPIPS (Zhang, Isola, Efros, Shechtman, Wang, CVPR 2018, v0.1): unit-normalise each layer's
  features along channels, square the difference, weight channels by the learned linear head,
  average over space, sum over the five layers. 0 for identical images; larger is less similar.
- DISTS (Ding, Ma, Wang, Simoncelli, TPAMI 2020, eq. 5-7): VGG16 with L2 pooling; per channel,
  a structure term (correlation of feature maps) and a texture term (agreement of their spatial
  means), weighted by the learned ``alpha``/``beta``; ``1 - weighted sum``, 0 for identical
  images. Tolerant to resampling of a texture, so closer to a "same distribution" judgement.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

MIN_SIDE = 32
UPSAMPLE_SIDE = 64
VGG_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
VGG_TAPS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
# ImageNet input statistics as LPIPS writes them, for inputs scaled to [-1, 1].
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def prepare_images(x: Tensor) -> Tensor:
    """Check a ``(B, C, H, W)`` batch, repeat grayscale to RGB, upsample small images."""
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected images (B, 1 or 3, H, W); got shape {tuple(x.shape)}")
    x = x.float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    side = min(x.shape[-2:])
    if side < MIN_SIDE:
        scale = UPSAMPLE_SIDE / side
        size = (round(x.shape[-2] * scale), round(x.shape[-1] * scale))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return x


def _check_pair(x: Tensor, ref: Tensor) -> None:
    if x.shape != ref.shape:
        raise ValueError(f"x and ref differ in shape: {tuple(x.shape)} vs {tuple(ref.shape)}")


def _conv_from(weights: dict[str, Tensor], i: int, padding: int, stride: int = 1) -> nn.Conv2d:
    w, b = weights[f"features.{i}.weight"], weights[f"features.{i}.bias"]
    conv = nn.Conv2d(w.shape[1], w.shape[0], w.shape[-1], stride=stride, padding=padding)
    conv.weight.data.copy_(w)
    conv.bias.data.copy_(b)
    return conv


class AlexFeatures(nn.Module):
    """AlexNet convolutions (torchvision layout); returns the five ReLU outputs LPIPS uses."""

    def __init__(self, weights: dict[str, Tensor]):
        super().__init__()
        spec = [(4, 2), (1, 2), (1, 1), (1, 1), (1, 1)]  # (stride, padding) of conv 1..5
        self.convs = nn.ModuleList(
            _conv_from(weights, i, padding=p, stride=s) for i, (s, p) in enumerate(spec)
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        taps = []
        for i, conv in enumerate(self.convs):
            if i in (1, 2):
                x = F.max_pool2d(x, 3, 2)
            x = F.relu(conv(x))
            taps.append(x)
        return taps


class L2Pool(nn.Module):
    """L2 pooling of DISTS (Ding et al. 2020, eq. 3): sqrt of a Hann-weighted mean of squares,
    stride 2, replacing VGG's max pooling to avoid aliasing."""

    def __init__(self, channels: int):
        super().__init__()
        a = torch.from_numpy(np.hanning(5)[1:-1]).float()
        g = a[:, None] * a[None, :]
        self.register_buffer("filter", (g / g.sum()).expand(channels, 1, 3, 3).contiguous())

    def forward(self, x: Tensor) -> Tensor:
        out = F.conv2d(x**2, self.filter, stride=2, padding=1, groups=x.shape[1])
        return (out + 1e-12).sqrt()


class VGGFeatures(nn.Module):
    """VGG16 convolutions (torchvision layout); returns relu1_2, relu2_2, relu3_3, relu4_3,
    relu5_3. ``pool="max"`` is the ImageNet network (LPIPS); ``pool="l2"`` is DISTS's variant."""

    def __init__(self, weights: dict[str, Tensor], *, pool: str = "max"):
        super().__init__()
        if pool not in ("max", "l2"):
            raise ValueError(f"unknown pool {pool!r}; choose 'max' or 'l2'")
        self.pool = pool
        self.convs = nn.ModuleList(
            _conv_from(weights, i, padding=1) for i in range(sum(v != "M" for v in VGG_CONFIG))
        )
        widths = [VGG_CONFIG[i - 1] for i, v in enumerate(VGG_CONFIG) if v == "M"]
        self.l2pools = nn.ModuleList(L2Pool(c) for c in widths) if pool == "l2" else None

    def forward(self, x: Tensor) -> list[Tensor]:
        taps, conv_i, pool_i = [], 0, 0
        for v in VGG_CONFIG:
            if v == "M":
                taps.append(x)  # every pooling follows one of the five tapped ReLUs
                x = self.l2pools[pool_i](x) if self.pool == "l2" else F.max_pool2d(x, 2, 2)
                pool_i += 1
            else:
                x = F.relu(self.convs[conv_i](x))
                conv_i += 1
        return taps + [x]


class LPIPS(nn.Module):
    """LPIPS v0.1 distance (Zhang et al. 2018) with an AlexNet or VGG16 backbone.

    ``forward(x, ref) -> (B,)`` for images in [0, 1] (see module docstring for small images).
    """

    def __init__(self, weights: dict[str, Tensor], net: str = "alex"):
        super().__init__()
        if net not in ("alex", "vgg"):
            raise ValueError(f"unknown net {net!r}; choose 'alex' or 'vgg'")
        self.net = net
        self.features = AlexFeatures(weights) if net == "alex" else VGGFeatures(weights)
        self.heads = nn.ParameterList(
            nn.Parameter(weights[f"lin.{k}.weight"].clone(), requires_grad=False) for k in range(5)
        )
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: Tensor, ref: Tensor) -> Tensor:
        _check_pair(x, ref)
        both = prepare_images(torch.cat([x, ref]))
        feats = self.features(((2 * both - 1) - self.shift) / self.scale)
        total = 0
        for f, head in zip(feats, self.heads, strict=True):
            f = f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            fx, fr = f.chunk(2)
            total = total + F.conv2d((fx - fr) ** 2, head).mean((1, 2, 3))
        return total


class DISTS(nn.Module):
    """DISTS distance (Ding et al., TPAMI 2020) with the authors' learned alpha/beta.

    ``forward(x, ref) -> (B,)`` for images in [0, 1]; 0 for identical images.
    """

    CHANNELS = (3, 64, 128, 256, 512, 512)

    def __init__(self, weights: dict[str, Tensor]):
        super().__init__()
        self.features = VGGFeatures(weights, pool="l2")
        w_sum = weights["alpha"].sum() + weights["beta"].sum()
        self.register_buffer("alpha", (weights["alpha"] / w_sum).reshape(-1))
        self.register_buffer("beta", (weights["beta"] / w_sum).reshape(-1))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: Tensor, ref: Tensor) -> Tensor:
        _check_pair(x, ref)
        both = prepare_images(torch.cat([x, ref]))
        feats = [both] + self.features((both - self.mean) / self.std)
        alphas = self.alpha.split(self.CHANNELS)
        betas = self.beta.split(self.CHANNELS)
        c1 = c2 = 1e-6
        score = 0
        for f, a, b in zip(feats, alphas, betas, strict=True):
            fx, fr = f.chunk(2)
            mx, mr = fx.mean((2, 3)), fr.mean((2, 3))
            vx, vr = fx.var((2, 3), unbiased=False), fr.var((2, 3), unbiased=False)
            cov = (fx * fr).mean((2, 3)) - mx * mr
            texture = (2 * mx * mr + c1) / (mx**2 + mr**2 + c1)
            structure = (2 * cov + c2) / (vx + vr + c2)
            score = score + texture @ a + structure @ b
        return 1 - score


class VGGEmbedding(nn.Module):
    """Image embedding for dataset-level distances (FD-VGG, KID): ImageNet VGG16 features at
    ``layers``, averaged over space and concatenated, ``(B, sum of channels)``."""

    def __init__(self, weights: dict[str, Tensor], *, layers: tuple[str, ...] = ("relu5_3",)):
        super().__init__()
        bad = [name for name in layers if name not in VGG_TAPS]
        if bad or not layers:
            raise ValueError(f"unknown VGG layers {bad or layers!r}; choose from {VGG_TAPS}")
        self.layers = layers
        self.features = VGGFeatures(weights)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        taps = self.features((prepare_images(x) - self.mean) / self.std)
        return torch.cat([taps[VGG_TAPS.index(name)].mean((2, 3)) for name in self.layers], 1)
