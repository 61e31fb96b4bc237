"""Counter-based Gaussian noise: the same draw for a given (seed, sample, lambda, step, element)
whatever the batch it is computed in, the device, or the order of completion.

torch's generators are sequential streams: a sample's noise would depend on its position in the
batch. Here every normal is a pure function of integer keys, computed with a 32-bit avalanche
hash (the "lowbias32" mixer found by C. Wellons' hash-prospector) and the Box-Muller transform,
all in exact integer arithmetic (int64 holding 32-bit values, no overflow), so CPU and GPU agree.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_M32 = 0xFFFFFFFF


def _mul32(x: Tensor, c: int) -> Tensor:
    """``(x * c) mod 2**32`` for int64 ``x`` in ``[0, 2**32)``, without int64 overflow."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & _M32


def mix32(x: Tensor) -> Tensor:
    """A bijective 32-bit avalanche hash of int64 values in ``[0, 2**32)`` (a Python int works
    too, with the same result)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def lambda_code(lambdas: Tensor) -> Tensor:
    """A stable integer code for each lambda value (resolution 2**-30)."""
    return torch.round(lambdas.double() * 2**30).long() & _M32


def row_keys(seed: int, sample_ids: Tensor, lambdas: Tensor) -> Tensor:
    """Keys for the lambda-major batch ``(L * B,)``: row ``l * B + b`` is (sample b, lambda l)."""
    sample_ids = sample_ids.long().cpu()
    key = mix32(torch.tensor(seed & _M32) ^ 0x9E3779B9)
    key = mix32(key ^ (sample_ids & _M32))
    key = mix32(key ^ ((sample_ids >> 32) & _M32))  # (B,)
    codes = lambda_code(lambdas.cpu())  # (L,)
    return mix32(key[None, :] ^ mix32(codes[:, None] ^ 0x85EBCA6B)).reshape(-1)


class CounterNoise:
    """``noise(draw, shape)`` -> standard normals of ``shape = (rows, *event)`` for draw ``draw``.

    ``keys`` (one per row, from :func:`row_keys`) fix each row's stream; ``draw`` indexes the
    successive draws of a run (for example two per sampler step).
    """

    def __init__(self, keys: Tensor):
        self.keys = keys.long()
        self._cache: dict[tuple, Tensor] = {}

    def _cached(self, what: str, n: int, device) -> Tensor:
        """The row keys on ``device``, or the element hashes ``mix32(2 j + what)`` of ``n``
        elements: the same for every draw, so each is made (and moved to a GPU) once."""
        key = (what, n, str(device))
        if key not in self._cache:
            if what == "keys":
                self._cache[key] = self.keys.to(device)
            else:
                j = torch.arange(n, device=device, dtype=torch.long)
                self._cache[key] = mix32(2 * j + int(what))
        return self._cache[key]

    def __call__(self, draw: int, shape: torch.Size, *, dtype: torch.dtype, device) -> Tensor:
        rows, n = shape[0], math.prod(shape[1:])
        if rows != self.keys.numel():
            raise ValueError(f"noise asked for {rows} rows; it has keys for {self.keys.numel()}")
        # The draw's hash in Python integers (mix32 is plain integer arithmetic): nothing is
        # copied to the device (a host sync on a GPU) inside a sampler's loop.
        offset = mix32(int(draw) + 0x27D4EB2F)
        keys = mix32(self._cached("keys", 0, device) ^ offset)
        h1 = mix32(keys[:, None] ^ self._cached("0", n, device))
        h2 = mix32(keys[:, None] ^ self._cached("1", n, device))
        u1 = ((h1 >> 8).float() + 0.5) / 2**24
        u2 = (h2 >> 8).float() / 2**24
        z = torch.sqrt(-2 * torch.log(u1)) * torch.cos(2 * math.pi * u2)
        return z.to(dtype).reshape(shape)


class GeneratorNoise:
    """Noise from a torch generator (fast, but tied to the batch layout)."""

    def __init__(self, generator: torch.Generator | None = None):
        self.generator = generator

    def __call__(self, draw: int, shape: torch.Size, *, dtype: torch.dtype, device) -> Tensor:
        gen_device = self.generator.device if self.generator is not None else "cpu"
        return torch.randn(shape, generator=self.generator, dtype=dtype, device=gen_device).to(device)
