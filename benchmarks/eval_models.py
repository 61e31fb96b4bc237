"""Measure the shipped denoisers and write the figures to results/models.json and the model cards.

Images (held-out data, noise in [0, 1] units, sigma in {0.1, 0.2, 0.4}):
- PSNR of the one-step Tweedie MMSE ``D(y, sigma)`` against scikit-image's non-local means
  (``denoise_nl_means`` with sigma given, h tuned per sigma on the evaluation images themselves
  over {0.6, 0.8, 1.0, 1.2} x sigma: an oracle choice that favours the baseline) and wavelet
  shrinkage (``denoise_wavelet``, BayesShrink, soft, sigma given). All outputs clipped to [0, 1].
- Dataset-level Frechet distance in pixel space (Gaussian W2 with a small ridge) from a
  reference set of clean held-out images to the lambda = 0 / lambda = 1 outputs of
  ``variance_scaled_denoise`` at sigma 0.2, computed on other held-out images; the floor is the
  distance from the reference to those images' clean versions (same sizes, so the same
  finite-sample bias; outputs are never compared with their own clean images).
2-D priors (standardised units):
- W2 (POT, exact EMD) between lambda = 1 samples started far out (sigma_y = 8) and true prior
  samples, beside the finite-sample floor (two independent true sets of the same size).
- Over lambda in {0, .25, .5, .75, 1} at sigma_y = 1 (GRID_SIGMA): MSE to the clean points (should
  rise) and W2 to the prior (should fall; mean over three true sets, resolution ~ the floor).

    python benchmarks/eval_models.py [--models fashion-mnist sci-patches ...] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data import datasets  # noqa: E402
from data.checkpoints import load_denoiser, update_quality  # noqa: E402
from data.train_model import write_model_card  # noqa: E402
from dpcore.sampler import variance_scaled_denoise  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "models.json"
SIGMAS = (0.1, 0.2, 0.4)
NLM_H = (0.6, 0.8, 1.0, 1.2)
LAMBDAS = (0.0, 0.25, 0.5, 0.75, 1.0)
GRID_SIGMA = 1.0


def psnr(x: np.ndarray, ref: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((np.clip(x, 0, 1) - ref) ** 2)))


def frechet_distance(a: np.ndarray, b: np.ndarray, ridge: float = 1e-6) -> float:
    """Squared W2 between Gaussians fitted to two sample sets ``(N, d)`` (Frechet distance)."""
    from scipy.linalg import sqrtm

    mu_a, mu_b = a.mean(0), b.mean(0)
    eye = ridge * np.eye(a.shape[1])
    cov_a, cov_b = np.cov(a, rowvar=False) + eye, np.cov(b, rowvar=False) + eye
    root_a = np.real(sqrtm(cov_a))
    cross = np.real(sqrtm(root_a @ cov_b @ root_a))
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * cross))


def patches8(flat: np.ndarray) -> np.ndarray:
    """Non-overlapping 8 x 8 patches of square images given flattened, as rows of 64."""
    side = int(round(np.sqrt(flat.shape[1])))
    images = flat.reshape(-1, side // 8, 8, side // 8, 8).swapaxes(2, 3)
    return images.reshape(-1, 64)


def tweedie(model, images: list[np.ndarray], noisy: list[np.ndarray], sigma: float) -> list:
    out = []
    with torch.no_grad():
        for y in noisy:
            t = torch.from_numpy(y)[None, None].float()
            out.append(model(t, sigma)[0, 0].numpy())
    return out


def baselines(images: list[np.ndarray], noisy: list[np.ndarray], sigma: float) -> dict:
    from skimage.restoration import denoise_nl_means, denoise_wavelet

    size = min(images[0].shape)
    patch, distance = (5, 6) if size < 64 else (7, 11)
    nlm = {}
    for h in NLM_H:
        outs = [denoise_nl_means(y, h=h * sigma, sigma=sigma, patch_size=patch,
                                 patch_distance=distance, fast_mode=True) for y in noisy]
        nlm[h] = [psnr(o, x) for o, x in zip(outs, images, strict=True)]
    best_h = max(nlm, key=lambda h: np.mean(nlm[h]))
    wav = [denoise_wavelet(y, sigma=sigma, method="BayesShrink", mode="soft", rescale_sigma=True)
           for y in noisy]
    wav = [psnr(o, x) for o, x in zip(wav, images, strict=True)]
    out = {"nlm": float(np.mean(nlm[best_h])), "nlm_h_over_sigma": best_h,
           "wavelet": float(np.mean(wav))}
    if len(images) <= 5:
        out["nlm_per_image"] = [round(v, 3) for v in nlm[best_h]]
        out["wavelet_per_image"] = [round(v, 3) for v in wav]
    return out


def eval_image_model(name: str, images: list[np.ndarray], fd_clean: np.ndarray,
                     fd_reference: np.ndarray, seed: int = 0) -> dict:
    model = load_denoiser(name)
    rng = np.random.default_rng(seed)
    result = {"psnr": {}}
    for sigma in SIGMAS:
        noisy = [x + sigma * rng.standard_normal(x.shape).astype(np.float32) for x in images]
        mmse = tweedie(model, images, noisy, sigma)
        row = {"noisy": float(np.mean([psnr(y, x) for y, x in zip(noisy, images, strict=True)])),
               "tweedie": float(np.mean([psnr(d, x) for d, x in zip(mmse, images, strict=True)]))}
        if len(images) <= 5:
            row["tweedie_per_image"] = [round(psnr(d, x), 3) for d, x in zip(mmse, images,
                                                                              strict=True)]
        row.update(baselines(images, noisy, sigma))
        row["margin_vs_nlm_db"] = row["tweedie"] - row["nlm"]
        row["margin_vs_wavelet_db"] = row["tweedie"] - row["wavelet"]
        result["psnr"][str(sigma)] = {k: round(v, 3) if isinstance(v, float) else v
                                      for k, v in row.items()}
        print(f"{name} sigma={sigma}: {result['psnr'][str(sigma)]}", flush=True)
    # Dataset-level Frechet distance at sigma = 0.2: lambda = 0 vs lambda = 1.
    sigma = 0.2
    clean = torch.from_numpy(fd_clean)[:, None]
    y = clean + sigma * torch.randn(clean.shape, generator=torch.Generator().manual_seed(seed))
    outs = []
    with torch.no_grad():
        for chunk in torch.split(torch.arange(len(y)), 100):
            outs.append(variance_scaled_denoise(model, y[chunk], sigma, [0.0, 1.0], steps=20,
                                                seed=seed, sample_ids=chunk))
    outs = torch.cat(outs, dim=1).clamp(0, 1).flatten(2).numpy()
    flat = fd_clean.reshape(len(fd_clean), -1)
    ref = fd_reference.reshape(len(fd_reference), -1)
    result["frechet_sigma0.2"] = {
        "n": len(flat), "n_reference": len(ref),
        "lambda0": round(frechet_distance(ref, outs[0]), 4),
        "lambda1": round(frechet_distance(ref, outs[1]), 4),
        "noisy": round(frechet_distance(ref, y.clamp(0, 1).flatten(1).numpy()), 4),
        "floor_clean": round(frechet_distance(ref, flat), 4),
        # 8 x 8 patches: 16x more samples in 64 dimensions, a far less biased estimate.
        "patch8_lambda0": round(frechet_distance(patches8(ref), patches8(outs[0])), 5),
        "patch8_lambda1": round(frechet_distance(patches8(ref), patches8(outs[1])), 5),
        "patch8_floor_clean": round(frechet_distance(patches8(ref), patches8(flat)), 5),
        "mse_lambda0": round(float(np.mean((outs[0] - flat) ** 2)), 6),
        "mse_lambda1": round(float(np.mean((outs[1] - flat) ** 2)), 6),
    }
    print(f"{name} frechet: {result['frechet_sigma0.2']}", flush=True)
    return result


def w2(a: np.ndarray, b: np.ndarray) -> float:
    import ot

    cost = ot.dist(a, b)  # squared Euclidean
    return float(np.sqrt(ot.emd2(ot.unif(len(a)), ot.unif(len(b)), cost, numItermax=10**7)))


def eval_toy_model(name: str, n: int, seed: int = 0) -> dict:
    model = load_denoiser(name)
    truth = datasets.toy2d(name, n, seed + 1)
    clean = torch.from_numpy(datasets.toy2d(name, n, seed + 2))
    floor = w2(truth, datasets.toy2d(name, n, seed + 3))
    gen = torch.Generator().manual_seed(seed)
    far = clean + 8.0 * torch.randn(clean.shape, generator=gen)
    samples = variance_scaled_denoise(model, far, 8.0, [1.0], steps=100, seed=seed)[0].numpy()
    y = clean + GRID_SIGMA * torch.randn(clean.shape, generator=gen)
    grid = variance_scaled_denoise(model, y, GRID_SIGMA, LAMBDAS, steps=50, seed=seed).numpy()
    mse = [float(np.mean(np.sum((g - clean.numpy()) ** 2, 1))) for g in grid]
    # W2 along the grid: mean over three independent true sets, to damp the estimation noise.
    truths = [truth] + [datasets.toy2d(name, n, seed + k) for k in (4, 5)]
    w2s = [float(np.mean([w2(g, t) for t in truths])) for g in grid]
    result = {
        "n": n, "w2_samples_vs_prior": round(w2(samples, truth), 4),
        "w2_floor": round(floor, 4),
        "w2_noisy_start_vs_prior": round(w2(far.numpy(), truth), 4),
        f"lambda_grid_sigma{GRID_SIGMA}": {"lambdas": list(LAMBDAS), "mse": [round(v, 4) for v in mse],
                                 "w2": [round(v, 4) for v in w2s],
                                 "mse_rising": bool(np.all(np.diff(mse) > 0)),
                                 "w2_falling": bool(np.all(np.diff(w2s) < 0))},
        f"tweedie_mse_sigma{GRID_SIGMA}": round(mse[0], 4),
        f"identity_mse_sigma{GRID_SIGMA}": round(float(np.mean(np.sum((y - clean).numpy() ** 2, 1))), 4),
    }
    print(f"{name}: {result}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*",
                        default=["pinwheel", "s-curve", "moons", "fashion-mnist", "sci-patches"])
    parser.add_argument("--quick", action="store_true", help="fewer images and points")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # Frechet on whole images needs thousands of samples (1024 dimensions): Fashion-MNIST has
    # them; the three held-out scientific images give 620 tiles, half of them denoised.
    n_img, n_fd, n_ref, n_2d = (40, 100, 500, 500) if args.quick else (200, 3000, 3000, 2000)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for name in args.models:
        start = time.perf_counter()
        if name in datasets.TOY2D:
            quality = eval_toy_model(name, n_2d)
        elif name == "fashion-mnist":
            test = datasets.fashion_mnist("test")
            rng = np.random.default_rng(0)
            idx = rng.permutation(len(test))
            quality = eval_image_model(name, list(test[idx[:n_img]]), test[idx[n_img:n_img + n_fd]],
                                       test[idx[n_img + n_fd:n_img + n_fd + n_ref]])
            quality["held_out"] = (f"{n_img} Fashion-MNIST test images (PSNR); {n_fd} others "
                                   f"denoised and {n_ref} others as reference (Frechet)")
        elif name == "sci-patches":
            images = list(datasets.sci_images("test").values())
            tiles = datasets.sci_patches("test", 32)
            idx = np.random.default_rng(0).permutation(len(tiles))
            n_sci = min(n_fd, 300)  # a local count: later models keep n_fd
            quality = eval_image_model(name, images, tiles[idx[:n_sci]], tiles[idx[n_sci:]])
            quality["held_out"] = (f"whole held-out images {', '.join(datasets.SCI_SPLITS['test'])}"
                                   f" (PSNR); {n_sci} of their 32x32 tiles denoised and the other "
                                   f"{len(tiles) - n_sci} as reference (Frechet)")
        else:
            raise SystemExit(f"no evaluation for {name!r}")
        quality["eval_seconds"] = round(time.perf_counter() - start, 1)
        results[name] = quality
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        if not args.quick:
            write_model_card(update_quality(name, quality))


if __name__ == "__main__":
    main()
