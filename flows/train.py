"""The train flow: fit a score model (data/train_model.py) as a Prefect run, resumable."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NONE


@task(name="train-model", cache_policy=NONE)
def train_model_task(source: str, arch: str | None, out: str, steps: int, batch_size: int,
                     seed: int, resume: bool, device: str) -> str:
    """Train (or resume training) and write the checkpoint; returns its path."""
    from data.train_model import train_model

    return str(train_model(source, arch=arch, out=Path(out), steps=steps, batch_size=batch_size,
                           seed=seed, resume=resume, device=device))


@flow(name="train")
def train_flow(
    source: str,
    out: str,
    arch: str | None = None,
    steps: int = 2000,
    batch_size: int = 64,
    seed: int = 0,
    resume: bool = False,
    device: str = "auto",
) -> str:
    """Train a denoiser on a clean collection (``sample:NAME``, a folder, a .npy file)."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    # Train: one long task; the trainer checkpoints, so --resume continues after a kill.
    return train_model_task(source, arch, out, steps, batch_size, seed, resume, device)


if __name__ == "__main__":
    import sys

    train_flow(source=sys.argv[1], out=sys.argv[2])
