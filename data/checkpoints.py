"""Checkpoints: one file per trained denoiser, loaded as a denoiser in the USER's data units.

A checkpoint is ``torch.save`` of a dict::

    format        "dpflow-denoiser/1"
    weights       EMA weights (state dict of dpcore.nets.EDMPrecond)
    arch, arch_kwargs, sigma_data, channels
    data_scaling  "[-1,1]" (images: x_model = 2 x - 1) or "standardised" (2-D: x_model =
                  (x - mean) / scale with a single scalar scale, so isotropic noise stays isotropic)
    mean, scale   the affine map to model units ([-1,1]: mean 0.5, scale 0.5)
    sigma_min, sigma_max   the range trained for, in USER units
    data, command, train_seconds, hardware, steps, batch_size, quality (measured figures)

Training state for resuming (optimizer, raw weights, generator) lives in a side file
``<name>.state.pt`` next to the checkpoint; it is not shipped.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from dpcore.denoisers import sigma_per_sample
from dpcore.nets import ARCHITECTURES, EDMPrecond, build_denoiser

FORMAT = "dpflow-denoiser/1"
MODELS_DIR = Path(__file__).resolve().parent / "models"
SCALINGS = ("[-1,1]", "standardised")
REQUIRED = ("format", "weights", "arch", "arch_kwargs", "sigma_data", "channels", "data_scaling",
            "mean", "scale", "sigma_min", "sigma_max")


class ModelDenoiser(torch.nn.Module):
    """A trained network as a denoiser ``D(x, sigma)`` in the user's units.

    Image models take ``x`` in [0, 1] and sigma in [0, 1] units; 2-D models take raw coordinates.
    Internally ``x_model = (x - mean) / scale`` and ``sigma_model = sigma / scale``, and the output
    is mapped back, so a sampler never converts units itself.
    """

    def __init__(self, net: EDMPrecond, meta: dict, name: str):
        super().__init__()
        self.net = net.eval().requires_grad_(False)
        self.meta, self.name = meta, name
        self.channels = int(meta["channels"])
        self.register_buffer("mean", torch.as_tensor(meta["mean"], dtype=torch.float32))
        self.scale = float(meta["scale"])
        self.sigma_min, self.sigma_max = float(meta["sigma_min"]), float(meta["sigma_max"])

    def forward(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        sigma = sigma_per_sample(sigma, x.shape[0], like=x)
        mean = self.mean.to(x)
        if self.meta["data_scaling"] == "standardised":
            mean = mean.reshape((1,) + tuple(x.shape[1:]))
        x_model = (x - mean) / self.scale
        return self.net(x_model, sigma / self.scale) * self.scale + mean

    def extra_repr(self) -> str:
        return f"name={self.name!r}, channels={self.channels}, scaling={self.meta['data_scaling']}"


def save_checkpoint(path: Path, net: EDMPrecond, ema_weights: dict, meta: dict) -> Path:
    """Write one checkpoint file; ``meta`` holds everything listed in the module docstring."""
    ckpt = {"format": FORMAT, **meta, "weights": {k: v.detach().cpu().clone()
                                                   for k, v in ema_weights.items()}}
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise ValueError(f"checkpoint metadata lacks {missing}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(ckpt, tmp)
    tmp.replace(path)
    return path


def resolve(name_or_path: str | Path) -> Path:
    """A shipped model's short name (``fashion-mnist``) or a path, as an existing file path."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = MODELS_DIR / f"{name_or_path}.pt"
    if shipped.is_file():
        return shipped
    names = sorted(p.stem for p in MODELS_DIR.glob("*.pt") if not p.stem.endswith(".state"))
    raise ValueError(f"no model {str(name_or_path)!r}: not a file, nor a shipped model ({names})")


