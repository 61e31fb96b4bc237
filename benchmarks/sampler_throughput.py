"""Sampler throughput: image-evaluations per second (images x lambdas x steps / s) of the batched
variance-scaled sampler against the straightforward loop and against its bare network.

Per model and batch size (rows = lambdas x images in one denoiser call), measured side by side
(interleaved rounds, medians):

- ``baseline``: one lambda at a time, one image at a time, fp32, eager (the straightforward loop);
- ``sampler``: ``variance_scaled_denoise`` with the whole grid and the images in one batch, with
  counter noise (``seed`` given, what the pipeline runs) and with ``torch.randn`` noise;
- ``network``: the bare denoiser called ``steps`` times on the same rows (the ceiling);
- ``noise``: the two counter-noise draws of one step against two ``torch.randn`` draws;
- ``sampler_own``: the sampler with a free denoiser (``D(x) = x``): its own work, so that
  ``sampler_over_network_direct = network / (network + own)`` does not hinge on the difference of
  two noisy timings (``sampler_over_network``: the plain ratio of medians; ``_best``: of minima).

FLOPs per image come from ``torch.utils.flop_counter.FlopCounterMode`` (one forward), so each
line also reports the achieved GFLOP/s and, on a GPU, the fraction of ``--peak-tflops``.

    python benchmarks/sampler_throughput.py                      # CPU, fp32, 2 threads
    python benchmarks/sampler_throughput.py --device cuda --configs fp32 bf16-cl bf16-cl-compile \
        bf16-cl-graphs --batch-sizes 256 1024 4096 --steps 20 --peak-tflops 800
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import Emitter, interleaved, machine, results_path  # noqa: E402
from data.checkpoints import load_denoiser  # noqa: E402
from dpcore.noise import CounterNoise, row_keys  # noqa: E402
from dpcore.sampler import variance_scaled_denoise  # noqa: E402

CONFIGS = ("fp32", "fp32-cl", "bf16-cl", "bf16-cl-compile", "bf16-cl-graphs")


class Fast(torch.nn.Module):
    """A denoiser under the speed levers of one config: channels_last memory, bf16 autocast,
    torch.compile (``graphs``: mode reduce-overhead, i.e. CUDA graphs of the fixed shapes)."""

    def __init__(self, denoiser: torch.nn.Module, config: str, device: str):
        super().__init__()
        self.channels_last = "cl" in config.split("-")
        self.bf16 = config.startswith("bf16")
        self.device_type = torch.device(device).type
        self.denoiser = denoiser.to(memory_format=torch.channels_last) if self.channels_last \
            else denoiser

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.denoiser(x, sigma)
        return out.float().contiguous()


def build(name: str, config: str, device: str):
    """The model under ``config``; compiled configs are compiled once, shapes fixed."""
    model = Fast(load_denoiser(name, device), config, device).eval()
    if config.endswith("compile"):
        return torch.compile(model, dynamic=False)
    if config.endswith("graphs"):
        return torch.compile(model, mode="reduce-overhead", dynamic=False)
    return model


def flops_per_image(model: torch.nn.Module, shape: tuple[int, ...], device: str) -> float:
    """Forward FLOPs per image counted by FlopCounterMode (convolutions and matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(8, *shape, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x, torch.full((8,), 0.1, device=device))
    return counter.get_total_flops() / 8


def images(n: int, device: str, sigma: float, npy: Path | None = None
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` Fashion-MNIST test images (32x32, [0, 1]) with Gaussian noise of std ``sigma``;
    from ``npy`` (uint8 ``(N, 1, 32, 32)``, see benchmarks/gpu_suite.sh) where given."""
    if npy is not None:
        import numpy as np

        clean = torch.from_numpy(np.load(npy)[:n].astype(np.float32) / 255)
        if clean.shape[0] < n:
            raise ValueError(f"{npy} holds {clean.shape[0]} images; {n} needed")
    else:
        from data.samples import sample_collection

        clean = torch.stack([torch.from_numpy(r.array) for r in
                             sample_collection(f"sample:fashion-mnist:{n}")])
    g = torch.Generator().manual_seed(0)
    return (clean + sigma * torch.randn(clean.shape, generator=g)).to(device), clean.to(device)


def identity(x: torch.Tensor, sigma) -> torch.Tensor:
    """A denoiser that costs nothing (``D(x) = x``): isolates the sampler's own work."""
    return x


def baseline_loop(model, y: torch.Tensor, sigma: float, lambdas: list[float], steps: int):
    """The straightforward implementation: every (lambda, image) on its own, in turn."""
    for lam in lambdas:
        for i in range(y.shape[0]):
            variance_scaled_denoise(model, y[i:i + 1], sigma, [lam], steps=steps, seed=0,
                                    sample_ids=torch.tensor([i]))


def measure_threads(model, y: torch.Tensor, name: str, args, emit: Emitter) -> None:
    """The bare network at the smallest batch with 1 and with 2 intra-op threads, interleaved
    (on a loaded 2-core machine a second thread waits on the busy core at every op)."""
    rows = min(args.batch_sizes)
    x = y[:1].expand(rows, *y.shape[1:]).contiguous()
    s = torch.full((rows,), args.sigma)
    before = torch.get_num_threads()

    def forward(threads: int):
        torch.set_num_threads(threads)
        with torch.no_grad():
            for _ in range(args.steps):
                model(x, s)

    t = interleaved({f"threads_{k}": (lambda k=k: forward(k)) for k in (1, 2)},
                    rounds=args.rounds, warmup=1)
    torch.set_num_threads(before)
    for key, row in t.items():
        emit(kind="threads", model=name, rows=rows, steps=args.steps, variant=key,
             image_evals_per_s=round(rows * args.steps / row["median_s"], 1), **row)
    emit(kind="threads_ratio", model=name, rows=rows,
         two_over_one=round(t["threads_1"]["median_s"] / t["threads_2"]["median_s"], 3))


def measure_model(name: str, args, emit: Emitter, sync) -> None:
    device = args.device
    lambdas = torch.linspace(0, 1, args.lambdas).tolist()
    L = len(lambdas)
    reference = load_denoiser(name, device)
    flops = flops_per_image(reference, (reference.channels, 32, 32), device)
    emit(kind="flops", model=name, flops_per_image=flops, gflops_per_image=flops / 1e9,
         parameters=sum(p.numel() for p in reference.parameters()), **machine())
    n_max = max(args.batch_sizes) // L
    y, _ = images(max(n_max, args.baseline_images), device, args.sigma, args.images_npy)
    if device == "cpu" and args.thread_sweep:
        measure_threads(reference, y, name, args, emit)
    base = None  # the straightforward loop's image-evals/s, timed once beside the first config
    for config in args.configs:
        model = build(name, config, device)
        for rows in args.batch_sizes:
            B = rows // L
            if B < 1:
                continue
            yb, rows = y[:B], B * L
            x_rows = yb.repeat(L, 1, 1, 1)
            s_rows = torch.full((rows,), args.sigma, device=device)
            keys = row_keys(0, torch.arange(B), torch.tensor(lambdas))
            counter = CounterNoise(keys)
            shape = x_rows.shape

            def network(model=model, x_rows=x_rows, s_rows=s_rows):
                with torch.no_grad():
                    for _ in range(args.steps):
                        model(x_rows, s_rows)

            variants = {
                "sampler_counter": lambda model=model, yb=yb: variance_scaled_denoise(
                    model, yb, args.sigma, lambdas, steps=args.steps, seed=0),
                "sampler_randn": lambda model=model, yb=yb: variance_scaled_denoise(
                    model, yb, args.sigma, lambdas, steps=args.steps,
                    generator=torch.Generator(device).manual_seed(0)),
                "network": network,
                # The sampler's own work (update, noise, schedule) measured directly: the same
                # call with a free denoiser, so its cost is not a difference of two noisy times.
                "sampler_own": lambda yb=yb: variance_scaled_denoise(
                    identity, yb, args.sigma, lambdas, steps=args.steps, seed=0),
                "noise_counter": lambda counter=counter, shape=shape: [
                    counter(d, shape, dtype=torch.float32, device=device)
                    for d in range(2 * args.steps)],
                "noise_randn": lambda shape=shape: [
                    torch.randn(shape, device=device) for _ in range(2 * args.steps)],
            }
            if args.compile_noise and config.endswith(("compile", "graphs")):
                fused = torch.compile(counter.__call__, dynamic=False)
                variants["noise_counter_compiled"] = lambda fused=fused, shape=shape: [
                    fused(d, shape, dtype=torch.float32, device=device)
                    for d in range(2 * args.steps)]
                variants["sampler_counter_compiled_noise"] = lambda model=model, yb=yb, f=fused: \
                    variance_scaled_denoise(model, yb, args.sigma, lambdas, steps=args.steps,
                                            noise=f)
            if base is None:
                yb0 = y[:args.baseline_images]
                variants["baseline"] = lambda yb0=yb0: baseline_loop(
                    reference, yb0, args.sigma, lambdas, args.steps)
            t = interleaved(variants, rounds=args.rounds, sync=sync, warmup=args.warmup)
            evals = rows * args.steps
            common = dict(model=name, config=config, device=device, rows=rows, images=B,
                          lambdas=L, steps=args.steps, threads=torch.get_num_threads())

            def ips(key, n=evals, t=t):
                return n / t[key]["median_s"]

            for key in [k for k in t if k.startswith(("sampler", "network"))]:
                rate = ips(key)
                row = dict(common, variant=key, image_evals_per_s=round(rate, 1),
                           gflop_per_s=round(rate * flops / 1e9, 2), **t[key])
                if args.peak_tflops:
                    row["mfu"] = round(rate * flops / (args.peak_tflops * 1e12), 4)
                emit(kind="throughput", **row)
            step_counter, step_randn = t["sampler_counter"]["median_s"], t["sampler_randn"]["median_s"]
            ratios = dict(
                common, kind="ratios",
                sampler_over_network=round(ips("sampler_counter") / ips("network"), 3),
                sampler_randn_over_network=round(ips("sampler_randn") / ips("network"), 3),
                noise_counter_over_randn=round(t["noise_counter"]["median_s"]
                                               / t["noise_randn"]["median_s"], 2),
                noise_counter_fraction_of_sampler=round(t["noise_counter"]["median_s"]
                                                        / step_counter, 3),
                counter_sampler_over_randn_sampler=round(step_counter / step_randn, 3),
                sampler_over_network_best=round(t["network"]["min_s"]
                                                / t["sampler_counter"]["min_s"], 3),
                sampler_own_median_s=t["sampler_own"]["median_s"],
                sampler_over_network_direct=round(
                    t["network"]["median_s"] / (t["network"]["median_s"]
                                                + t["sampler_own"]["median_s"]), 3),
                noise_counter_median_s=t["noise_counter"]["median_s"],
                noise_randn_median_s=t["noise_randn"]["median_s"],
                load_avg_during=t["network"]["load_avg_during"])
            if "noise_counter_compiled" in t:
                ratios.update(
                    noise_compiled_over_randn=round(t["noise_counter_compiled"]["median_s"]
                                                    / t["noise_randn"]["median_s"], 2),
                    sampler_compiled_noise_over_network=round(
                        ips("sampler_counter_compiled_noise") / ips("network"), 3))
            if "baseline" in t:
                base = ips("baseline", args.baseline_images * L * args.steps)
                ratios.update(baseline_median_s=t["baseline"]["median_s"])
            ratios.update(baseline_images=args.baseline_images,
                          baseline_image_evals_per_s=round(base, 1),
                          speedup_over_baseline=round(ips("sampler_counter") / base, 2))
            emit(**ratios)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", nargs="+", default=["fashion-mnist", "sci-patches"])
    parser.add_argument("--configs", nargs="+", default=["fp32"], choices=CONFIGS)
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[16, 64, 256],
                        help="rows per denoiser call (lambdas x images)")
    parser.add_argument("--lambdas", type=int, default=4, help="grid size, linspace(0, 1)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--sigma", type=float, default=0.1)
    parser.add_argument("--baseline-images", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1: best on a loaded 2-core machine)")
    parser.add_argument("--thread-sweep", action="store_true",
                        help="also time the bare network at 1 vs 2 threads (CPU)")
    parser.add_argument("--compile-noise", action="store_true",
                        help="also time torch.compile'd counter noise (one fused kernel; compiled configs)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--peak-tflops", type=float, default=0.0,
                        help="for MFU (the lent H100: 800, a large bf16 matmul)")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON-lines file (default benchmarks/results/perf-sampler-<dev>-*)")
    parser.add_argument("--images-npy", type=Path, default=None,
                        help="uint8 (N, 1, 32, 32) images instead of sample:fashion-mnist")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device_tag = "gpu" if args.device.startswith("cuda") else "cpu"
    out = None if args.no_save else (args.out or results_path("sampler", device_tag))
    emit = Emitter(out, "sampler_throughput")
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else None
    for name in args.models:
        measure_model(name, args, emit, sync)


if __name__ == "__main__":
    main()
