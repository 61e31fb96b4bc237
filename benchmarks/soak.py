"""Soak: a frontier run over a few thousand small image files with random per-image faults.

Every file is an 8x8 image drawn from a known Gaussian prior, saved as uint8 PNG, uint16 TIFF or
float32 TIFF; a random fraction is replaced by a fault (truncated TIFF, empty PNG, text file,
NaN or Inf pixels, constant image, 1x1 image, bool mask, complex pixels, a PNG that is not one).
The run must process every good image (its lambda = 0 output equal to the exact MMSE of its
stored noisy measurement) and list every bad one, with a reason, in the dataset's skipped record.

    .venv/bin/python benchmarks/soak.py [--images 3000] [--fault-rate 0.1] [--out DIR]

writes benchmarks/results/reliability-soak.json (faults injected, survived, images tried, data
lost).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import numpy as np  # noqa: E402

FAULTS = ("truncated-tiff", "empty-png", "text-file", "nan-pixels", "inf-pixels", "constant",
          "one-pixel", "bool-mask", "complex-pixels", "fake-png")
GOOD_KINDS = ("uint8-png", "uint16-tiff", "float32-tiff")
RESULT = REPO / "benchmarks" / "results" / "reliability-soak.json"


def write_faulty_folder(folder: Path, clean: np.ndarray, fault_rate: float, seed: int
                        ) -> tuple[dict[str, str], dict[str, str]]:
    """One file per image of ``clean`` (n, 8, 8); returns ``(good id -> kind, bad id -> fault)``."""
    import tifffile
    from skimage.io import imsave

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    good, bad = {}, {}
    for i, image in enumerate(clean):
        name = f"img{i:05d}"
        if rng.random() < fault_rate:
            fault = FAULTS[rng.integers(len(FAULTS))]
            bad[name] = fault
            if fault == "truncated-tiff":
                tifffile.imwrite(folder / f"{name}.tif", (image * 65535).astype(np.uint16))
                data = (folder / f"{name}.tif").read_bytes()
                (folder / f"{name}.tif").write_bytes(data[:rng.integers(8, len(data) - 60)])
            elif fault == "empty-png":
                (folder / f"{name}.png").write_bytes(b"")
            elif fault == "text-file":
                (folder / f"{name}.csv").write_text("not,an,image\n")
            elif fault in ("nan-pixels", "inf-pixels"):
                broken = image.astype(np.float32)
                broken.flat[rng.integers(broken.size)] = np.nan if fault == "nan-pixels" else -np.inf
                tifffile.imwrite(folder / f"{name}.tif", broken)
            elif fault == "constant":
                imsave(folder / f"{name}.png", np.full((8, 8), rng.integers(256), np.uint8),
                       check_contrast=False)
            elif fault == "one-pixel":
                tifffile.imwrite(folder / f"{name}.tif", np.array([[200]], np.uint8))
            elif fault == "bool-mask":
                tifffile.imwrite(folder / f"{name}.tif", image > 0.5)
            elif fault == "complex-pixels":
                tifffile.imwrite(folder / f"{name}.tif", image.astype(np.complex64))
            else:
                (folder / f"{name}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + rng.bytes(30))
            continue
        kind = GOOD_KINDS[rng.integers(len(GOOD_KINDS))]
        good[name] = kind
        if kind == "uint8-png":
            imsave(folder / f"{name}.png", np.round(image * 255).astype(np.uint8),
                   check_contrast=False)
        elif kind == "uint16-tiff":
            tifffile.imwrite(folder / f"{name}.tif", np.round(image * 65535).astype(np.uint16))
        else:
            tifffile.imwrite(folder / f"{name}.tif", image.astype(np.float32))
    return good, bad


def check_run(run_dir: Path, prior: Path, good: dict[str, str], bad: dict[str, str]) -> dict:
    """Compare the dataset with what was injected; every good image checked against theory."""
    import torch

    from data.analytic import load_prior
    from data.frontier import load_frontier
    from data.store import iter_chunks
    from dpcore.denoisers import GaussianDenoiser

    ds = load_frontier(run_dir / "frontier.zarr")
    skipped = {s["id"]: s["reason"] for s in json.loads(ds.attrs["skipped_inputs"])}
    ids = [str(i) for i in ds.id.values]
    mean, cov = load_prior(prior)
    exact = GaussianDenoiser(torch.as_tensor(mean), torch.as_tensor(cov))
    den0 = ds.denoised.sel(lam=0.0).values
    row = {image_id: k for k, image_id in enumerate(ids)}
    wrong = []
    for _, _, chunk in iter_chunks(run_dir / "store.zarr"):
        y = torch.from_numpy(np.asarray(chunk["noisy"], np.float64))
        sigma = torch.from_numpy(np.asarray(chunk["sigma"], np.float64))
        mmse = exact.posterior_mean(y.flatten(1), sigma).reshape(y.shape).numpy()
        for j, image_id in enumerate(chunk["ids"]):
            if not np.allclose(den0[row[str(image_id)]], mmse[j], atol=1e-4):
                wrong.append(str(image_id))
    finite = np.isfinite(ds.mse.values).all(axis=-1)
    lost = sorted(set(good) - {i for i, ok in zip(ids, finite, strict=True) if ok})
    unlisted = sorted(set(bad) - set(skipped))
    return {
        "images_tried": len(good) + len(bad),
        "good_images": len(good),
        "good_by_kind": dict(Counter(good.values())),
        "faults_injected": len(bad),
        "faults_by_kind": dict(Counter(bad.values())),
        "faults_survived": len(set(bad) & set(skipped)),
        "faults_unlisted": unlisted,
        "bad_images_in_dataset": sorted(set(bad) & set(ids)),
        "good_images_processed": len(set(good) & set(ids)) - len(lost),
        "good_images_skipped": sorted(set(good) & set(skipped)),
        "data_lost": len(lost),
        "lost_ids": lost[:20],
        "lambda0_not_mmse": wrong[:20],
        "dataset_complete": ds.attrs["complete"] == "true",
        "reasons_one_line": all("\n" not in r for r in skipped.values()),
    }


def run_soak(workdir: Path, *, images: int = 3000, fault_rate: float = 0.1, seed: int = 0,
             chunk_size: int = 250, workers: int = 2) -> dict:
    """Build the faulty folder, run the frontier flow on it, return the checked figures.
    Needs a Prefect API (a test harness, a server, or the ephemeral default)."""
    from data.analytic import write_gaussian_collection
    from flows.frontier import frontier
    from tests.conftest import tree_hashes

    clean_path, prior = write_gaussian_collection(workdir / "prior", images, seed=seed)
    good, bad = write_faulty_folder(workdir / "archive", np.load(clean_path)[:, 0], fault_rate,
                                    seed + 1)
    before = tree_hashes(workdir / "archive")
    start = time.perf_counter()
    result = frontier(source=str(workdir / "archive"), out=str(workdir / "run"), add_noise=0.1,
                      seed=seed, lambdas=[0.0, 0.5, 1.0], steps=4, model=f"gaussian:{prior}",
                      chunk_size=chunk_size, workers=workers, sure=False)
    wall = time.perf_counter() - start
    figures = check_run(workdir / "run", prior, good, bad)
    figures.update({
        "failed_chunks": result["failed"], "chunks": result["chunks"],
        "inputs_unchanged": tree_hashes(workdir / "archive") == before,
        "wall_s": round(wall, 1),
        "config": {"images": images, "fault_rate": fault_rate, "seed": seed, "size": "8x8",
                   "model": "analytic Gaussian prior", "steps": 4, "lambdas": [0, 0.5, 1],
                   "chunk_size": chunk_size, "workers": workers, "sure": False},
    })
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--fault-rate", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: temporary)")
    parser.add_argument("--result", type=Path, default=RESULT)
    args = parser.parse_args()
    import torch
    from prefect.testing.utilities import prefect_test_harness

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp, prefect_test_harness(server_startup_timeout=180):
        workdir = args.out or Path(tmp)
        figures = run_soak(workdir, images=args.images, fault_rate=args.fault_rate,
                           seed=args.seed, workers=args.workers)
    figures["machine"] = f"{os.cpu_count()} CPU cores, no GPU" if not torch.cuda.is_available() \
        else torch.cuda.get_device_name()
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps({k: figures[k] for k in ("images_tried", "faults_injected",
                                              "faults_survived", "data_lost", "wall_s")}))
    ok = (figures["data_lost"] == 0 and not figures["faults_unlisted"]
          and not figures["lambda0_not_mmse"] and figures["inputs_unchanged"])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
