"""Bad input through the real `dpflow frontier` command: each fault is a real file, parameter,
checkpoint or file system. Per-image faults are skipped with their reason recorded in the
dataset while the rest of the run completes; run-level faults exit 1 with one ``error:`` line.
Inputs are hashed before and after every case (they are never modified)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from data.frontier import load_frontier
from flows.cli import app
from tests.conftest import tree_hashes

runner = CliRunner()
FAST = ["--lambdas", "0,1", "--steps", "3", "--chunk-size", "4", "--workers", "1"]


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def opens_as_frontier(out: Path) -> bool:
    try:
        load_frontier(out / "frontier.zarr")
    except ValueError:
        return False
    return True


# ------------------------------------------------------------------ per-image faults, one run

# file -> image ids it must yield in the dataset (processed) or the phrase of its skip reason.
PROCESSED = {
    "u8.png": ["u8"],  # uint8
    "u16.tif": ["u16"],  # uint16 (microscopy)
    "f32.tif": ["f32"],  # float32 in [0, 1]
    "f64wide.tif": ["f64wide"],  # float64 outside [0, 1]: min-max scaled
    "stack.tif": ["stack_z000", "stack_z001", "stack_z002"],  # a 3-D (z) stack: one per plane
}
SKIPPED = {
    "truncated.tif": ("truncated", "unreadable"),
    "zero.png": ("zero", "empty file (0 bytes)"),
    "notes.txt": ("notes", "not an image file"),
    "nan.tif": ("nan", "NaN/Inf pixel(s)"),
    "inf.tif": ("inf", "NaN/Inf pixel(s)"),
    "constant.png": ("constant", "constant image"),
    "tiny.tif": ("tiny", "image is 1x1, smaller than min_side"),
    "huge.tif": ("huge", "cut it into tiles"),
    "fake.png": ("fake", "unreadable PNG"),
}


def write_fault_folder(folder: Path, clean: np.ndarray) -> None:
    """Good images of every supported dtype (drawn from the Gaussian prior) and one file per
    per-image fault."""
    from skimage.io import imsave

    folder.mkdir()
    imsave(folder / "u8.png", (clean[0] * 255).round().astype(np.uint8), check_contrast=False)
    tifffile.imwrite(folder / "u16.tif", (clean[1] * 65535).round().astype(np.uint16))
    tifffile.imwrite(folder / "f32.tif", clean[2].astype(np.float32))
    tifffile.imwrite(folder / "f64wide.tif", (clean[3] * 800 - 100).astype(np.float64))
    tifffile.imwrite(folder / "stack.tif", clean[4:7].astype(np.float32),
                     metadata={"axes": "ZYX"})
    (folder / "truncated.tif").write_bytes((folder / "u16.tif").read_bytes()[:200])
    (folder / "zero.png").write_bytes(b"")
    (folder / "notes.txt").write_text("acquisition notes, not an image\n")
    (folder / "fake.png").write_bytes(b"this is not a PNG at all")
    for name, value in (("nan", np.nan), ("inf", np.inf)):
        image = clean[7].astype(np.float32)
        image[2, 3] = value
        tifffile.imwrite(folder / f"{name}.tif", image)
    imsave(folder / "constant.png", np.full((8, 8), 7, np.uint8), check_contrast=False)
    tifffile.imwrite(folder / "tiny.tif", np.array([[3]], np.uint8))
    tifffile.imwrite(folder / "huge.tif", shape=(5000, 5000), dtype=np.uint8)  # sparse, 25 MB


@pytest.fixture(scope="module")
def fault_run(prefect_harness, gaussian_collection, tmp_path_factory):
    images, prior = gaussian_collection
    base = tmp_path_factory.mktemp("faults")
    folder = base / "archive"
    write_fault_folder(folder, np.load(images)[:, 0])
    before = tree_hashes(folder)
    out = base / "run"
    code, text = run("frontier", folder, "--out", out, "--add-noise", "0.1", "--model",
                     f"gaussian:{prior}", *FAST)
    return code, text, out, folder, before


def test_fault_folder_run_completes(fault_run):
    code, text, out, folder, before = fault_run
    assert code == 0, text
    assert tree_hashes(folder) == before  # inputs read-only
    ds = load_frontier(out / "frontier.zarr")
    assert ds.attrs["complete"] == "true"
    expected = sorted(i for ids in PROCESSED.values() for i in ids)
    assert sorted(ds.id.values) == expected
    assert (ds.skip_reason.values == "").all()
    assert np.isfinite(ds.mse.values).all() and np.isfinite(ds.denoised.values).all()


@pytest.mark.parametrize("name", sorted(PROCESSED))
def test_good_inputs_of_every_dtype_are_processed(fault_run, name):
    from data.store import open_store, read_chunk

    _, _, out, folder, _ = fault_run
    ds = load_frontier(out / "frontier.zarr")
    store = out / "store.zarr"
    chunks = [read_chunk(store, u.group, u.chunk_index) for u in open_store(store).chunks]
    for image_id in PROCESSED[name]:
        assert image_id in set(ds.id.values)
        # The clean reference in the store is the file's pixels scaled to [0, 1] by the dtype rule.
        chunk = next(c for c in chunks if image_id in c["ids"])
        i = list(chunk["ids"]).index(image_id)
        raw = tifffile.imread(folder / name) if name.endswith(".tif") else None
        if raw is None:
            from skimage.io import imread

            raw = imread(folder / name)
        if raw.ndim == 3:
            raw = raw[int(image_id[-3:])]
        scaling = chunk["scaling"][i]
        assert scaling["dtype"] == str(raw.dtype)
        np.testing.assert_allclose(chunk["clean"][i, 0] * scaling["scale"] + scaling["offset"],
                                   raw, rtol=1e-5, atol=1e-6 * scaling["scale"])


@pytest.mark.parametrize("name", sorted(SKIPPED))
def test_bad_files_are_skipped_with_their_reason_recorded(fault_run, name):
    _, _, out, _, _ = fault_run
    ds = load_frontier(out / "frontier.zarr")
    skipped = {s["id"]: s for s in json.loads(ds.attrs["skipped_inputs"])}
    image_id, phrase = SKIPPED[name]
    assert image_id in skipped and phrase in skipped[image_id]["reason"], skipped.get(image_id)
    assert Path(skipped[image_id]["source"]).name == name
    assert "\n" not in skipped[image_id]["reason"]
    assert image_id not in set(ds.id.values)
    assert image_id in (out / "report" / "summary.md").read_text()


@pytest.mark.usefixtures("prefect_harness")
def test_mixed_sizes_run_with_a_convolutional_model(tmp_path):
    """Two image sizes in one folder, the shipped (size-agnostic) model: both groups are sampled
    and the dataset keeps each image's own extent."""
    from skimage.io import imsave

    rng = np.random.default_rng(0)
    folder = tmp_path / "mixed"
    folder.mkdir()
    sizes = {"a": (16, 16), "b": (24, 16), "c": (16, 16), "d": (24, 16)}
    for name, shape in sizes.items():
        imsave(folder / f"{name}.png", rng.integers(40, 220, shape).astype(np.uint8),
               check_contrast=False)
    before = tree_hashes(folder)
    code, text = run("frontier", folder, "--out", tmp_path / "run", "--add-noise", "0.1",
                     "--model", "sci-patches", "--no-sure", "--lambdas", "0,1", "--steps", "2",
                     "--chunk-size", "2", "--workers", "1")
    assert code == 0, text
    ds = load_frontier(tmp_path / "run" / "frontier.zarr")
    assert list(ds.id.values) == list(sizes)
    assert [(int(h), int(w)) for h, w in zip(ds.height.values, ds.width.values)] == list(
        sizes.values())
    from data.frontier import denoised_of

    for i in range(4):
        assert np.isfinite(denoised_of(ds, i).values).all()
    assert np.isfinite(ds.mse.values).all()
    assert tree_hashes(folder) == before


