"""Export: original dtype restored, formats read back, inputs untouched, unwritable outputs."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess

import numpy as np
import pytest
import tifffile
import zarr

from data.collection import Scaling, open_collection
from data.export import ExportRecord, export_images, infer_format
from data.store import OutputExistsError, OutputWriteError, read_chunk, write_collection


@pytest.fixture
def inputs(tmp_path):
    """A folder with a uint16 TIFF, a uint8 RGB PNG and a float32 TIFF of another size."""
    import imageio.v3 as iio

    rng = np.random.default_rng(2)
    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "deep.tif", rng.integers(0, 65535, (16, 16), dtype=np.uint16))
    iio.imwrite(folder / "photo.png", rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
    tifffile.imwrite(folder / "float.tif", (rng.random((12, 20)) * 4 - 1).astype(np.float32))
    return folder


def _hashes(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _originals(folder) -> dict[str, np.ndarray]:
    import imageio.v3 as iio

    return {"deep": tifffile.imread(folder / "deep.tif"),
            "photo": np.moveaxis(iio.imread(folder / "photo.png"), -1, 0),
            "float": tifffile.imread(folder / "float.tif")}


def _unchanged_records(folder):
    return [ExportRecord(im.id, im.array, im.scaling, im.source) for im in open_collection(folder)]


def test_tiff_round_trip_restores_dtype_exactly(tmp_path, inputs):
    before = _hashes(inputs)
    info = export_images(_unchanged_records(inputs), tmp_path / "out")
    assert info.format == "tiff" and sorted(info.ids) == ["deep", "float", "photo"]
    assert _hashes(inputs) == before
    originals = _originals(inputs)
    deep = tifffile.imread(tmp_path / "out" / "deep.tif")
    assert deep.dtype == np.uint16
    np.testing.assert_array_equal(deep, originals["deep"])
    photo = tifffile.imread(tmp_path / "out" / "photo.tif")
    assert photo.dtype == np.uint8
    np.testing.assert_array_equal(np.moveaxis(photo, -1, 0), originals["photo"])
    restored_float = tifffile.imread(tmp_path / "out" / "float.tif")
    assert restored_float.dtype == np.float32
    np.testing.assert_allclose(restored_float, originals["float"], atol=1e-6)
    manifest = json.loads((tmp_path / "out" / "export.json").read_text())
    assert manifest["n_images"] == 3 and {m["dtype"] for m in manifest["images"]} == {
        "uint16", "uint8", "float32"}


@pytest.mark.parametrize("name, format", [("out.zarr", "zarr"), ("out.ome.zarr", "ome-zarr")])
def test_zarr_formats_round_trip_through_the_reader(tmp_path, inputs, name, format):
    assert infer_format(tmp_path / name) == format
    export_images(_unchanged_records(inputs), tmp_path / name, pyramid_levels=1)
    root = zarr.open_group(str(tmp_path / name), mode="r")
    assert root.attrs["dpflow_export"]["format"] == format
    back = {im.id: im for im in open_collection(tmp_path / name)}
    assert sorted(back) == ["deep", "float", "photo"]
    originals = _originals(inputs)
    for image_id, original in originals.items():
        restored = back[image_id].scaling.restore(back[image_id].array)
        assert restored.dtype == original.dtype
        np.testing.assert_allclose(restored.reshape(original.shape), original, atol=1e-6)


def test_changed_values_are_rounded_and_clipped_to_the_dtype(tmp_path):
    scaling = Scaling("uint16", 65535.0, 0.0, "dtype")
    values = np.array([[[-0.2, 0.5, 1.3, 0.25]] * 8] * 1, np.float32).repeat(2, axis=1)
    export_images([ExportRecord("x", values, scaling.to_dict())], tmp_path / "o", format="tiff")
    out = tifffile.imread(tmp_path / "o" / "x.tif")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out[0], [0, 32768, 65535, 16384])


def test_export_from_a_store_chunk(tmp_path, inputs):
    write_collection(inputs, tmp_path / "s.zarr", chunk_size=2, sigma=0.05)
    chunk = read_chunk(tmp_path / "s.zarr", "g0", 0)
    records = [ExportRecord(i, a, s, src) for i, a, s, src in
               zip(chunk["ids"], chunk["noisy"], chunk["scaling"], chunk["sources"], strict=True)]
    export_images(records, tmp_path / "denoised")
    originals = _originals(inputs)
    for image_id in chunk["ids"]:
        out = tifffile.imread(tmp_path / "denoised" / f"{image_id}.tif")
        expected = originals[str(image_id)]
        np.testing.assert_array_equal(out.reshape(expected.shape), expected)


def test_refuses_to_overwrite_and_to_touch_inputs(tmp_path, inputs):
    records = _unchanged_records(inputs)
    export_images(records, tmp_path / "out")
    first = _hashes(tmp_path / "out")
    with pytest.raises(OutputExistsError, match="already exists; pass overwrite=True"):
        export_images(records, tmp_path / "out")
    assert _hashes(tmp_path / "out") == first
    export_images(records[:1], tmp_path / "out", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["deep.tif", "export.json"]
    before = _hashes(inputs)
    with pytest.raises(ValueError, match="it is or contains the input"):
        export_images(records, inputs, overwrite=True)
    with pytest.raises(ValueError, match="it is or contains the input"):
        export_images(records, tmp_path, overwrite=True)
    assert _hashes(inputs) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]  # no temporaries


def test_bad_records_leave_nothing(tmp_path):
    scaling = Scaling("uint8", 255.0, 0.0, "dtype")
    good = np.full((1, 8, 8), 0.5, np.float32)
    nan = good.copy()
    nan[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="image 'b': cannot restore an image with NaN/Inf"):
        export_images([ExportRecord("a", good, scaling), ExportRecord("b", nan, scaling)],
                      tmp_path / "o")
    with pytest.raises(ValueError, match="duplicate image id 'a'"):
        export_images([ExportRecord("a", good, scaling)] * 2, tmp_path / "o")
    with pytest.raises(ValueError, match=r"expected \(C, H, W\) with C in \(1, 3\)"):
        export_images([ExportRecord("a", np.zeros((2, 8, 8)), scaling)], tmp_path / "o")
    with pytest.raises(ValueError, match="nothing to export"):
        export_images([], tmp_path / "o")
    with pytest.raises(ValueError, match="unknown export format 'png'"):
        export_images([], tmp_path / "o", format="png")
    assert list(tmp_path.iterdir()) == []


def _mount_tmpfs(path, options: str) -> bool:
    if os.geteuid() != 0:
        return False
    path.mkdir(exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                            capture_output=True)
    return result.returncode == 0


def test_read_only_output_directory(tmp_path, inputs):
    target = tmp_path / "readonly"
    mounted = _mount_tmpfs(target, "ro,size=1m")
    if not mounted:  # an ordinary user: a directory without write permission is the real fault
        target.mkdir()
        target.chmod(0o555)
    expected = "read-only file system" if mounted else "permission denied"
    try:
        with pytest.raises(OutputWriteError, match=f"cannot write .*out: {expected}; nothing"):
            export_images(_unchanged_records(inputs), target / "out")
        assert list(target.iterdir()) == []
    finally:
        if mounted:
            subprocess.run(["umount", str(target)], check=True)
        else:
            target.chmod(0o755)


def test_full_disk_leaves_no_half_written_output(tmp_path, inputs):
    target = tmp_path / "small"
    if not _mount_tmpfs(target, "size=64k"):
        pytest.skip("needs root to mount a size-limited tmpfs")
    try:
        rng = np.random.default_rng(0)
        scaling = Scaling("uint16", 65535.0, 0.0, "dtype")
        records = (ExportRecord(f"r{k}", rng.random((1, 64, 64)), scaling) for k in range(40))
        with pytest.raises(OutputWriteError, match="no space left on device"):
            export_images(records, target / "out")
        assert list(target.iterdir()) == []
    finally:
        subprocess.run(["umount", str(target)], check=True)