def read_checkpoint(path: Path) -> dict:
    """The checkpoint dict, validated; a clear ValueError for anything else."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt or foreign files
        raise ValueError(f"{path} is not a readable checkpoint ({type(err).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not a dpflow denoiser checkpoint (format {FORMAT!r})")
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise ValueError(f"{path} lacks checkpoint fields {missing}")
    if ckpt["arch"] not in ARCHITECTURES or ckpt["data_scaling"] not in SCALINGS:
        raise ValueError(f"{path}: unknown architecture {ckpt['arch']!r} or scaling "
                         f"{ckpt['data_scaling']!r}")
    return ckpt


def load_denoiser(name_or_path: str | Path, device: str = "cpu", *,
                  expect_channels: int | None = None, expect_arch: str | None = None
                  ) -> ModelDenoiser:
    """Load a shipped model by short name, or a checkpoint file, as a :class:`ModelDenoiser`."""
    path = resolve(name_or_path)
    ckpt = read_checkpoint(path)
    if expect_channels is not None and int(ckpt["channels"]) != expect_channels:
        raise ValueError(f"{path.name} is a {ckpt['channels']}-channel model; "
                         f"expected {expect_channels} channels")
    if expect_arch is not None and ckpt["arch"] != expect_arch:
        raise ValueError(f"{path.name} is a {ckpt['arch']!r} model; expected {expect_arch!r}")
    try:
        net = build_denoiser(ckpt["arch"], sigma_data=ckpt["sigma_data"], **ckpt["arch_kwargs"])
        net.load_state_dict(ckpt["weights"])
    except (RuntimeError, TypeError) as err:
        first = str(err).strip().splitlines()[0]
        raise ValueError(f"{path.name}: weights do not fit architecture {ckpt['arch']!r} "
                         f"{ckpt['arch_kwargs']} ({first})") from None
    if net.channels != int(ckpt["channels"]):
        raise ValueError(f"{path.name}: metadata says {ckpt['channels']} channels, network has "
                         f"{net.channels}")
    meta = {k: v for k, v in ckpt.items() if k != "weights"}
    return ModelDenoiser(net, meta, path.stem).to(device)


def list_models() -> list[dict]:
    """Each shipped model's key figures: name, architecture, size, data, sigma range, quality."""
    rows = []
    for path in sorted(MODELS_DIR.glob("*.pt")):
        if path.stem.endswith(".state"):
            continue
        ckpt = read_checkpoint(path)
        params = sum(v.numel() for v in ckpt["weights"].values())
        rows.append({"name": path.stem, "arch": ckpt["arch"], "channels": ckpt["channels"],
                     "parameters": params, "size_mb": round(path.stat().st_size / 2**20, 2),
                     "data": ckpt.get("data", ""), "data_scaling": ckpt["data_scaling"],
                     "sigma_range": (ckpt["sigma_min"], ckpt["sigma_max"]),
                     "steps": ckpt.get("steps"), "train_seconds": ckpt.get("train_seconds"),
                     "summary": summarise(ckpt.get("quality") or {}),
                     "quality": ckpt.get("quality", {}), "card": str(path.with_suffix(".md"))})
    return rows


def summarise(quality: dict) -> str:
    """One line of key figures from a model's measured quality ('' when not measured)."""
    if "psnr" in quality and "0.2" in quality["psnr"]:
        row = quality["psnr"]["0.2"]
        return (f"PSNR at sigma 0.2: {row['tweedie']:.2f} dB ({row['margin_vs_nlm_db']:+.2f} vs "
                f"NL-means, {row['margin_vs_wavelet_db']:+.2f} vs wavelet)")
    if "w2_samples_vs_prior" in quality:
        return (f"W2 to prior {quality['w2_samples_vs_prior']:.3f} "
                f"(finite-sample floor {quality['w2_floor']:.3f})")
    return ""


def update_quality(name_or_path: str | Path, quality: dict) -> Path:
    """Store measured figures in a checkpoint's ``quality`` field (used by the evaluation)."""
    path = resolve(name_or_path)
    ckpt = read_checkpoint(path)
    ckpt["quality"] = quality
    torch.save(ckpt, path)
    return path