# --------------------------------------------------------------- run-level faults, each a CLI run

def corrupt_checkpoint(tmp: Path) -> str:
    from data.checkpoints import resolve

    path = tmp / "corrupt.pt"
    path.write_bytes(resolve("sci-patches").read_bytes()[:4000])
    return str(path)


# (case, extra CLI arguments (callable of tmp_path for files), phrase of the one error line)
RUN_FAULTS = [
    ("negative sigma", ["--sigma", "-0.1"], "sigma must be"),
    ("zero sigma", ["--sigma", "0"], "sigma must be"),
    ("absurd sigma", ["--sigma", "50"], "is absurd"),
    ("absurd sigma in [0, 1] units", ["--sigma", "5"], "sigma"),
    ("absurd added noise", ["--add-noise", "-1"], "add-noise"),
    ("nan sigma", ["--sigma", "nan"], "sigma"),
    ("lambda below 0", ["--add-noise", "0.1", "--lambdas", "-0.1,0.5"], "lambdas must lie in [0, 1]"),
    ("lambda above 1", ["--add-noise", "0.1", "--lambdas", "0,1.01"], "lambdas must lie in [0, 1]"),
    ("lambda nan", ["--add-noise", "0.1", "--lambdas", "0,nan"], "lambdas must lie in [0, 1]"),
    ("lambda duplicated", ["--add-noise", "0.1", "--lambdas", "0,0.5,0.5"], "duplicates"),
    ("zero steps", ["--add-noise", "0.1", "--steps", "0"], "steps must be >= 1"),
    ("zero chunk size", ["--add-noise", "0.1", "--chunk-size", "0"], "chunk size must be >= 1"),
    ("overwrite and resume", ["--add-noise", "0.1", "--overwrite", "--resume"],
     "either --overwrite or --resume"),
    ("corrupt checkpoint", lambda t: ["--add-noise", "0.1", "--model", corrupt_checkpoint(t)],
     "not a readable checkpoint"),
    ("missing checkpoint", ["--add-noise", "0.1", "--model", "/nonexistent/model.pt"], "model"),
    ("wrong channel count (2-channel checkpoint)", ["--add-noise", "0.1", "--model", "moons"],
     "expects 2 channel(s)"),
    ("missing source", lambda t: ["--add-noise", "0.1", "--source-override", t / "nope"],
     "source not found"),
]


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("case,extra,phrase", RUN_FAULTS, ids=[c[0] for c in RUN_FAULTS])
def test_run_level_faults_exit_1_with_one_line(tmp_path, gaussian_collection, case, extra,
                                               phrase):
    images, prior = gaussian_collection
    extra = extra(tmp_path) if callable(extra) else list(extra)
    source: str | Path = images
    if "--source-override" in extra:
        i = extra.index("--source-override")
        source, extra = extra[i + 1], extra[:i] + extra[i + 2:]
    if "--model" not in extra:
        extra += ["--model", f"gaussian:{prior}"]
    before = tree_hashes(images.parent)
    out = tmp_path / "run"
    code, text = run("frontier", source, "--out", out, *FAST, *extra)
    assert code == 1, text
    lines = error_lines(text)
    assert len(lines) == 1 and phrase in lines[0], text
    assert tree_hashes(images.parent) == before
    assert not opens_as_frontier(out)


