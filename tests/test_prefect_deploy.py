"""prefect.yaml end to end: a real `prefect server`, `prefect --no-prompt deploy`, a process work
pool, a triggered run executed by `prefect worker start --run-once`, the result on disk."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.processes import free_port, stop

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PREFECT = str(BIN / "prefect")


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"prefect server at {url} not healthy after {timeout} s")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_deploy_and_run_nightly_frontier(tmp_path, gaussian_collection):
    images, prior = gaussian_collection
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "home"), "PREFECT_API_URL": api,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_UI_ENABLED": "false",
           "PREFECT_LOGGING_LEVEL": "WARNING", "PYTHONPATH": str(REPO)}
    server = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
        env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    worker = None
    try:
        wait_healthy(api, server, timeout=180)

        def prefect(*args: str, timeout: float = 180) -> str:
            done = subprocess.run([PREFECT, *args], env=env, cwd=REPO, capture_output=True,
                                  text=True, timeout=timeout)
            assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout}{done.stderr}"
            return done.stdout

        prefect("work-pool", "create", "dpflow-process", "--type", "process")
        prefect("--no-prompt", "deploy", "--all")
        out = tmp_path / "nightly-{date}"
        params = {"source": str(images), "out": str(out), "model": f"gaussian:{prior}",
                  "add_noise": 0.1, "lambdas": [0.0, 1.0], "steps": 4, "chunk_size": 12,
                  "workers": 1}
        prefect("deployment", "run", "frontier/nightly-frontier", "--params", json.dumps(params))
        worker = subprocess.Popen(
            [PREFECT, "worker", "start", "--pool", "dpflow-process", "--run-once"],
            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        log, _ = worker.communicate(timeout=400)
        runs = sorted(tmp_path.glob("nightly-*"))
        assert len(runs) == 1 and runs[0].name != "nightly-{date}", log[-3000:]
        from data.frontier import load_frontier

        ds = load_frontier(runs[0] / "frontier.zarr")
        assert ds.sizes["image"] == 24 and list(ds.lam.values) == [0.0, 1.0]
        assert (runs[0] / "report" / "summary.md").exists()
        # The deployment carries the nightly schedule from prefect.yaml.
        listing = prefect("deployment", "inspect", "frontier/nightly-frontier")
        assert "0 2 * * *" in listing
    finally:
        if worker is not None:
            stop(worker)
        stop(server)
        shutil.rmtree(tmp_path / "home", ignore_errors=True)
