"""Scaling and memory of ``dpflow frontier``: wall time against the number of images and the
grid size (least-squares line and its R^2), peak RSS of the flow process and of its whole tree
(flow, Prefect API server, Dask workers; sampled every 0.2 s) at each size, and 2 Dask workers
against 1.

Same settings as benchmarks/pipeline_overhead.py (16x16 Fashion-MNIST test images, the
fashion-mnist model, steps 4, chunks of 128, metrics on, SURE off, one torch thread per worker).

    python benchmarks/scaling.py [--images 500 1000 2000 4000] [--grid 2 4 8] [--grid-images 500]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._common import Emitter, machine, results_path, run_monitored  # noqa: E402
from benchmarks.pipeline_overhead import DEFAULTS, bench_env, flow_cmd, source  # noqa: E402


def linear_fit(xs: list[float], ys: list[float]) -> dict:
    """Least-squares ``y = a + b x``: intercept, slope, R^2 and the worst relative residual."""
    import numpy as np

    x, y = np.asarray(xs, float), np.asarray(ys, float)
    b, a = np.polyfit(x, y, 1)
    fit = a + b * x
    r2 = 1 - ((y - fit) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    return {"intercept_s": round(float(a), 2), "slope_s": round(float(b), 5),
            "r2": round(float(r2), 4),
            "max_rel_residual": round(float(np.max(np.abs(y - fit) / y)), 3)}


def lambda_grid(n: int) -> str:
    return ",".join(f"{v:g}" for v in [i / (n - 1) for i in range(n)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="+", default=[500, 1000, 2000, 4000])
    parser.add_argument("--grid", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--grid-images", type=int, default=500)
    parser.add_argument("--workers-images", type=int, default=1000)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    emit = Emitter(None if args.no_save else results_path("scaling", "cpu"), "scaling")
    base = dict(model=DEFAULTS["model"], side=DEFAULTS["side"], steps=DEFAULTS["steps"],
                chunk_size=DEFAULTS["chunk_size"], sure=False, metrics_included=True)
    emit(kind="machine", **machine(), **base)
    with tempfile.TemporaryDirectory(prefix="dpflow-scaling-") as tmp:
        tmp = Path(tmp)
        env = bench_env(tmp / "prefect")

        def run(n: int, *, workers: int = 1, lambdas: str = DEFAULTS["lambdas"]) -> dict:
            r = run_monitored(flow_cmd(source(tmp, n), tmp / f"run-{n}-{workers}-{lambdas}",
                                       workers=workers, lambdas=lambdas), env=env)
            row = emit(kind="run", images=n, workers=workers, lambdas=lambdas, **base,
                       **{k: v for k, v in r.items() if k != "last_line"})
            if r["rc"] != 0:
                raise SystemExit(f"flow failed: {r['stderr_tail']}")
            return row

        # Time and memory against the number of images (mixed order, so load drift spreads).
        order = sorted(args.images, key=lambda n: (args.images.index(n) % 2, n))
        by_n = {n: run(n) for n in order}
        ns = sorted(by_n)
        emit(kind="fit_images", images=ns, wall_s=[by_n[n]["wall_s"] for n in ns], **base,
             **linear_fit(ns, [by_n[n]["wall_s"] for n in ns]))
        lo, hi = (1000 if 1000 in ns else min(ns)), max(ns)  # the issue asks 1k vs 4k
        emit(kind="memory", images_low=lo, images_high=hi,
             tree_mb_low=by_n[lo]["peak_rss_tree_mb"], tree_mb_high=by_n[hi]["peak_rss_tree_mb"],
             tree_ratio=round(by_n[hi]["peak_rss_tree_mb"] / by_n[lo]["peak_rss_tree_mb"], 3),
             flow_mb_low=by_n[lo]["peak_rss_process_mb"],
             flow_mb_high=by_n[hi]["peak_rss_process_mb"],
             flow_ratio=round(by_n[hi]["peak_rss_process_mb"] / by_n[lo]["peak_rss_process_mb"],
                              3))
        # Time against the grid size.
        by_l = {L: run(args.grid_images, lambdas=lambda_grid(L)) for L in args.grid}
        emit(kind="fit_grid", images=args.grid_images, grid=list(by_l),
             wall_s=[r["wall_s"] for r in by_l.values()], **base,
             **linear_fit(list(by_l), [r["wall_s"] for r in by_l.values()]))
        # Two Dask workers against one, interleaved.
        n = args.workers_images
        rows = {w: [] for w in (1, 2)}
        for w in (2, 1):
            rows[w].append(run(n, workers=w)["wall_s"])
        one, two = min(rows[1]), min(rows[2])
        emit(kind="workers", images=n, one_worker_s=rows[1], two_workers_s=rows[2],
             speedup_two_over_one=round(one / two, 3), **base)


if __name__ == "__main__":
    main()
