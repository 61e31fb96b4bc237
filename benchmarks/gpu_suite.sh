#!/usr/bin/env bash
# The GPU measurements of issue 6 in one short script, for a session lent a GPU machine.
#
# Here (this machine, once, in the repo root):   bash benchmarks/gpu_suite.sh prepare
#   - writes .gpu/fashion32-4096.npy (uint8 Fashion-MNIST test images: the Debian data set is not
#     on the GPU machine) and fills .whl/ with the wheels the flow needs that the GPU image lacks
#     (prefect, prefect-dask, dask, distributed, zarr, typer, ...; cp312 manylinux, --no-deps);
#   - both folders are listed in .git/info/exclude, so they travel only when carried.
# There (device tool): run(command="bash benchmarks/gpu_suite.sh run", carry=[".gpu", ".whl"],
#                          timeout_s=540)
#   - JSON lines in $OUT: perf-sampler-gpu.jsonl, perf-e2e-gpu.jsonl, smi.csv, log.txt;
#     copy them to benchmarks/results/perf-*-<gpu>-<date>.jsonl afterwards.
# Budget: about 8 minutes of the 15 (start-up of the machine excluded). Each part has its own
# timeout so a slow compile cannot eat the rest.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-run}
PY=${PY:-python3}

if [ "$mode" = prepare ]; then
    mkdir -p .gpu .whl
    grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    .venv/bin/python - <<'EOF'
from pathlib import Path
from benchmarks._common import make_source
make_source(Path(".gpu/fashion32-4096.npy"), 4096, side=32)
EOF
    # The flow's packages absent from the GPU image (KINDS.md lists what it holds), pinned to
    # the versions of this venv. Pure-Python wheels are py3-none-any; the rest need cp312.
    .venv/bin/pip list --format=freeze \
        | grep -viE '^(torch|nvidia|triton|numpy|scipy|scikit|pillow|matplotlib|pandas|psutil|pyyaml|jinja2|markupsafe|typing.extensions|packaging|six|python.dateutil|certifi|idna|urllib3|requests|tifffile|imageio|networkx|sympy|mpmath|filelock|fsspec|setuptools|pip|wheel|dpflow|ruff|pytest|iniconfig|pluggy|coverage|hypothesis|sortedcontainers|toolz|cloudpickle|msgpack|rich|pygments|markdown.it.py|mdurl|click|xarray|lazy.loader|contourpy|cycler|fonttools|kiwisolver|pyparsing|threadpoolctl|joblib|torchmetrics|lightning.utilities|anyio|h11|httpx|httpcore|attrs|tqdm)=' \
        > .whl/requirements.txt
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl -r .whl/requirements.txt
    du -sh .gpu .whl
    exit 0
fi

[ "$mode" = run ] || { echo "usage: gpu_suite.sh prepare|run" >&2; exit 2; }
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=$PWD:/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))"

# 1. Sampler throughput: baseline loop, batched fp32, bf16 + channels_last, + torch.compile,
#    + CUDA graphs (compile mode reduce-overhead); compiled counter noise; MFU vs 800 TFLOP/s.
NPY=.gpu/fashion32-4096.npy
timeout 300 $PY benchmarks/sampler_throughput.py --device cuda --models fashion-mnist \
    --configs fp32 bf16-cl bf16-cl-compile bf16-cl-graphs --batch-sizes 256 1024 4096 \
    --lambdas 4 --steps 20 --baseline-images 4 --rounds 5 --warmup 2 --peak-tflops 800 \
    --compile-noise --images-npy $NPY --out "$OUT/perf-sampler-gpu.jsonl" \
    || echo '{"bench": "sampler_throughput", "error": "fashion-mnist part failed or timed out"}'
