"""What the pipeline's tasks share: the run configuration, the run directory's layout, the model
cache of each worker process, and atomic writes of chunk results."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

METHODS = ("variance-scaled", "k-average", "interpolate")
K_MAX = 16  # the largest K of the k-average baseline (lambda < 1/16 uses it too, lambda = 0 aside)
STORE = "store.zarr"
WORK = ".work"
FRONTIER = "frontier.zarr"
REPORT = "report"
RUN_JSON = "run.json"


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a frontier run's numbers (and nothing that does not, such as
    the worker count). Stored as JSON in the run directory and in the dataset's attrs."""

    source: str
    lambdas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    steps: int = 20
    model: str = "sci-patches"
    seed: int = 0
    chunk_size: int | None = None  # None: automatic, from the image shape (chunk_pixels)
    sigma: float | None = None
    estimate_sigma: bool = False
    add_noise: float | None = None
    methods: tuple[str, ...] = ("variance-scaled",)
    sure: bool = True
    keep_denoised: bool = True
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        raw = json.loads(text)
        raw["lambdas"] = tuple(raw["lambdas"])
        raw["methods"] = tuple(raw["methods"])
        return cls(**raw)

    def numeric_key(self) -> dict:
        """The fields a resumed run must share with the interrupted one."""
        raw = dataclasses.asdict(self)
        return {k: v for k, v in raw.items() if k != "extra"}


# Pixel-rows of one sampler batch (images x lambdas x methods x pixels) under the automatic chunk
# size. CPU: 2**18, e.g. 1024 rows of 16x16 (341 images at 3 lambdas, 204 at 5): 4-20 s of work
# at 4-20 steps, so the ~0.3 s a Prefect task run costs is 1-7%. Larger CPU batches are slower per
# image (same process, 1228 16x16 images at 5 lambdas: chunks of 48-204 take 13.5-15.5 s, 409
# take 18.5 s, 1228 take 29.2 s): their activations pass glibc's 32 MiB mmap ceiling, so each is
# mapped afresh (page faults). GPU: 2**23, 8192 rows of 32x32 (1638 images at 5 lambdas), about
# 16 GB of activations for the shipped UNets in fp32. --chunk-size overrides it.
CHUNK_ROW_PIXELS = {"cpu": 2**18, "gpu": 2**23}


def chunk_pixels(config: RunConfig, gpu: bool) -> int:
    """Image pixels per chunk for the automatic chunk size: a chunk is one sampler batch of
    ``len(lambdas) * len(methods)`` rows per image."""
    rows_per_image = len(config.lambdas) * len(config.methods)
    return max(1, CHUNK_ROW_PIXELS["gpu" if gpu else "cpu"] // rows_per_image)


def check_config(config: RunConfig) -> RunConfig:
    """Refuse bad parameters at once, with one line each."""
    from data.store import check_sigma
    from dpcore.sampler import check_lambdas

    check_lambdas(list(config.lambdas))
    if config.steps < 1:
        raise ValueError(f"steps must be >= 1; got {config.steps}")
    if config.chunk_size is not None and config.chunk_size < 1:
        raise ValueError(f"chunk size must be >= 1; got {config.chunk_size}")
    if config.sigma is not None:
        check_sigma(config.sigma, "sigma")
    if config.add_noise is not None:
        check_sigma(config.add_noise, "--add-noise")
    if config.sigma is not None and config.estimate_sigma:
        raise ValueError("give either --sigma or --estimate-sigma, not both")
    for m in config.methods:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    if len(set(config.methods)) != len(config.methods) or not config.methods:
        raise ValueError(f"methods must be a non-empty list without repeats; got {config.methods}")
    return config


def retry_io_errors(task, task_run, state) -> bool:
    """Retry condition of the I/O tasks: retry a transient OSError, never a ValueError (bad
    input or parameters stay bad)."""
    try:
        state.result()
    except ValueError:
        return False
    except OSError:
        return True
    except Exception:
        return False
    return False


def chunk_name(group: str, chunk_index: int) -> str:
    return f"{group}-chunk-{chunk_index:05d}"


def atomic_savez(path: Path, **arrays: np.ndarray) -> Path:
    """Write ``path`` (.npz) so that it either exists complete or not at all (tmp + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def device_name() -> str:
    """The worker's GPU when it has one (CUDA_VISIBLE_DEVICES pins one per worker), else CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


_MODELS: dict[tuple[str, str], object] = {}


def get_denoiser(spec: str, device: str, expect_channels: int | None = None):
    """The model of ``spec`` on ``device``, loaded once per worker process (cached by spec and
    device). ``gaussian:<file.npz>`` is an analytic prior (data/analytic.py); anything else goes
    to ``data.checkpoints.load_denoiser`` (a shipped name or a checkpoint path)."""
    key = (spec, device)
    if key not in _MODELS:
        if spec.startswith("gaussian:"):
            from data.analytic import AnalyticDenoiser

            _MODELS[key] = AnalyticDenoiser(spec)
        else:
            from data.checkpoints import load_denoiser

            _MODELS[key] = load_denoiser(spec, device=device)
    model = _MODELS[key]
    if expect_channels is not None and model.channels != expect_channels:
        raise ValueError(f"model {spec!r} expects {model.channels} channel(s) but the data has "
                         f"{expect_channels}")
    return model


def model_identity(spec: str) -> dict:
    """Name and sha256 of the model a run used (for the dataset's provenance attrs)."""
    model = get_denoiser(spec, "cpu")
    meta = dict(getattr(model, "meta", {}) or {})
    if spec.startswith("gaussian:"):
        digest, path = meta["sha256"], meta["path"]
    else:
        from data.checkpoints import resolve

        path = resolve(spec)
        digest = file_sha256(path)
    keep = {k: v for k, v in meta.items() if isinstance(v, str | int | float | bool)}
    return {"spec": spec, "name": getattr(model, "name", spec), "sha256": digest,
            "path": str(path), "channels": int(model.channels), "meta": keep}
