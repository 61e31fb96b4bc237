"""Train a denoiser on a bundled data source or a user's clean collection, and save a checkpoint.

    python -m data.train_model fashion-mnist --out data/models/fashion-mnist.pt --steps 4000

Writes ``<out>`` (EMA weights + metadata, see ``data/checkpoints.py``), ``<out stem>.state.pt``
(optimizer, raw weights, generator: for ``--resume``), ``<out stem>.loss.csv`` and
``<out stem>.loss.png`` (the loss curve), and ``<out stem>.md`` (the model card). The training
state is saved every ``--save-every`` steps, so a stopped run loses little.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from data import datasets
from data.checkpoints import read_checkpoint, save_checkpoint
from dpcore.nets import build_denoiser, count_parameters
from dpcore.training import train

IMAGE_SOURCES = ("fashion-mnist", "sci-patches", "digits")
SOURCES = IMAGE_SOURCES + datasets.TOY2D
# Per-architecture defaults; image sigma in [-1, 1] units, 2-D sigma in standardised units.
DEFAULTS = {
    "unet": {"arch_kwargs": {"widths": [16, 32, 64], "blocks": 1, "emb_dim": 128},
             "sigma_data": 0.5, "p_mean": -1.2, "p_std": 1.2, "lr": 1e-3, "ema_decay": 0.999},
    "mlp": {"arch_kwargs": {"hidden": 128, "layers": 4, "emb_dim": 64},
            "sigma_data": 1.0, "p_mean": -0.6, "p_std": 1.6, "lr": 2e-3, "ema_decay": 0.999},
}
DATA_DESCRIPTIONS = {
    "fashion-mnist": "Fashion-MNIST train split (60000 images, Debian dataset-fashion-mnist), "
                     "zero-padded to 32x32, random horizontal flips",
    "sci-patches": "random 32x32 crops (with the 8 flips/rotations, each image equally likely) of "
                   "scikit-image's "
                   f"{', '.join(datasets.SCI_SPLITS['train'])} in grayscale; held out: "
                   f"{', '.join(datasets.SCI_SPLITS['test'])}",
    "digits": "scikit-learn digits (1797 images, 8x8)",
    "pinwheel": "pinwheel, 5 arms (Johnson et al. 2016), 100000 points, standardised",
    "s-curve": "scikit-learn make_s_curve (x, z coordinates), 100000 points, standardised",
    "moons": "scikit-learn make_moons (noise 0.05), 100000 points, standardised",
}


def image_sampler(images: torch.Tensor, *, crop: int | None, flips: str):
    """A batch sampler over ``(N, C, H, W)`` images in model units: random crops and flips."""
    n, _, height, width = images.shape

    def sample(generator: torch.Generator, batch_size: int) -> torch.Tensor:
        idx = torch.randint(n, (batch_size,), generator=generator)
        if crop is None or (crop >= height and crop >= width):
            batch = images[idx]
        else:
            rows = torch.randint(height - crop + 1, (batch_size,), generator=generator)
            cols = torch.randint(width - crop + 1, (batch_size,), generator=generator)
            batch = torch.stack([images[i, :, r:r + crop, c:c + crop]
                                 for i, r, c in zip(idx.tolist(), rows.tolist(), cols.tolist(),
                                                    strict=True)])
        ops = torch.randint(8, (batch_size,), generator=generator)
        if flips == "horizontal":
            ops = ops % 2
        elif flips == "none":
            ops = torch.zeros_like(ops)
        out = batch.clone()
        for k in range(1, 8):
            sel = ops == k
            if sel.any():
                b = batch[sel].flip(-1) if k % 2 else batch[sel]
                out[sel] = torch.rot90(b, k // 2, (-2, -1)) if b.shape[-1] == b.shape[-2] else b
        return out

    return sample


def patches_sampler(images: list[np.ndarray], size: int):
    """Random ``size`` crops with the 8 flips/rotations, each image equally likely.

    Equal weights, not weights by area: otherwise the largest images (retina, mostly dark
    background) would supply most of the crops.
    """
    tensors = [torch.from_numpy(2 * im - 1)[None, None] for im in images]
    weights = torch.ones(len(tensors), dtype=torch.float64)
    per_image = [image_sampler(t, crop=size, flips="all") for t in tensors]

    def sample(generator: torch.Generator, batch_size: int) -> torch.Tensor:
        which = torch.multinomial(weights, batch_size, replacement=True, generator=generator)
        counts = torch.bincount(which, minlength=len(tensors)).tolist()
        return torch.cat([per_image[i](generator, c) for i, c in enumerate(counts) if c])

    return sample


def make_source(source: str, seed: int) -> tuple:
    """``(sampler, channels, data description, mean, scale, scaling)`` for a data source."""
    if source in datasets.TOY2D:
        points = torch.from_numpy(datasets.toy2d(source, 100_000, seed))
        mean, scale = points.mean(0), float(points.std())
        points = (points - mean) / scale
        sample = lambda g, b: points[torch.randint(len(points), (b,), generator=g)]  # noqa: E731
        return sample, 2, DATA_DESCRIPTIONS[source], mean.tolist(), scale, "standardised"
    if source == "fashion-mnist":
        images = torch.from_numpy(2 * datasets.fashion_mnist("train") - 1)[:, None]
        sample = image_sampler(images, crop=None, flips="horizontal")
    elif source == "sci-patches":
        sample = patches_sampler(list(datasets.sci_images("train").values()), 32)
    elif source == "digits":
        images = torch.from_numpy(2 * datasets.digits() - 1)[:, None]
        sample = image_sampler(images, crop=None, flips="none")
    else:
        path = Path(source)
        if not path.exists():
            raise ValueError(f"unknown source {source!r}: not one of {SOURCES} nor a path")
        images = torch.from_numpy(2 * datasets.load_collection(path) - 1)
        sample = image_sampler(images, crop=32, flips="all")
        return sample, images.shape[1], f"user collection {path} ({len(images)} images)", \
            0.5, 0.5, "[-1,1]"
    return sample, 1, DATA_DESCRIPTIONS[source], 0.5, 0.5, "[-1,1]"


def hardware(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def save_loss_curve(losses: list[float], stem: Path) -> None:
    with open(stem.with_suffix(".loss.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "loss"])
        writer.writerows((i + 1, f"{v:.6g}") for i, v in enumerate(losses))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    values = np.asarray(losses)
    window = max(1, len(values) // 50)
    smooth = np.convolve(values, np.ones(window) / window, mode="valid")
    ax.plot(np.arange(1, len(values) + 1), values, alpha=0.3, lw=0.5, label="loss")
    ax.plot(np.arange(window, len(values) + 1), smooth, lw=1.5, label=f"mean of {window}")
    ax.set(xlabel="step", ylabel="EDM loss", yscale="log", title=stem.name)
    ax.legend()
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".loss.png"), dpi=100)
    plt.close(fig)


def train_model(
    source: str,
    *,
    arch: str | None = None,
    out: Path,
    steps: int,
    batch_size: int = 64,
    seed: int = 0,
    resume: bool = False,
    device: str = "cpu",
    lr: float | None = None,
    max_minutes: float | None = None,
    save_every: int = 250,
    arch_kwargs: dict | None = None,
    command: str | None = None,
    progress: bool = True,
) -> Path:
    """Train on ``source`` and write the checkpoint ``out``; returns its path.

    ``max_minutes`` stops early (after a whole chunk of ``save_every`` steps) and records the
    steps reached; the checkpoint's ``reproduce`` command re-runs exactly those steps.
    """
    from tqdm.auto import tqdm

    arch = arch or ("mlp" if source in datasets.TOY2D else "unet")
    if arch not in DEFAULTS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(DEFAULTS)}")
    if (arch == "mlp") != (source in datasets.TOY2D):
        raise ValueError(f"architecture {arch!r} does not fit source {source!r}")
    cfg = DEFAULTS[arch]
    out = Path(out)
    stem = out.with_suffix("")
    out.parent.mkdir(parents=True, exist_ok=True)
    state_path = stem.with_suffix(".state.pt")
    sample, channels, description, mean, scale, scaling = make_source(source, seed)
    kwargs = {**cfg["arch_kwargs"], **(arch_kwargs or {})}
    kwargs["channels" if arch == "unet" else "dim"] = channels
    torch.manual_seed(seed)
    net = build_denoiser(arch, sigma_data=cfg["sigma_data"], **kwargs)
    state, elapsed = None, 0.0
    if resume and state_path.exists():
        saved = torch.load(state_path, map_location="cpu", weights_only=False)
        state, elapsed = saved["state"], saved["train_seconds"]
        if saved["arch_kwargs"] != kwargs or saved["source"] != source:
            raise ValueError(f"{state_path} was trained with other settings; drop --resume")
    lr = cfg["lr"] if lr is None else lr
    bar = tqdm(total=steps, initial=0 if state is None else state["step"], disable=not progress,
               desc=out.stem, unit="step")
    callback = lambda info: (bar.update(1), bar.set_postfix(loss=f"{info['loss']:.4f}"))  # noqa: E731
    start = time.perf_counter() - elapsed
    while state is None or state["step"] < steps:
        target = min(steps, (0 if state is None else state["step"]) + save_every)
        state = train(net, sample, steps=target, batch_size=batch_size, state=state, lr=lr,
                      ema_decay=cfg["ema_decay"], p_mean=cfg["p_mean"], p_std=cfg["p_std"],
                      seed=seed, device=device, callback=callback)
        elapsed = time.perf_counter() - start
        torch.save({"state": state, "train_seconds": elapsed, "arch_kwargs": kwargs,
                    "source": source}, state_path)
        if max_minutes is not None and elapsed > 60 * max_minutes:
            break
    bar.close()
    reached = state["step"]
    command = command or f"python -m data.train_model {shlex.join(sys.argv[1:])}"
    reproduce = (f"python -m data.train_model {shlex.join([source])} --arch {arch} "
                 f"--out {shlex.quote(str(out))} --steps {reached} --batch-size {batch_size} "
                 f"--seed {seed} --lr {lr}")
    if arch == "unet":
        reproduce += f" --widths {','.join(str(w) for w in kwargs['widths'])}"
    sigma_hi = float(np.exp(cfg["p_mean"] + 2 * cfg["p_std"])) * scale
    meta = {"arch": arch, "arch_kwargs": kwargs, "sigma_data": cfg["sigma_data"],
            "channels": channels, "data_scaling": scaling, "mean": mean, "scale": scale,
            "sigma_min": 0.002, "sigma_max": round(sigma_hi, 3), "source": source,
            "data": description, "command": command, "reproduce": reproduce,
            "steps": reached, "batch_size": batch_size, "seed": seed, "lr": lr,
            "p_mean": cfg["p_mean"], "p_std": cfg["p_std"], "ema_decay": cfg["ema_decay"],
            "train_seconds": round(elapsed, 1), "hardware": hardware(device),
            "parameters": count_parameters(net), "torch": str(torch.__version__),
            "final_loss": float(np.mean(state["losses"][-100:])), "quality": {}}
    save_checkpoint(out, net, state["ema"], meta)
    save_loss_curve(state["losses"], stem)
    write_model_card(out)
    return out


def quality_lines(quality: dict) -> list[str]:
    """Readable lines for a model card from the figures of ``benchmarks/eval_models.py``."""
    lines = []
    if "psnr" in quality:
        lines += [f"Held out: {quality.get('held_out', '')}", "",
                  "| sigma ([0,1] units) | noisy | Tweedie D(y) | NL-means | wavelet | "
                  "margin vs NLM | margin vs wavelet |", "|---|---|---|---|---|---|---|"]
        for sigma, row in quality["psnr"].items():
            lines.append(f"| {sigma} | {row['noisy']:.2f} | {row['tweedie']:.2f} | "
                         f"{row['nlm']:.2f} | {row['wavelet']:.2f} | "
                         f"{row['margin_vs_nlm_db']:+.2f} dB | {row['margin_vs_wavelet_db']:+.2f} dB |")
        fd = quality.get("frechet_sigma0.2", {})
        if fd:
            lines += ["", f"Frechet distance (pixels, sigma 0.2, {fd['n']} images vs "
                      f"{fd['n_reference']} reference): lambda=0 {fd['lambda0']}, lambda=1 "
                      f"{fd['lambda1']}, clean floor {fd['floor_clean']}; on 8x8 patches: "
                      f"lambda=0 {fd['patch8_lambda0']}, lambda=1 {fd['patch8_lambda1']}, floor "
                      f"{fd['patch8_floor_clean']}"]
    if "w2_samples_vs_prior" in quality:
        grid = next(v for k, v in quality.items() if k.startswith("lambda_grid"))
        lines += [f"W2(model samples, prior) = {quality['w2_samples_vs_prior']} vs finite-sample "
                  f"floor {quality['w2_floor']} ({quality['n']} points each)",
                  f"Lambda grid {grid['lambdas']}: MSE {grid['mse']} (rising: "
                  f"{grid['mse_rising']}), W2 {grid['w2']} (falling: {grid['w2_falling']})"]
    return lines


def write_model_card(path: Path) -> Path:
    """Write ``<stem>.md`` from a checkpoint's metadata (called again after evaluation)."""
    path = Path(path)
    meta = read_checkpoint(path)
    lines = [
        f"# Model card: {path.stem}", "",
        f"- Architecture: `{meta['arch']}` {meta['arch_kwargs']}, {meta.get('parameters')} "
        f"parameters, EDM preconditioning (Karras et al. 2022), sigma_data {meta['sigma_data']}",
        f"- Data: {meta.get('data')}",
        f"- Data scaling: {meta['data_scaling']} (mean {meta['mean']}, scale {meta['scale']}); "
        "the loaded denoiser takes and returns the user's units",
        f"- Sigma range (user units): {meta['sigma_min']} to {meta['sigma_max']}; training "
        f"ln sigma ~ N({meta.get('p_mean')}, {meta.get('p_std')}^2) in model units",
        f"- Training: {meta.get('steps')} steps, batch {meta.get('batch_size')}, Adam lr "
        f"{meta.get('lr')}, EMA {meta.get('ema_decay')}, seed {meta.get('seed')}, "
        f"{meta.get('train_seconds')} s on {meta.get('hardware')} (torch {meta.get('torch')})",
        f"- Final training loss (mean of last 100 steps): {meta.get('final_loss', 0):.4f}",
        f"- Command: `{meta.get('command')}`",
        f"- Reproduce exactly: `{meta.get('reproduce')}`",
        f"- Loss curve: `{path.stem}.loss.csv`, `{path.stem}.loss.png`", "",
        "## Measured quality", "",
    ]
    quality = meta.get("quality") or {}
    if not quality:
        lines.append("Not measured yet: run `python benchmarks/eval_models.py`.")
    else:
        lines += quality_lines(quality) + ["", "Full figures (benchmarks/results/models.json):",
                                           "", "```json", json.dumps(quality, indent=1), "```"]
    card = path.with_suffix(".md")
    card.write_text("\n".join(lines) + "\n")
    return card


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m data.train_model", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help=f"one of {', '.join(SOURCES)}, or a folder / .npy path")
    parser.add_argument("--arch", choices=sorted(DEFAULTS), default=None)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--widths", type=str, default=None, help="UNet widths, e.g. 32,64,64")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-minutes", type=float, default=None)
    parser.add_argument("--save-every", type=int, default=250)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    arch_kwargs = None
    if args.widths:
        arch_kwargs = {"widths": [int(w) for w in args.widths.split(",")]}
    command = "python -m data.train_model " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        path = train_model(args.source, arch=args.arch, out=args.out, steps=args.steps,
                           batch_size=args.batch_size, seed=args.seed, resume=args.resume,
                           device=args.device, lr=args.lr, max_minutes=args.max_minutes,
                           save_every=args.save_every, arch_kwargs=arch_kwargs, command=command)
    except ValueError as err:
        sys.exit(f"error: {err}")
    print(path)


if __name__ == "__main__":
    main()
