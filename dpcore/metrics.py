"""Distortion and distribution metrics: pure functions, one value per image unless stated.

Images are ``(B, C, H, W)`` (or any ``(B, ...)`` for MSE) in [0, 1] units unless a
``data_range`` is given. Sample-set distances take ``(n, d)`` arrays of samples.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dpcore.theory import gaussian_w2


def mse(x: Tensor, ref: Tensor) -> Tensor:
    """Mean squared error per image, ``(B,)``."""
    return (x - ref).pow(2).flatten(1).mean(1)


def sse(x: Tensor, ref: Tensor) -> Tensor:
    """Squared error summed over each image, ``(B,)`` (``||x - ref||^2``, MATH.md's distortion)."""
    return (x - ref).pow(2).flatten(1).sum(1)


def psnr(x: Tensor, ref: Tensor, *, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio per image in dB, ``(B,)``."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    dims = tuple(range(1, x.ndim))
    return peak_signal_noise_ratio(x, ref, data_range=data_range, reduction="none", dim=dims)


def ssim(x: Tensor, ref: Tensor, *, data_range: float = 1.0) -> Tensor:
    """Structural similarity per image (Wang et al. 2004; torchmetrics), ``(B,)``.

    The Gaussian window shrinks for images under 11 pixels a side (e.g. 8x8 digits). Computed in
    float64: in float32, ``ssim(x, x)`` of a near-constant image is 0.9996, not 1.
    """
    from torchmetrics.functional.image import structural_similarity_index_measure

    side = min(x.shape[-2:])
    kernel = 11 if side >= 11 else (side if side % 2 else side - 1)
    return structural_similarity_index_measure(
        x.double(), ref.double(), data_range=data_range, reduction="none",
        kernel_size=kernel, sigma=1.5 * kernel / 11,
    ).to(x.dtype)


def w2_samples(a: Tensor, b: Tensor, *, n_projections: int = 256, seed: int = 0,
               exact_max: int = 4000) -> float:
    """2-Wasserstein distance between two empirical sample sets ``(n, d)`` (POT).

    Exact optimal transport (``ot.emd2``) when both sets have at most ``exact_max`` points and
    ``d <= 16``; the sliced distance (Bonneel et al. 2015) with a seeded projection set otherwise.
    """
    import ot

    a = a.reshape(a.shape[0], -1).double().cpu().numpy()
    b = b.reshape(b.shape[0], -1).double().cpu().numpy()
    if max(len(a), len(b)) <= exact_max and a.shape[1] <= 16:
        cost = ot.dist(a, b, metric="sqeuclidean")
        return float(ot.emd2(ot.unif(len(a)), ot.unif(len(b)), cost, numItermax=10_000_000)) ** 0.5
    return float(ot.sliced_wasserstein_distance(a, b, n_projections=n_projections, seed=seed))


def gaussian_moments(x: Tensor) -> tuple[Tensor, Tensor]:
    """Sample mean and covariance of ``(n, d)`` samples, float64."""
    x = x.reshape(x.shape[0], -1).double()
    return x.mean(0), torch.cov(x.T).reshape(x.shape[1], x.shape[1])


def frechet_distance(a: Tensor, b: Tensor, *, ridge: float = 1e-6) -> float:
    """Frechet (Gaussian W2) distance between two sample sets ``(n, d)``, as a distance (not
    squared), with ``ridge * mean variance`` added to both covariances for stability."""
    ma, ca = gaussian_moments(a)
    mb, cb = gaussian_moments(b)
    eye = torch.eye(ca.shape[0], dtype=ca.dtype)
    scale = ridge * 0.5 * float(torch.trace(ca) + torch.trace(cb)) / ca.shape[0]
    return float(gaussian_w2(ma, ca + scale * eye, mb, cb + scale * eye))


# Dataset-level distances on sample sets, with their finite-sample floor.


def sliced_w2(a: Tensor, b: Tensor, *, n_projections: int = 256, seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance between sample sets ``(n, ...)`` and ``(m, ...)`` in pixel
    space (Bonneel et al. 2015; POT's ``sliced_wasserstein_distance``, seeded projections)."""
    import ot

    a = a.reshape(a.shape[0], -1).double().cpu().numpy()
    b = b.reshape(b.shape[0], -1).double().cpu().numpy()
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"sample sets differ in dimension: {a.shape[1]} vs {b.shape[1]}")
    return float(ot.sliced_wasserstein_distance(a, b, n_projections=n_projections, p=2, seed=seed))


def kid(a: Tensor, b: Tensor, *, subset_size: int = 1000, n_subsets: int = 100,
        seed: int = 0) -> float:
    """Kernel inception-style distance between feature sets ``(n, k)`` and ``(m, k)``.

    Unbiased MMD^2 with the cubic polynomial kernel ``(a.b / k + 1)^3`` (Binkowski, Sutherland,
    Arbel, Gretton, ICLR 2018), averaged over ``n_subsets`` seeded subsets of ``subset_size``
    (one pass on the full sets when both are smaller). Near 0 (either sign) for equal laws.
    """
    a, b = a.reshape(a.shape[0], -1).double(), b.reshape(b.shape[0], -1).double()
    if min(len(a), len(b)) < 2:
        raise ValueError("kid needs at least 2 samples in each set")
    size = min(subset_size, len(a), len(b))
    full = size == len(a) == len(b)
    gen = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(1 if full else n_subsets):
        x = a if full else a[torch.randperm(len(a), generator=gen)[:size]]
        y = b if full else b[torch.randperm(len(b), generator=gen)[:size]]
        values.append(_mmd2_unbiased(x, y))
    return float(torch.stack(values).mean())


def _mmd2_unbiased(x: Tensor, y: Tensor) -> Tensor:
    k = x.shape[1]
    kxx, kyy, kxy = ((u @ v.T / k + 1) ** 3 for u, v in ((x, x), (y, y), (x, y)))
    m, n = len(x), len(y)
    off = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    off = off + (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return off - 2 * kxy.mean()


@torch.no_grad()
def embed(x: Tensor, embedding: Callable[[Tensor], Tensor], *, batch_size: int = 64) -> Tensor:
    """Apply a feature map (e.g. ``dpcore.perceptual.VGGEmbedding``) in batches, ``(n, k)``."""
    return torch.cat([embedding(chunk) for chunk in x.split(batch_size)])


def fd_vgg(x: Tensor, ref: Tensor, *, embedding: Callable[[Tensor], Tensor],
           ridge: float = 1e-6) -> float:
    """FD-VGG: the Frechet distance of VGG16 features (not FID: no Inception network here)."""
    return frechet_distance(embed(x, embedding), embed(ref, embedding), ridge=ridge)


def kid_vgg(x: Tensor, ref: Tensor, *, embedding: Callable[[Tensor], Tensor], **kwargs) -> float:
    """KID on VGG16 features (see :func:`kid`)."""
    return kid(embed(x, embedding), embed(ref, embedding), **kwargs)


def with_floor(metric: Callable[[Tensor, Tensor], float], ref: Tensor, held_out_ref: Tensor,
               x: Tensor) -> tuple[float, float]:
    """``(metric(x, ref), metric(held_out_ref, ref))``: a set-distance estimate and its
    finite-sample floor, the value two independent draws of the reference law already give.
    Use a held-out set of the same size as ``x`` so both carry the same sampling bias."""
    if len(held_out_ref) != len(x):
        raise ValueError(f"held_out_ref has {len(held_out_ref)} samples, x has {len(x)}; "
                         "use equal sizes so value and floor share their sampling bias")
    return metric(x, ref), metric(held_out_ref, ref)


# Exact W2 for low-dimensional cases (2-D mixtures, Gaussians) against exact samples.


def conditional_w2(samples: Tensor, posterior_samples: Tensor, **kwargs) -> Tensor:
    """Per-measurement W2 between ``(B, K, ...)`` outputs and ``(B, M, ...)`` exact posterior
    samples: the conditional perception of Wang et al. (CVPR 2025), ``(B,)``."""
    if samples.shape[0] != posterior_samples.shape[0] or samples.ndim < 3:
        raise ValueError(f"expected (B, K, ...) and (B, M, ...); got {tuple(samples.shape)} "
                         f"and {tuple(posterior_samples.shape)}")
    pairs = zip(samples, posterior_samples, strict=True)
    return torch.tensor([w2_samples(s, p, **kwargs) for s, p in pairs], dtype=torch.float64)


def unconditional_w2(outputs: Tensor, prior_samples: Tensor, **kwargs) -> float:
    """W2 between all outputs ``(N, ...)`` and prior samples ``(M, ...)``: the dataset-level
    perception of Freirich et al. (2021)."""
    return w2_samples(outputs, prior_samples, **kwargs)


# Per-image perception for the frontier.


def _patches(images: Tensor, p: int, stride: int, pick: Tensor | None) -> Tensor:
    """``(N, C p p, P)`` overlapping patches (``F.unfold`` layout); only the positions ``pick``
    (flat indices into the grid of positions, the same for every image) where given."""
    if pick is None:
        return F.unfold(images, p, stride=stride)
    cols = (images.shape[-1] - p) // stride + 1
    pick = pick.to(images.device)
    offsets = torch.arange(p, device=images.device)
    r = ((pick // cols) * stride)[:, None] + offsets  # (P, p)
    c = ((pick % cols) * stride)[:, None] + offsets
    patches = images[:, :, r[:, :, None], c[:, None, :]]  # (N, C, P, p, p)
    return patches.permute(0, 1, 3, 4, 2).reshape(images.shape[0], -1, len(pick))


def _sort_last(values: Tensor) -> Tensor:
    """Ascending along the last dimension; on the CPU through NumPy, whose vectorised sort is
    5-15x faster than torch's on many short rows (the same values)."""
    if values.device.type == "cpu":
        return torch.from_numpy(np.sort(values.numpy(), axis=-1))
    return values.sort(dim=-1).values


def patch_sw(x: Tensor, ref: Tensor, *, patch_sizes: tuple[int, ...] = (4, 8), scales: int = 3,
             n_projections: int = 64, stride: int = 1, min_patches: int = 16,
             max_patches: int = 4096, seed: int = 0, block_elements: int = 2**24) -> Tensor:
    """Multiscale patch sliced-Wasserstein distance between each image and its reference, ``(B,)``.

    Each image is treated as the empirical law of its overlapping ``p x p`` patches (all ``C``
    channels), at ``scales`` dyadic scales (2x2 average pooling between scales). Per scale and
    patch size, the squared sliced W2 (Rabin et al. 2011; Bonneel et al. 2015) over
    ``n_projections`` seeded unit directions is computed by sorting projections; configurations
    with fewer than ``min_patches`` patches are skipped. The result is the square root of the
    mean over configurations: intensity units, comparable to an RMSE, exactly 0 for identical
    images, invariant to where patches sit (a realistic texture with other details scores low;
    a blurred or noisy image scores high). Projections are the same for every image.

    Large images: a configuration with more than ``max_patches`` patch positions uses
    ``max_patches`` of them, seeded and shared by the image and its reference, so time and memory
    per image are bounded (a 512 x 512 image has 255k positions of 8 x 8). Images up to about
    68 x 68 use every position. Images are processed in blocks whose projections hold at most
    about ``block_elements`` values (128 MiB), so memory does not grow with the batch; each
    image's value does not depend on the block it falls in.

    ``x`` may be a stack ``(L, B, C, H, W)`` of outputs for the same references (the lambda
    grid); the result is then ``(L, B)``, equal to ``L`` separate calls, with the references'
    projections computed and sorted once.

    Like any distance between two finite samples, it is biased towards slightly under-dispersed
    outputs: on a stationary Gaussian texture its minimum over the variance-scaled sampler is at
    lambda ~ 0.75, with lambda = 1 about 3% higher (benchmarks/metrics_validation.py).
    """
    if ref.ndim != 4 or x.ndim not in (4, 5) or x.shape[-4:] != ref.shape:
        raise ValueError(f"expected (B, C, H, W) or (L, B, C, H, W) outputs and (B, C, H, W) "
                         f"references of equal image shape; got {tuple(x.shape)} and "
                         f"{tuple(ref.shape)}")
    stacked = x.ndim == 5
    stack = x.shape[:-4] if stacked else (1,)
    configs = _patch_configs(ref.shape[1:], patch_sizes, scales, n_projections, stride,
                             min_patches, max_patches, seed)
    if not configs:
        raise ValueError(f"images of size {tuple(x.shape[-2:])} are too small for patch sizes "
                         f"{patch_sizes} with at least {min_patches} patches")
    x = x.reshape(*stack, *ref.shape)
    # Directions and positions go to the images' device once, not once per block.
    configs = [(scale, p, theta.to(x.device), None if pick is None else pick.to(x.device), n)
               for scale, p, theta, pick, n in configs]
    widest = max(n for *_, n in configs)
    block = max(1, block_elements // ((stack[0] + 1) * n_projections * widest))
    total = torch.zeros(*stack, ref.shape[0], dtype=torch.float64, device=x.device)
    for b0 in range(0, ref.shape[0], block):
        xb, rb = x[:, b0:b0 + block], ref[b0:b0 + block]
        both = torch.cat([xb.reshape(-1, *ref.shape[1:]), rb]).double()
        level = 0
        for scale, p, theta, pick, _ in configs:
            while level < scale:
                both, level = F.avg_pool2d(both, 2), level + 1
            proj = _sort_last(theta @ _patches(both, p, stride, pick))
            px, pr = proj[:-rb.shape[0]], proj[-rb.shape[0]:]
            total[:, b0:b0 + block] += (px.view(*stack, *pr.shape) - pr).pow(2).mean((-2, -1))
    out = (total / len(configs)).sqrt().to(x.dtype)
    return out if stacked else out[0]


def _patch_configs(image: torch.Size, patch_sizes: tuple[int, ...], scales: int,
                   n_projections: int, stride: int, min_patches: int, max_patches: int,
                   seed: int) -> list[tuple[int, int, Tensor, Tensor | None, int]]:
    """``patch_sw``'s configurations ``(scale, p, theta, pick, n)`` for images of shape
    ``(C, H, W)``: the seeded unit directions and, above ``max_patches`` positions, the seeded
    subset ``pick`` of positions, drawn in a fixed order so that every image gets the same ones;
    ``n`` patches are used."""
    gen = torch.Generator().manual_seed(seed)
    positions = torch.Generator().manual_seed(seed + 1_000_003)
    channels, size = image[0], list(image[-2:])
    configs = []
    for s in range(scales):
        if s > 0:
            if min(size) < 2:
                break
            size = [side // 2 for side in size]
        for p in patch_sizes:
            n = [(side - p) // stride + 1 for side in size]
            theta = torch.randn(n_projections, channels * p * p, generator=gen,
                                dtype=torch.float64)
            if min(n) < 1 or n[0] * n[1] < min_patches:
                continue
            theta = theta / theta.norm(dim=1, keepdim=True)
            pick = None
            if n[0] * n[1] > max_patches:
                pick = torch.randperm(n[0] * n[1], generator=positions)[:max_patches]
            configs.append((s, p, theta, pick, n[0] * n[1] if pick is None else len(pick)))
    return configs


PERCEPTION_KINDS = {
    "patch_sw": (
        "multiscale patch sliced-Wasserstein distance between the reconstruction and its clean "
        "reference (dpcore.metrics.patch_sw): overlapping 4x4 and 8x8 patches at 3 dyadic "
        "scales, 64 seeded unit projections, at most 4096 seeded patch positions per scale and "
        "size, sqrt of the mean squared sliced W2; intensity "
        "units, 0 for identical images; compares patch statistics, not pixel positions; "
        "slightly favours under-dispersed outputs (finite-sample bias)"
    ),
    "lpips_alex": "LPIPS v0.1, AlexNet backbone (Zhang et al. 2018), images < 32 px upsampled to 64",
    "lpips_vgg": "LPIPS v0.1, VGG16 backbone (Zhang et al. 2018), images < 32 px upsampled to 64",
    "dists": "DISTS with the authors' alpha/beta (Ding et al. 2020), images < 32 px upsampled to 64",
}
DEFAULT_PERCEPTION = "patch_sw"
PERCEPTION_DEFINITION = PERCEPTION_KINDS[DEFAULT_PERCEPTION]


def perception_index(x: Tensor, ref: Tensor, *, kind: str = DEFAULT_PERCEPTION,
                     model: Callable[[Tensor, Tensor], Tensor] | None = None,
                     seed: int = 0) -> Tensor:
    """The per-image ``perception`` variable of the frontier, ``(B,)``: lower is better.

    ``x`` may be a stack ``(L, B, C, H, W)`` of outputs for the same references (``(L, B)``).
    ``kind`` names the definition (``PERCEPTION_KINDS[kind]``, store it in the dataset attrs).
    The default, ``patch_sw``, needs no network; the learned kinds need ``model``, the matching
    ``dpcore.perceptual.LPIPS`` / ``DISTS`` module built from ``data.weights``.
    """
    if kind not in PERCEPTION_KINDS:
        raise ValueError(f"unknown perception kind {kind!r}; choose one of {tuple(PERCEPTION_KINDS)}")
    if kind == "patch_sw":
        return patch_sw(x, ref, seed=seed)
    if model is None:
        raise ValueError(f"perception kind {kind!r} needs model= (a dpcore.perceptual module)")
    if x.ndim == 5:
        return torch.stack([model(xl, ref) for xl in x])
    return model(x, ref)


def residual_noise_distance(y: Tensor, x_hat: Tensor, sigma_y: Tensor | float, *,
                            seed: int = 0, sample_ids: Tensor | None = None) -> Tensor:
    """No-reference proxy, ``(B,)``: patch sliced-W2 between the residual ``y - x_hat`` and white
    Gaussian noise of std ``sigma_y``, divided by ``sigma_y``.

    An exact posterior sample leaves a residual distributed as the measurement noise (``(y, x_hat)``
    has the law of ``(y, x)``), while an MMSE estimate leaves a smaller, coloured residual. So the
    value falls towards its floor (the value for true noise, about 0.1 for 28x28 images) as the
    output approaches posterior sampling. It is a consistency check, not a perception measure:
    it cannot see whether ``x_hat`` looks like a clean image. The noise is keyed by
    (seed, sample id), so values do not depend on the chunking.
    """
    from dpcore.sampler import check_measurement
    from dpcore.sure import probes

    sigma = check_measurement(y, sigma_y)
    white = probes(y.shape, seed=seed, sample_ids=sample_ids, dtype=y.dtype, device=y.device)
    scale = sigma.reshape(-1, *([1] * (y.ndim - 1)))
    return patch_sw((y - x_hat) / scale, white, patch_sizes=(4,), scales=2, seed=seed)
