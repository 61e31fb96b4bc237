"""Shared plumbing of the performance benchmarks: JSON lines, machine facts, interleaved timing.

The machines these run on are shared, so every comparison is made side by side: the variants
of one measurement are run in turn, round after round, and each reports its median round.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import date
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
DATE = "2026-11-27"  # the date stamped on this round of result files


def results_path(name: str, device: str) -> Path:
    """``benchmarks/results/perf-<name>-<device>-<date>.jsonl``."""
    return RESULTS / f"perf-{name}-{device}-{DATE}.jsonl"


def load_average() -> float:
    """The 1-minute load average (0.0 where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return 0.0


def machine() -> dict:
    """Processor model, core count and torch version: the facts a figure needs beside it."""
    import torch

    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": model, "cores": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


class Emitter:
    """Prints one JSON line per measurement and appends it to a results file."""

    def __init__(self, path: Path | None, bench: str):
        self.path, self.bench = path, bench
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, **record) -> dict:
        row = {"bench": self.bench, **record, "load_avg": load_average(),
               "date": date.today().isoformat()}
        line = json.dumps(row, default=_plain)
        print(line, flush=True)
        if self.path is not None:
            with self.path.open("a") as f:
                f.write(line + "\n")
        return row


def _plain(value):
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def interleaved(variants: dict[str, Callable[[], object]], *, rounds: int,
                sync: Callable[[], None] | None = None, warmup: int = 1) -> dict[str, dict]:
    """Time each variant once per round, in turn (so load drifts hit all alike); per variant the
    median, min and max seconds over the rounds, and the load average seen during them."""
    sync = sync or (lambda: None)
    for _ in range(warmup):
        for fn in variants.values():
            fn()
        sync()
    times: dict[str, list[float]] = {name: [] for name in variants}
    loads = []
    for _ in range(rounds):
        for name, fn in variants.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
        loads.append(load_average())
    return {name: {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t),
                   "rounds": len(t), "load_avg_during": round(statistics.mean(loads), 2)}
            for name, t in times.items()}


def tree_rss(root) -> tuple[int, int]:
    """(RSS of ``root``, summed RSS of ``root`` and all its descendants), in bytes."""
    import psutil

    own, total = 0, 0
    try:
        own = root.memory_info().rss
        total = own
        for child in root.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return own, total


def run_monitored(cmd: list[str], *, env: dict | None = None, interval: float = 0.2,
                  cwd: Path | None = None) -> dict:
    """Run ``cmd``, sampling the RSS of it and its descendants (workers, API server) every
    ``interval`` s. Wall seconds, exit code, peak RSS of the process and of the whole tree, the
    last stdout line (for commands that print a JSON summary)."""
    import subprocess

    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    root = psutil.Process(proc.pid)
    peak_own = peak_tree = 0
    while proc.poll() is None:
        own, total = tree_rss(root)
        peak_own, peak_tree = max(peak_own, own), max(peak_tree, total)
        time.sleep(interval)
    wall = time.perf_counter() - start
    out, err = proc.communicate()
    lines = [line for line in out.splitlines() if line.strip()]
    return {"wall_s": round(wall, 3), "rc": proc.returncode,
            "peak_rss_process_mb": round(peak_own / 2**20, 1),
            "peak_rss_tree_mb": round(peak_tree / 2**20, 1),
            "last_line": lines[-1] if lines else "", "stderr_tail": err[-400:]}


def make_source(path: Path, images: int, side: int = 16) -> Path:
    """A .npy stack ``(images, 1, side, side)`` uint8 of Fashion-MNIST test images (32x32,
    average-pooled to ``side``): a collection of any size up to 10000 small images."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from data.samples import sample_collection

    if not path.exists():
        x = torch.from_numpy(np.stack([r.array for r in
                                       sample_collection(f"sample:fashion-mnist:{images}")]))
        if side != x.shape[-1]:
            x = F.adaptive_avg_pool2d(x, side)
        np.save(path, (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy())
    return path


@contextmanager
def persistent_api(env: dict, *, timeout: float = 180):
    """A ``prefect server start`` on a free loopback port for the block's duration; yields the
    environment with ``PREFECT_API_URL`` pointing at it (what a lab box or a cluster runs once)."""
    import signal
    import socket
    import subprocess
    import sys
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api"
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1",
         "--port", str(port), "--no-ui"], env=dict(env, PREFECT_SERVER_UI_ENABLED="false"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"prefect server on port {port} did not come up") from None
                time.sleep(0.5)
        yield dict(env, PREFECT_API_URL=url)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
