"""The `dpflow` command line: synopsis, exit codes, one-line errors, a whole run with a bad file."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.conftest import tree_hashes

runner = CliRunner()


def run(*args: str):
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output  # stdout and stderr, interleaved


def test_frontier_help_shows_the_synopsis():
    code, text = run("frontier", "--help")
    assert code == 0
    for option in ("--out", "--sigma", "--estimate-sigma", "--add-noise", "--seed", "--lambdas",
                   "--steps", "--model", "--chunk-size", "--workers", "--dask-address",
                   "--overwrite", "--resume", "--methods"):
        assert option in text, option


def test_output_inside_the_input_is_refused(tmp_path, gaussian_collection):
    images, prior = gaussian_collection
    folder = tmp_path / "archive"
    folder.mkdir()
    (folder / "a.npy").write_bytes(images.read_bytes())
    before = tree_hashes(folder)
    code, text = run("frontier", str(folder), "--out", str(folder / "run"), "--add-noise", "0.1",
                     "--model", f"gaussian:{prior}")
    assert code == 1 and "overlaps the input" in text
    assert tree_hashes(folder) == before and not (folder / "run").exists()


def test_info_lists_models():
    from data.checkpoints import list_models

    code, text = run("info", "--models")
    assert code == 0
    for row in list_models():
        assert f"model {row['name']}:" in text
        assert row["summary"] and row["summary"] in text  # the model card's key figure


@pytest.mark.parametrize("args,reason", [
    (["--lambdas", "0,1.5"], "lambdas must lie in [0, 1]"),
    (["--lambdas", "0,zero"], "comma-separated numbers"),
    (["--sigma", "-0.1"], "sigma must be a finite number > 0"),
    (["--sigma", "0.1", "--estimate-sigma"], "either --sigma or --estimate-sigma"),
    (["--add-noise", "0.1", "--methods", "magic"], "unknown method"),
])
def test_bad_parameters_exit_nonzero_with_one_line(tmp_path, gaussian_collection, args, reason):
    images, prior = gaussian_collection
    code, text = run("frontier", str(images), "--out", str(tmp_path / "o"), "--model",
                     f"gaussian:{prior}", *args)
    assert code == 1
    lines = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and reason in lines[0], text


@pytest.mark.usefixtures("prefect_harness")
def test_empty_collection_and_channel_mismatch(tmp_path, gaussian_collection):
    _, prior = gaussian_collection
    (tmp_path / "empty").mkdir()
    code, text = run("frontier", str(tmp_path / "empty"), "--out", str(tmp_path / "o1"),
                     "--add-noise", "0.1", "--model", f"gaussian:{prior}")
    assert code == 1 and "error: empty collection" in text, text
    rgb = tmp_path / "rgb.npy"
    np.save(rgb, np.random.default_rng(0).uniform(0.2, 0.8, (2, 3, 8, 8)).astype(np.float32))
    code, text = run("frontier", str(rgb), "--out", str(tmp_path / "o2"), "--add-noise", "0.1",
                     "--model", f"gaussian:{prior}")
    assert code == 1 and "expects 1 channel(s)" in text, text


@pytest.mark.usefixtures("prefect_harness")
def test_folder_with_corrupt_file_completes_and_inputs_are_untouched(tmp_path,
                                                                     gaussian_collection):
    from skimage.io import imsave

    from data.frontier import load_frontier

    images, prior = gaussian_collection
    folder = tmp_path / "in"
    folder.mkdir()
    clean = np.load(images)[:5, 0]
    for i, image in enumerate(clean):
        imsave(folder / f"img{i}.png", (image * 255).round().astype(np.uint8),
               check_contrast=False)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)  # truncated
    before = tree_hashes(folder)
    out = tmp_path / "run"
    args = ["frontier", str(folder), "--out", str(out), "--add-noise", "0.1", "--lambdas",
            "0,1", "--steps", "4", "--chunk-size", "2", "--workers", "1", "--model",
            f"gaussian:{prior}"]
    code, text = run(*args)
    assert code == 0, text
    assert "frontier.zarr" in text and "summary.md" in text
    ds = load_frontier(out / "frontier.zarr")
    assert ds.sizes["image"] == 5 and "broken" in ds.attrs["skipped_inputs"]
    assert "broken" in (out / "report" / "summary.md").read_text()
    assert tree_hashes(folder) == before
    # An existing run is neither overwritten nor resumed silently.
    code, text = run(*args)
    assert code == 1 and "--resume" in text