timeout 120 $PY benchmarks/sampler_throughput.py --device cuda --models sci-patches \
    --configs fp32 bf16-cl-compile --batch-sizes 4096 --lambdas 4 --steps 20 \
    --baseline-images 4 --rounds 5 --warmup 2 --peak-tflops 800 --images-npy $NPY \
    --out "$OUT/perf-sampler-gpu.jsonl" \
    || echo '{"bench": "sampler_throughput", "error": "sci-patches part failed or timed out"}'

# 2. End to end on the GPU: one GPU worker, nvidia-smi sampled every 200 ms. The busy fraction
#    is taken over the window from the first to the last sample with a non-zero utilisation.
if $PY -c "import prefect, prefect_dask, distributed, zarr, typer" 2>/dev/null; then
    $PY - <<'EOF'
import numpy as np
a = np.load(".gpu/fashion32-4096.npy")
np.save("/tmp/e2e-1024.npy", a[:1024]); np.save("/tmp/e2e-32.npy", a[:32])
EOF
    export PREFECT_HOME=/tmp/prefect PREFECT_LOGGING_LEVEL=WARNING
    frontier() {  # frontier SECONDS SRC OUTDIR
        timeout "$1" $PY -c "from flows.cli import app; app()" frontier "$2" --out "$3" \
            --add-noise 0.1 --model fashion-mnist --lambdas 0,0.25,0.5,0.75,1 --steps 20 \
            --chunk-size 256 --no-sure --overwrite
    }
    t0=$(date +%s.%N); frontier 120 /tmp/e2e-32.npy /tmp/run-32; t1=$(date +%s.%N)
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits \
        -lms 200 > "$OUT/smi.csv" &
    smi=$!
    t2=$(date +%s.%N); frontier 240 /tmp/e2e-1024.npy /tmp/run-1024; t3=$(date +%s.%N)
    kill $smi
    # A persistent API: the start-up without the ephemeral server (the flow's own aim: < 15 s).
    $PY -m prefect server start --host 127.0.0.1 --port 4299 >/tmp/api.log 2>&1 &
    api=$!
    $PY -c "import time, urllib.request as u
for _ in range(120):
    try: u.urlopen('http://127.0.0.1:4299/api/health', timeout=1); break
    except Exception: time.sleep(0.5)"
    t4=$(date +%s.%N)
    PREFECT_API_URL=http://127.0.0.1:4299/api frontier 120 /tmp/e2e-32.npy /tmp/run-32b
    t5=$(date +%s.%N)
    kill $api
    $PY - "$t0" "$t1" "$t2" "$t3" "$t4" "$t5" "$OUT" <<'EOF'
import csv, json, sys
t0, t1, t2, t3, t4, t5 = map(float, sys.argv[1:7])
util = [float(r[1]) for r in csv.reader(open(sys.argv[7] + "/smi.csv")) if len(r) > 2]
busy = [i for i, u in enumerate(util) if u > 0]
window = util[busy[0]:busy[-1] + 1] if busy else []
row = {"bench": "e2e_gpu", "images": 1024, "lambdas": 5, "steps": 20, "chunk_size": 256,
       "startup_one_chunk_ephemeral_api_s": round(t1 - t0, 2),
       "startup_one_chunk_persistent_api_s": round(t5 - t4, 2),
       "run_1024_s": round(t3 - t2, 2), "smi_samples": len(util),
       "busy_window_s": round(0.2 * len(window), 1),
       "busy_fraction_in_window": round(sum(u > 0 for u in window) / max(1, len(window)), 3),
       "mean_util_in_window": round(sum(window) / max(1, len(window)), 1),
       "busy_fraction_whole_run": round(len(busy) / max(1, len(util)), 3)}
print(json.dumps(row))
open(sys.argv[7] + "/perf-e2e-gpu.jsonl", "a").write(json.dumps(row) + "\n")
EOF
else
    echo '{"bench": "e2e_gpu", "error": "prefect/dask/zarr wheels missing: run prepare here and carry .whl"}' \
        | tee -a "$OUT/perf-e2e-gpu.jsonl"
fi
