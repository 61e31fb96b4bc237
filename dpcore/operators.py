"""Linear measurement operators ``A`` for the DPS form: blur, downsampling, masking.

Each acts on image batches ``(B, C, H, W)`` (or any ``(B, ...)`` for :class:`MatrixOperator`)
and carries ``dps_zeta``, its default DPS guidance weight, measured on the Gaussian test case
(tests/test_dps.py) and image models; the paper notes it may need to grow as lambda falls.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


class LinearOperator:
    dps_zeta: float = 1.0

    def __call__(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def matrix(self, x_shape: tuple[int, ...], *, dtype=torch.float64) -> Tensor:
        """The dense matrix of the operator on flattened signals of shape ``x_shape``."""
        d = math.prod(x_shape)
        basis = torch.eye(d, dtype=dtype).reshape(d, *x_shape)
        return self(basis).reshape(d, -1).T


class MatrixOperator(LinearOperator):
    """``A x`` for a dense matrix ``A`` acting on flattened signals."""

    def __init__(self, A: Tensor, dps_zeta: float = 1.0):
        self.A, self.dps_zeta = A, dps_zeta

    def __call__(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1) @ self.A.to(x).T


class Blur(LinearOperator):
    """Gaussian blur of standard deviation ``std`` pixels, reflect padding, same size output."""

    dps_zeta = 1.0

    def __init__(self, std: float = 1.0, size: int | None = None):
        size = size or 2 * math.ceil(3 * std) + 1
        t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
        k = torch.exp(-(t**2) / (2 * std**2))
        self.kernel = (k[:, None] * k[None, :]) / k.sum() ** 2

    def __call__(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        k = self.kernel.to(x)[None, None].expand(c, 1, *self.kernel.shape)
        pad = self.kernel.shape[-1] // 2
        return F.conv2d(F.pad(x, (pad,) * 4, mode="reflect"), k, groups=c)


class Downsample(LinearOperator):
    """Average pooling by an integer ``factor`` (super-resolution)."""

    dps_zeta = 1.0

    def __init__(self, factor: int = 2):
        self.factor = factor

    def __call__(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, self.factor)


class Mask(LinearOperator):
    """Keep the pixels where ``mask`` is 1 (inpainting); ``mask`` broadcasts over the batch."""

    dps_zeta = 1.0

    def __init__(self, mask: Tensor):
        self.mask = mask

    def __call__(self, x: Tensor) -> Tensor:
        return x * self.mask.to(x)
