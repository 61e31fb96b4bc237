"""The report next to a frontier dataset: PNG figures (matplotlib, Agg) and a Markdown summary.

- ``dp_curve.png``: dataset distortion against lambda (with the closed form when the model is an
  analytic Gaussian prior) and the dataset distortion-perception curve of each method;
- ``image_frontiers.png``: a panel of per-image frontiers, Pareto-optimal lambdas filled, methods
  overlaid;
- ``lambda_grid.png``: a few images across lambda (noisy and clean alongside when known);
- ``summary.md``: what ran, on what, the dataset curve as a table, skipped images.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

MAX_PANEL = 12
MAX_GRID = 4


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _methods(ds: xr.Dataset) -> list[tuple[str, xr.Dataset]]:
    if "method" in ds.dims:
        return [(str(m), ds.isel(method=i)) for i, m in enumerate(ds.method.values)]
    return [(str(ds.method.values), ds)]


def distortion_name(ds: xr.Dataset) -> str:
    return "mse" if "mse" in ds else "sure_mse"


def theory_curve(ds: xr.Dataset) -> np.ndarray | None:
    """Closed-form per-pixel MSE over lam for an analytic Gaussian model with one sigma."""
    model = json.loads(ds.attrs.get("model", "{}"))
    spec = model.get("spec", "")
    sigmas = np.unique(ds.sigma.values[np.isfinite(ds.sigma.values)])
    if not spec.startswith("gaussian:") or len(sigmas) != 1:
        return None
    from data.analytic import expected_mse

    return expected_mse(spec, float(sigmas[0]), ds.lam.values)


def plot_dp_curve(ds: xr.Dataset, path: Path) -> Path:
    plt = _pyplot()
    dist = distortion_name(ds)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for name, sub in _methods(ds):
        curve = sub[f"dataset_{dist}"].values
        ax1.plot(ds.lam.values, curve, "o-", label=name)
        ax2.plot(sub["dataset_perception"].values, curve, "o-", label=name)
        for lam, p, d in zip(ds.lam.values, sub["dataset_perception"].values, curve, strict=True):
            ax2.annotate(f"{lam:g}", (p, d), fontsize=7, textcoords="offset points", xytext=(3, 3))
    theory = theory_curve(ds)
    if theory is not None:
        ax1.plot(ds.lam.values, theory, "k--", label="theory (1 + lambda) tr S_y / d")
    ax1.set(xlabel="lambda (variance scale)", ylabel=f"mean {dist}", title="distortion vs lambda")
    ax2.set(xlabel="mean perception index (lower is better)", ylabel=f"mean {dist}",
            title="dataset distortion-perception curve")
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_image_frontiers(ds: xr.Dataset, path: Path) -> Path:
    plt = _pyplot()
    dist = distortion_name(ds)
    good = np.flatnonzero(ds.skip_reason.values == "")[:MAX_PANEL]
    cols = min(4, max(1, len(good)))
    rows = max(1, -(-len(good) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.flat[len(good):]:
        ax.axis("off")
    for ax, i in zip(axes.flat, good, strict=False):
        for name, sub in _methods(ds):
            d = sub[dist].isel(image=i).values
            p = sub["perception"].isel(image=i).values
            on = sub["on_frontier"].isel(image=i).values.astype(bool)
            line = ax.plot(p, d, "-", lw=1, label=name)[0]
            ax.plot(p[on], d[on], "o", color=line.get_color(), ms=4)
            ax.plot(p[~on], d[~on], "o", mfc="none", color=line.get_color(), ms=4)
            for j in (0, len(p) - 1):  # which end is lambda = 0
                if np.isfinite(p[j]) and np.isfinite(d[j]):
                    ax.annotate(f"{ds.lam.values[j]:g}", (p[j], d[j]), fontsize=6,
                                textcoords="offset points", xytext=(2, 2))
        ax.set_title(str(ds.id.values[i]), fontsize=8)
        ax.tick_params(labelsize=6)
    axes.flat[0].legend(fontsize=6)
    fig.supxlabel("perception index (filled: Pareto-optimal lambda; labels: grid ends)")
    fig.supylabel(dist)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_lambda_grid(ds: xr.Dataset, path: Path, noisy: dict | None = None,
                     clean: dict | None = None) -> Path:
    """Rows: a few images; columns: noisy, each lambda (first method), clean."""
    plt = _pyplot()
    from data.frontier import denoised_of

    noisy, clean = noisy or {}, clean or {}
    good = np.flatnonzero(ds.skip_reason.values == "")[:MAX_GRID]
    L = ds.sizes["lam"]
    cols = L + bool(noisy) + bool(clean)
    fig, axes = plt.subplots(max(1, len(good)), cols, figsize=(1.8 * cols, 1.9 * max(1, len(good))),
                             squeeze=False)
    for r, i in enumerate(good):
        images = denoised_of(ds, int(i))
        if "method" in images.dims:
            images = images.isel(method=0)
        key = int(ds["index"].values[i])
        panels = ([("noisy", noisy[key])] if key in noisy else [])
        panels += [(f"lambda={lam:g}", images.isel(lam=l).values) for l, lam in
                   enumerate(ds.lam.values)]
        panels += ([("clean", clean[key])] if key in clean else [])
        for c, (title, img) in enumerate(panels):
            img = np.asarray(img)
            ax = axes[r, c]
            shown = img[0] if img.shape[0] == 1 else np.moveaxis(img[:3], 0, -1)
            ax.imshow(np.clip(shown, 0, 1), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=8)
        axes[r, 0].set_ylabel(str(ds.id.values[i]), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def summary_markdown(ds: xr.Dataset, figures: list[Path]) -> str:
    config = json.loads(ds.attrs["config"])
    model = json.loads(ds.attrs.get("model", "{}"))
    dist = distortion_name(ds)
    skipped = [(str(ds.id.values[i]), str(r)) for i, r in enumerate(ds.skip_reason.values) if r]
    skipped += [(s.get("id", "?"), s.get("reason", "?"))
                for s in json.loads(ds.attrs.get("skipped_inputs", "[]"))]
    lines = [
        "# Distortion-perception frontier", "",
        f"- source: `{config['source']}`; {ds.sizes['image']} images "
        f"({len(skipped)} skipped); sigma {np.nanmin(ds.sigma.values):.4g}"
        f"..{np.nanmax(ds.sigma.values):.4g}",
        f"- model: `{model.get('name')}` (sha256 {str(model.get('sha256'))[:12]}); "
        f"{config['steps']} steps; seed {config['seed']}",
        f"- lambda: {ds.attrs['lambda_convention']}",
        f"- distortion: `{dist}`; perception: {ds.attrs.get('perception_definition')}", "",
        f"| method | lambda | mean {dist} | mean perception | images on frontier |",
        "|---|---|---|---|---|",
    ]
    theory = theory_curve(ds)
    for name, sub in _methods(ds):
        for l, lam in enumerate(ds.lam.values):
            on = int(sub["on_frontier"].isel(lam=l).sum())
            lines.append(f"| {name} | {lam:g} | {float(sub[f'dataset_{dist}'][l]):.5g} | "
                         f"{float(sub['dataset_perception'][l]):.4g} | {on} |")
    if theory is not None:
        lines += ["", "Closed form (analytic Gaussian prior), mean MSE per lambda: "
                  + ", ".join(f"{lam:g}: {t:.5g}" for lam, t in zip(ds.lam.values, theory,
                                                                    strict=True))]
    if skipped:
        lines += ["", "## Skipped", ""] + [f"- `{i}`: {r}" for i, r in skipped]
    failed = json.loads(ds.attrs.get("failed_chunks", "{}"))
    if failed:
        lines += ["", "## Failed chunks (rerun with --resume)", ""] + [
            f"- {k}: {v}" for k, v in failed.items()]
    lines += ["", "## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figures]
    return "\n".join(lines) + "\n"


def make_report(frontier_path: str | Path, out_dir: str | Path, *, noisy: dict | None = None,
                clean: dict | None = None) -> Path:
    """Write the figures and ``summary.md`` for the dataset at ``frontier_path``."""
    from data.frontier import load_frontier

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ds = load_frontier(frontier_path)
    figures = [plot_dp_curve(ds, out_dir / "dp_curve.png"),
               plot_image_frontiers(ds, out_dir / "image_frontiers.png")]
    if "denoised" in ds:
        figures.append(plot_lambda_grid(ds, out_dir / "lambda_grid.png", noisy, clean))
    (out_dir / "summary.md").write_text(summary_markdown(ds, figures))
    return out_dir
