"""Figure of the 2-D experiment: one panel per prior, MSE against conditional W2 for every
traversal, averaged over the measurements."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

STYLES = {"variance-scaled": ("C0", "o-"), "k-average": ("C1", "s--"),
          "interpolate": ("C2", "^:"), "tweedie": ("C3", "*")}


def plot_dp2d(table: pd.DataFrame, path: Path, *,
              gaussian_curve: dict[str, np.ndarray] | None = None) -> Path:
    """Write the DP-plane panels of ``table`` (rows from flows.toy2d) to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    priors = list(dict.fromkeys(table["prior"]))
    fig, axes = plt.subplots(1, len(priors), figsize=(3.6 * len(priors), 3.4), squeeze=False)
    for ax, prior in zip(axes[0], priors):
        rows = (table[table["prior"] == prior]
                .groupby(["method", "knob"], as_index=False)[["mse", "w2", "w2_floor", "sigma_y"]]
                .mean())
        for method, (color, style) in STYLES.items():
            part = rows[rows["method"] == method]
            ax.plot(part["w2"], part["mse"], style, color=color, ms=4, label=method)
        if prior == "gaussian" and gaussian_curve is not None:
            ax.plot(gaussian_curve["w2"], gaussian_curve["mse"], "k-", lw=1,
                    label="optimal conditional D(P)")
        ax.axvline(rows["w2_floor"].iloc[0], color="0.6", lw=0.8, ls="--", label="W2 floor")
        ax.set_title(f"{prior} (sigma_y={rows['sigma_y'].iloc[0]})")
        ax.set_xlabel("W2 to the exact posterior (perception)")
        ax.set_ylabel("MSE  E||xhat - x||^2 (distortion)")
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
