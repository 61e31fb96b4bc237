"""Pipeline overhead: ``dpflow frontier`` end to end against the sampler called directly on the
same images, grid, model, steps and chunks.

Both sides include the per-image metrics the flow computes (mse, psnr, ssim, perception index;
SURE is off in both: ``--no-sure``), so the ratio is orchestration + storage + report against
the maths; the sampler-only time of the direct side is reported too. Each side runs as its own
process (fresh interpreter, RSS of it and its children sampled every 0.2 s).

The fixed start-up (imports, Prefect API start, Dask cluster start, model load) is measured as
a run on one small chunk, and in its parts, and once more against a running API server
(``prefect server start``, PREFECT_API_URL); the overhead beyond it is

    (T_flow(N) - T_flow(one chunk)) / (T_direct(N) - T_direct(one chunk)) - 1

    python benchmarks/pipeline_overhead.py            # 1000 and 4000 images, 16x16 Fashion-MNIST
    python benchmarks/pipeline_overhead.py direct --source X.npy   # one direct run, JSON summary
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from contextlib import ExitStack, nullcontext
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._common import (  # noqa: E402
    Emitter,
    machine,
    make_source,
    persistent_api,
    results_path,
    run_monitored,
)

DEFAULTS = {"model": "fashion-mnist", "side": 16, "lambdas": "0,0.5,1", "steps": 4,
            "chunk_size": None, "add_noise": 0.1, "seed": 0}  # chunk_size None: the flow's automatic


def commit() -> str:
    """The code's git commit (with ``+`` when the tree has changes), for the results' provenance."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    return git("rev-parse", "--short", "HEAD") + ("+" if git("status", "--porcelain", "-uno") else "")


def source(tmp: Path, images: int) -> Path:
    """The run's input: the first ``images`` Fashion-MNIST test images pooled to 16x16, .npy."""
    return make_source(tmp / f"fashion{DEFAULTS['side']}-{images}.npy", images, DEFAULTS["side"])


def bench_env(prefect_home: Path) -> dict:
    """Environment of every run: one torch thread, quiet Prefect, an isolated PREFECT_HOME."""
    env = dict(os.environ, PREFECT_HOME=str(prefect_home), PREFECT_LOGGING_LEVEL="WARNING",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", DPFLOW_TORCH_THREADS="1",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PYTHONPATH=str(REPO),
               # the 20 s default is too short for a loaded 2-core machine
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180")
    env.pop("PREFECT_API_URL", None)  # each run starts its own temporary API, as a user's would
    return env


def flow_cmd(src: Path, out: Path, *, workers: int = 1, lambdas: str | None = None,
             steps: int | None = None, chunk_size: int | None = None) -> list[str]:
    """The ``dpflow frontier`` command line of one run."""
    return [str(REPO / ".venv/bin/dpflow"), "frontier",
            str(src), "--out", str(out),
            "--add-noise", str(DEFAULTS["add_noise"]), "--seed", str(DEFAULTS["seed"]),
            "--model", DEFAULTS["model"], "--lambdas", lambdas or DEFAULTS["lambdas"],
            "--steps", str(steps or DEFAULTS["steps"]),
            *(["--chunk-size", str(chunk_size)] if chunk_size else []),
            "--workers", str(workers), "--no-sure", "--overwrite"]


def direct_cmd(src: Path, *, lambdas: str | None = None, steps: int | None = None,
               chunk_size: int | None = None, metrics: bool = True) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "direct", "--source", str(src),
           "--lambdas", lambdas or DEFAULTS["lambdas"], "--steps", str(steps or DEFAULTS["steps"]),
           *(["--chunk-size", str(chunk_size)] if chunk_size else [])]
    return cmd if metrics else [*cmd, "--no-metrics"]


