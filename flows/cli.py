"""The ``dpflow`` command line (typer): demo, frontier, export, train, info, toy2d.

Every command exits 0 on success and otherwise prints one line ``error: <reason>`` and exits 1.
"""

from __future__ import annotations

import os

# Before Prefect is imported: no telemetry, and only warnings from its loggers on the console
# (the progress bar reports the work).
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
# A failed run's traceback stays out of the terminal: the CLI prints its one-line reason.
os.environ.setdefault("PREFECT_LOGGING_LOGGERS_PREFECT_FLOW_RUNS_LEVEL", "CRITICAL")
os.environ.setdefault("PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL", "CRITICAL")

import functools  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Annotated  # noqa: E402

import typer  # noqa: E402

app = typer.Typer(
    help="dpflow: distortion-perception frontiers of image denoising with one score model.\n\n"
    "Start with `dpflow demo`; then `dpflow frontier SOURCE --out OUT --add-noise 0.1` on your "
    "own images (a folder, a .npy/.npz file, a Zarr/OME-Zarr path or sample:NAME).",
    no_args_is_help=True, pretty_exceptions_enable=False,
)

DEMO_SOURCE = "sample:cells:32"
DEMO_MODEL = "sci-patches"


def fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def quiet_logs() -> None:
    """Dask's INFO chatter off; the engine's traceback of a failed run off (the CLI prints the
    one-line reason itself)."""
    import logging

    for name in ("distributed", "distributed.scheduler", "distributed.nanny", "distributed.core",
                 "distributed.http.proxy", "distributed.worker"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("prefect.flow_runs", "prefect.task_runs", "prefect.flow_engine",
                 "prefect.task_engine"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def cli_errors(fn):
    """At the edge: a ValueError (or a missing file) becomes ``error: ...`` and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        quiet_logs()
        try:
            return fn(*args, **kwargs)
        except (ValueError, FileNotFoundError, FileExistsError, PermissionError, OSError) as error:
            fail(str(error).strip().splitlines()[0] if str(error).strip() else repr(error))

    return wrapper


def parse_floats(text: str, name: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{name} must be comma-separated numbers; got {text!r}") from None
    if not values:
        raise ValueError(f"{name} is empty")
    return values


def run_frontier(**params) -> dict:
    """Run the frontier flow with a progress bar over chunks; print where the results are."""
    import logging

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from flows import progress
    from flows.frontier import check_out, make_config
    from flows.frontier import frontier as frontier_flow

    # Refuse bad parameters and unknown models before any flow run starts.
    make_config(**{k: v for k, v in params.items() if k not in (
        "out", "workers", "dask_address", "overwrite", "resume")})
    check_out(params["source"], params["out"])
    from tasks.common import get_denoiser

    get_denoiser(params["model"], "cpu")

    for name in ("distributed", "distributed.scheduler", "distributed.nanny", "distributed.core",
                 "distributed.http.proxy", "distributed.worker"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # The engine logs a failed run's traceback; the CLI prints its one-line reason instead.
    for name in ("prefect.flow_runs", "prefect.task_runs", "prefect.flow_engine",
                 "prefect.task_engine"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    start = time.perf_counter()
    with Progress(TextColumn("[bold]chunks"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), transient=False) as bar:
        job = bar.add_task("chunks", total=None)
        progress.set_hook(lambda done, total: bar.update(job, completed=done, total=total))
        try:
            result = frontier_flow(**params)
        finally:
            progress.set_hook(None)
    elapsed = time.perf_counter() - start
    if result["failed"]:
        first = next(iter(result["failed"].items()))
        typer.echo(f"warning: {len(result['failed'])} of {result['chunks']} chunks failed "
                   f"({first[0]}: {first[1]}); rerun with --resume to retry them", err=True)
    typer.echo(f"dataset: {result['frontier']}")
    typer.echo(f"report:  {Path(result['report']) / 'summary.md'}")
    typer.echo(f"done in {elapsed:.1f} s")
    if result["failed"]:
        raise typer.Exit(2)
    return result


@app.command()
@cli_errors
def frontier(
    source: Annotated[str, typer.Argument(help="A folder of images, a .npy/.npz file, a Zarr or "
                                          "OME-Zarr path, or sample:NAME.")],
    out: Annotated[Path, typer.Option("--out", help="Run directory: frontier.zarr, report/.")],
    sigma: Annotated[float | None, typer.Option(help="Known noise std ([0, 1] image units).")]
    = None,
    estimate_sigma: Annotated[bool, typer.Option("--estimate-sigma",
                                                 help="Estimate sigma per image.")] = False,
    add_noise: Annotated[float | None, typer.Option(
        help="Benchmark: SOURCE is clean; add seeded Gaussian noise of this std.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the added noise and of the sampler.")] = 0,
    lambdas: Annotated[str, typer.Option(help="Tradeoff grid in [0, 1] (lambda scales the "
                                         "noise VARIANCE).")] = "0,0.25,0.5,0.75,1",
    steps: Annotated[int, typer.Option(help="Sampler steps.")] = 20,
    model: Annotated[str, typer.Option(help="Shipped model name, checkpoint path, or "
                                       "gaussian:<prior.npz>.")] = DEMO_MODEL,
    chunk_size: Annotated[int | None, typer.Option(
        help="Images per chunk (unit of work). Default: from the image size, about 0.26M pixels x "
             "lambdas per chunk on CPU workers, 8M on GPU workers.")] = None,
    workers: Annotated[int | None, typer.Option(help="Local Dask workers (default: one per "
                                                "GPU, else half the cores).")] = None,
    dask_address: Annotated[str | None, typer.Option(help="Use this Dask scheduler instead.")]
    = None,
    methods: Annotated[str, typer.Option(help="Comma list of variance-scaled, k-average, "
                                         "interpolate.")] = "variance-scaled",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier run.")]
    = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run.")]
    = False,
    sure: Annotated[bool, typer.Option("--sure/--no-sure", help="Compute SURE (doubles the "
                                       "sampling cost).")] = True,
    keep_denoised: Annotated[bool, typer.Option(
        "--keep-denoised/--no-keep-denoised",
        help="Store the denoised images in the dataset (needed by export).")] = True,
) -> None:
    """Compute per-image and dataset distortion-perception frontiers of SOURCE.

    dpflow frontier SOURCE --out OUT [--sigma S | --estimate-sigma] [--add-noise S --seed N]
    [--lambdas 0,0.25,0.5,0.75,1] [--steps N] [--model NAME_OR_PATH] [--chunk-size K]
    [--workers N] [--dask-address ADDR] [--overwrite | --resume]
    """
    if sigma is not None and estimate_sigma:
        raise ValueError("give either --sigma or --estimate-sigma, not both")
    run_frontier(source=source, out=str(out), sigma=sigma, estimate_sigma=estimate_sigma,
                 add_noise=add_noise, seed=seed, lambdas=parse_floats(lambdas, "--lambdas"),
                 steps=steps, model=model, chunk_size=chunk_size,
                 methods=[m.strip() for m in methods.split(",") if m.strip()], workers=workers,
                 dask_address=dask_address, overwrite=overwrite, resume=resume, sure=sure,
                 keep_denoised=keep_denoised)


@app.command()
@cli_errors
def demo(
    out: Annotated[Path, typer.Option(help="Run directory.")] = Path("dpflow-demo"),
    workers: Annotated[int | None, typer.Option(help="Local Dask workers.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite/--keep",
                                            help="Replace an earlier demo run.")] = True,
) -> None:
    """Run the main job on built-in data: a few minutes on two CPU cores.

    32 held-out scientific image tiles (sample:cells:32) with seeded Gaussian noise of std 0.1,
    the shipped sci-patches model, lambdas 0..1, a local Dask cluster and a temporary Prefect
    API. Prints where the frontier dataset and the report are.
    """
    typer.echo(f"dpflow demo: {DEMO_SOURCE} + noise 0.1 -> {out}/")
    run_frontier(source=DEMO_SOURCE, out=str(out), sigma=None, estimate_sigma=False,
                 add_noise=0.1, seed=0, lambdas=[0.0, 0.25, 0.5, 0.75, 1.0], steps=20,
                 model=DEMO_MODEL, chunk_size=8, methods=["variance-scaled"],
                 workers=workers, dask_address=None, overwrite=overwrite, resume=False,
                 sure=True)


@app.command()
@cli_errors
def export(
    frontier: Annotated[Path, typer.Argument(help="A run directory or its frontier.zarr.")],
    out: Annotated[Path, typer.Option("--out", help="Output: x.zarr, x.ome.zarr or a folder "
                                      "(TIFF).")],
    lam: Annotated[float | None, typer.Option("--lambda", help="Fixed lambda of the grid.")]
    = None,
    budget: Annotated[float | None, typer.Option(help="Per image, the largest lambda whose "
                                                 "(estimated) MSE is at most this.")] = None,
    knee: Annotated[bool, typer.Option("--knee", help="The knee of the dataset curve "
                                       "(default).")] = False,
    method: Annotated[str | None, typer.Option(help="Method, for multi-method runs.")] = None,
    format: Annotated[str | None, typer.Option(help="zarr, ome-zarr or tiff (default: from "
                                               "--out).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite")] = False,
) -> None:
    """Export the denoised archive at an operating point, in the original dtype and range."""
    from flows.export import export_flow

    chosen = [p for p in (lam is not None, budget is not None, knee) if p]
    if len(chosen) > 1:
        raise ValueError("give one of --lambda, --budget, --knee")
    point = (f"lambda={lam}" if lam is not None else f"budget={budget}" if budget is not None
             else "knee")
    frontier_path = frontier / "frontier.zarr" if (frontier / "frontier.zarr").exists() \
        else frontier
    path = export_flow(frontier=str(frontier_path), out=str(out), point=point, method=method,
                       format=format, overwrite=overwrite)
    typer.echo(f"exported: {path}")


@app.command()
@cli_errors
def train(
    source: Annotated[str, typer.Argument(help="Clean training data: sample:NAME, a folder, "
                                          "a .npy file, or a 2-D toy name.")],
    out: Annotated[Path, typer.Option("--out", help="Checkpoint file (.pt).")],
    arch: Annotated[str | None, typer.Option(help="unet or mlp (default: from the data).")]
    = None,
    steps: Annotated[int, typer.Option(help="Optimiser steps.")] = 2000,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 64,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT's state.")] = False,
) -> None:
    """Train a denoiser (score model) on a clean collection."""
    from flows.train import train_flow

    path = train_flow(source=source, out=str(out), arch=arch, steps=steps,
                      batch_size=batch_size, seed=seed, resume=resume)
    typer.echo(f"checkpoint: {path}")


@app.command()
@cli_errors
def info(
    models: Annotated[bool, typer.Option("--models", help="List the shipped models.")] = False,
) -> None:
    """Versions, shipped models and built-in sample collections."""
    import importlib.metadata as md

    for name in ("dpflow", "torch", "prefect", "dask", "xarray", "zarr"):
        try:
            typer.echo(f"{name} {md.version(name)}")
        except md.PackageNotFoundError:
            typer.echo(f"{name} (not installed)")
    from data.checkpoints import list_models

    rows = list_models()
    if models:
        for row in rows:
            typer.echo(f"model {row['name']}: {row['arch']}, {row['channels']} channel(s), "
                       f"{row['parameters']:,} parameters, {row['size_mb']} MB; "
                       f"{row.get('summary') or 'quality not measured'}")
            typer.echo(f"    data: {row['data']}; card: {row['card']}")
    else:
        typer.echo("models: " + ", ".join(r["name"] for r in rows))
    try:
        from data.samples import list_samples

        for name, text in list_samples().items():
            typer.echo(f"sample:{name}  {text}")
    except ImportError:
        pass


@app.command()
@cli_errors
def toy2d(out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("toy2d")
          ) -> None:
    """The 2-D experiment (pinwheel, S-curve, moons): exact DP curves vs the sampler."""
    try:
        from flows.toy2d import run
    except ImportError:
        raise ValueError("flows/toy2d.py is not available in this installation") from None
    result = run(Path(out))
    typer.echo(f"toy2d: {result if result is not None else out}")


if __name__ == "__main__":
    app()