# ------------------------------------------------------------ read-only and full file systems

@pytest.fixture
def mount_tmpfs(tmp_path):
    """Mount small tmpfs file systems under tmp_path (root only); unmounted afterwards."""
    mounted: list[Path] = []

    def mount(name: str, options: str) -> Path:
        point = tmp_path / name
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not root'})")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


@pytest.mark.usefixtures("prefect_harness")
def test_read_only_output_directory(mount_tmpfs, gaussian_collection):
    images, prior = gaussian_collection
    read_only = mount_tmpfs("ro", "ro,size=1m")
    code, text = run("frontier", images, "--out", read_only / "run", "--add-noise", "0.1",
                     "--model", f"gaussian:{prior}", *FAST)
    assert code == 1 and len(error_lines(text)) == 1, text
    assert "read-only" in error_lines(text)[0].lower(), text
    assert list(read_only.iterdir()) == []


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_full_disk_is_one_line_leaves_no_dataset_and_resumes_after_space_is_freed(
        mount_tmpfs, tmp_path, gaussian_collection):
    """A run directory on a 256 KiB file system: the run fails with one line and nothing that
    opens as a dataset; once the file system is grown, --resume finishes with every image."""
    from data.analytic import write_gaussian_collection

    images, prior = write_gaussian_collection(tmp_path / "many", 600, seed=4)
    small = mount_tmpfs("full", "size=256k")
    out = small / "run"
    args = ["frontier", images, "--out", out, "--add-noise", "0.1", "--model",
            f"gaussian:{prior}", "--lambdas", "0,1", "--steps", "2", "--chunk-size", "100",
            "--workers", "1"]
    before = tree_hashes(images.parent)
    code, text = run(*args)
    assert code == 1 and len(error_lines(text)) == 1, text
    assert "no space left on device" in error_lines(text)[0], text
    assert not opens_as_frontier(out)
    assert tree_hashes(images.parent) == before
    subprocess.run(["mount", "-o", "remount,size=64m", str(small)], check=True)
    code, text = run(*args, "--resume")
    assert code == 0, text
    ds = load_frontier(out / "frontier.zarr")
    assert ds.sizes["image"] == 600 and ds.attrs["complete"] == "true"
    assert np.isfinite(ds.mse.values).all()