def direct(src: Path, lambdas: list[float], steps: int, chunk_size: int | None,
           metrics: bool) -> dict:
    """The work of the flow without the flow: read, add the same seeded noise, sample each chunk
    (same seed and sample ids), compute the same per-image metrics. Seconds per phase."""
    t0 = time.perf_counter()
    import numpy as np
    import torch

    from data.checkpoints import load_denoiser
    from dpcore import metrics as M
    from dpcore.sampler import variance_scaled_denoise

    torch.set_num_threads(1)
    t_import = time.perf_counter()
    clean = torch.from_numpy(np.load(src).astype(np.float32) / 255)
    images = clean.shape[0]
    noisy = clean + DEFAULTS["add_noise"] * torch.randn(
        clean.shape, generator=torch.Generator().manual_seed(DEFAULTS["seed"]))
    t_read = time.perf_counter()
    model = load_denoiser(DEFAULTS["model"])
    t_model = time.perf_counter()
    if not chunk_size:  # the flow's automatic size on CPU workers
        from data.store import auto_chunk_size
        from tasks.common import RunConfig, chunk_pixels

        config = RunConfig(source=str(src), lambdas=tuple(lambdas))
        chunk_size = auto_chunk_size(clean.shape[1:], chunk_pixels(config, gpu=False))
    sample_s = metric_s = 0.0
    for start in range(0, images, chunk_size):
        y, ref = noisy[start:start + chunk_size], clean[start:start + chunk_size]
        ids = torch.arange(start, start + y.shape[0])
        t = time.perf_counter()
        x = variance_scaled_denoise(model, y, DEFAULTS["add_noise"], lambdas, steps=steps,
                                    seed=DEFAULTS["seed"], sample_ids=ids)
        sample_s += time.perf_counter() - t
        t = time.perf_counter()
        if metrics:
            M.perception_index(x, ref, seed=DEFAULTS["seed"])
            for xl in x:
                M.mse(xl, ref), M.psnr(xl, ref), M.ssim(xl, ref)
        metric_s += time.perf_counter() - t
    return {"chunk_size": chunk_size, "import_s": t_import - t0, "read_s": t_read - t_import,
            "model_load_s": t_model - t_read, "sample_s": sample_s, "metrics_s": metric_s,
            "total_s": time.perf_counter() - t0}


def startup_parts(env: dict) -> dict:
    """The parts of the fixed start-up, each timed in a fresh interpreter (imports before the
    clock starts, except in ``import_cli_s``). The cluster is started against a placeholder
    API address, so that its time excludes the API server's."""
    setup = {
        "import_cli_s": ("", "import flows.cli, flows.frontier", ""),
        "prefect_api_start_s": ("from prefect.server.api.server import SubprocessASGIServer",
                                "s = SubprocessASGIServer(); s.start()", "s.stop()"),
        "dask_cluster_start_s": ("import distributed\nfrom flows.cluster import local_cluster",
                                 "c = local_cluster(1); cl = distributed.Client(c); "
                                 "cl.wait_for_workers(1)", "cl.close(); c.close()"),
        "model_load_s": ("import torch\nfrom data.checkpoints import load_denoiser",
                         f"load_denoiser({DEFAULTS['model']!r})", ""),
    }
    parts = {}
    for key, (imports, code, teardown) in setup.items():
        timed = f"import time\n{imports}\nt = time.perf_counter()\n{code}\n" \
                f"print(time.perf_counter() - t, flush=True)\n{teardown}"
        run_env = dict(env, PREFECT_API_URL="http://127.0.0.1:9/api") \
            if key == "dask_cluster_start_s" else env
        run = run_monitored([sys.executable, "-c", timed], env=run_env)
        try:
            parts[key] = round(float(run["last_line"].split()[-1]), 3)
        except ValueError:
            parts[key] = None
            parts[key.replace("_s", "_error")] = run["stderr_tail"][-200:]
    return parts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="compare", choices=["compare", "direct", "startup"])
    parser.add_argument("--images", type=int, nargs="+", default=[1000, 4000])
    parser.add_argument("--source", type=Path, help="direct mode: the .npy input")
    parser.add_argument("--small", type=int, default=128, help="one-chunk run: the start-up")
    parser.add_argument("--lambdas", default=DEFAULTS["lambdas"])
    parser.add_argument("--steps", type=int, default=DEFAULTS["steps"])
    parser.add_argument("--chunk-size", type=int, default=DEFAULTS["chunk_size"],
                        help="images per chunk (default: the flow's automatic size)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--no-metrics", action="store_true")
    parser.add_argument("--persistent-api", action="store_true",
                        help="every flow run against one running `prefect server` (removes the "
                             "ephemeral API's 10-28 s start, the noisiest part of the start-up)")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    if args.mode == "startup":
        with tempfile.TemporaryDirectory(prefix="dpflow-bench-") as tmp:
            env = bench_env(Path(tmp) / "prefect")
            Emitter(None if args.no_save else results_path("pipeline", "cpu"),
                    "pipeline_overhead")(kind="startup_parts", **startup_parts(env), **machine())
        return
    if args.mode == "direct":
        lambdas = [float(v) for v in args.lambdas.split(",")]
        print(json.dumps(direct(args.source, lambdas, args.steps, args.chunk_size,
                                not args.no_metrics)))
        return
    emit = Emitter(None if args.no_save else results_path("pipeline", "cpu"), "pipeline_overhead")
    settings = dict(source=f"fashion-mnist test images pooled to {DEFAULTS['side']}x"
                    f"{DEFAULTS['side']} (.npy)", model=DEFAULTS["model"], lambdas=args.lambdas,
                    steps=args.steps, chunk_size=args.chunk_size or "auto", workers=args.workers,
                    sure=False, metrics_included=True, commit=commit(),
                    api="persistent" if args.persistent_api else "ephemeral")
    with tempfile.TemporaryDirectory(prefix="dpflow-bench-") as tmp, ExitStack() as stack:
        env = bench_env(Path(tmp) / "prefect")
        emit(kind="startup_parts", **startup_parts(env), **machine())
        if args.persistent_api:
            env = stack.enter_context(persistent_api(env))
        runs = {}
        # Interleaved: flow then direct at each size, the one-chunk run first.
        for n in [args.small, *args.images]:
            kw = dict(lambdas=args.lambdas, steps=args.steps, chunk_size=args.chunk_size)
            src = source(Path(tmp), n)
            f = run_monitored(flow_cmd(src, Path(tmp) / f"run-{n}", workers=args.workers, **kw),
                              env=env)
            d = run_monitored(direct_cmd(src, **kw), env=env)
            phases = json.loads(d["last_line"]) if d["rc"] == 0 else {}
            runs[n] = (f, d, phases)
            emit(kind="run", images=n, **settings, flow_wall_s=f["wall_s"], flow_rc=f["rc"],
                 flow_peak_rss_tree_mb=f["peak_rss_tree_mb"], direct_wall_s=d["wall_s"],
                 direct_peak_rss_mb=d["peak_rss_tree_mb"],
                 direct_phases={k: round(v, 3) for k, v in phases.items()},
                 flow_stderr=f["stderr_tail"] if f["rc"] else "")
        # The same one-chunk run against a running API server (``prefect server start`` once,
        # PREFECT_API_URL exported): the start-up without the temporary API's.
        with persistent_api(env) if not args.persistent_api else nullcontext(env) as api_env:
            src = source(Path(tmp), args.small)
            kw = dict(lambdas=args.lambdas, steps=args.steps, chunk_size=args.chunk_size)
            f = run_monitored(flow_cmd(src, Path(tmp) / "run-api", workers=args.workers, **kw),
                              env=api_env)
            emit(kind="startup_persistent_api", images=args.small, **settings,
                 flow_wall_s=f["wall_s"], flow_rc=f["rc"],
                 ephemeral_api_flow_wall_s=runs[args.small][0]["wall_s"],
                 flow_stderr=f["stderr_tail"] if f["rc"] else "")
        f0, d0, p0 = runs[args.small]
        for n in args.images:
            f, d, p = runs[n]
            flow_work = f["wall_s"] - f0["wall_s"]
            direct_work = d["wall_s"] - d0["wall_s"]
            sampler_work = p.get("sample_s", 0) - p0.get("sample_s", 0)
            emit(kind="overhead", images=n, **settings,
                 fixed_startup_flow_s=f0["wall_s"], fixed_startup_direct_s=d0["wall_s"],
                 flow_beyond_startup_s=round(flow_work, 2),
                 direct_beyond_startup_s=round(direct_work, 2),
                 overhead_pct=round(100 * (flow_work / direct_work - 1), 1),
                 overhead_vs_sampler_only_pct=round(100 * (flow_work / sampler_work - 1), 1)
                 if sampler_work > 0 else None)


if __name__ == "__main__":
    main()
