"""Readers: every source kind, the scaling record, and every per-image fault."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from data.collection import Scaling, open_collection, to_unit_range
from data.samples import parse_sample


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _ramp(height: int, width: int, top: int) -> np.ndarray:
    """A non-constant image with values 0..top."""
    return np.linspace(0, top, height * width).reshape(height, width)


def test_uint16_tiff_scaled_by_dtype_and_restored_exactly(tmp_path, rng):
    raw = rng.integers(0, 4096, (20, 24), dtype=np.uint16)  # a 12-bit camera in uint16
    tifffile.imwrite(tmp_path / "cam.tif", raw)
    (image,), skipped = open_collection(tmp_path / "cam.tif").load()
    assert not skipped and image.id == "cam" and image.array.shape == (1, 20, 24)
    assert image.array.dtype == np.float32
    assert image.scaling == Scaling("uint16", 65535.0, 0.0, "dtype")
    np.testing.assert_allclose(image.array[0], raw / 65535, rtol=1e-6)
    np.testing.assert_array_equal(image.scaling.restore(image.array)[0], raw)


def test_range_scaling_uses_the_image_range(tmp_path, rng):
    raw = rng.integers(100, 4001, (16, 16), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "cam.tif", raw)
    (image,), _ = open_collection(tmp_path, scaling="range").load()
    assert image.array.min() == 0 and image.array.max() == 1
    assert image.scaling.offset == raw.min() and image.scaling.scale == raw.max() - raw.min()
    np.testing.assert_array_equal(image.scaling.restore(image.array)[0], raw)


def test_tiff_stack_splits_into_planes(tmp_path, rng):
    stack = rng.integers(0, 255, (5, 16, 16), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    images, skipped = open_collection(tmp_path).load()
    assert not skipped
    assert [im.id for im in images] == [f"stack_z{z:03d}" for z in range(5)]
    for z, im in enumerate(images):
        np.testing.assert_allclose(im.array[0] * 255, stack[z], atol=1e-4)


def test_imagej_hyperstack_splits_z_and_channels(tmp_path, rng):
    stack = rng.integers(0, 60000, (2, 2, 16, 16), dtype=np.uint16)  # Z, C (2 channels), Y, X
    tifffile.imwrite(tmp_path / "hyper.tif", stack, imagej=True, metadata={"axes": "ZCYX"})
    images, _ = open_collection(tmp_path / "hyper.tif").load()
    assert [im.id for im in images] == ["hyper_z000_c000", "hyper_z000_c001", "hyper_z001_c000",
                                        "hyper_z001_c001"]
    np.testing.assert_array_equal(images[3].scaling.restore(images[3].array)[0], stack[1, 1])


def test_png_jpeg_and_rgba(tmp_path, rng):
    import imageio.v3 as iio

    grey = rng.integers(0, 255, (16, 20), dtype=np.uint8)
    rgba = rng.integers(0, 255, (16, 16, 4), dtype=np.uint8)
    iio.imwrite(tmp_path / "a.png", grey)
    iio.imwrite(tmp_path / "b.png", rgba)
    smooth = np.stack([_ramp(16, 16, 200), _ramp(16, 16, 100).T, np.full((16, 16), 50.0)], -1)
    iio.imwrite(tmp_path / "c.jpg", smooth.astype(np.uint8), quality=95)
    images = {im.id: im for im in open_collection(tmp_path)}
    assert images["a"].array.shape == (1, 16, 20)
    np.testing.assert_array_equal(images["a"].scaling.restore(images["a"].array)[0], grey)
    assert images["b"].array.shape == (3, 16, 16)  # alpha dropped
    np.testing.assert_allclose(images["b"].array * 255, np.moveaxis(rgba[..., :3], -1, 0),
                               atol=1e-4)
    assert images["c"].array.shape == (3, 16, 16) and images["c"].scaling.dtype == "uint8"
    jpeg_error = np.abs(images["c"].array * 255 - np.moveaxis(smooth, -1, 0)).max()
    assert jpeg_error < 8  # lossy, but the same picture


def test_sixteen_bit_png(tmp_path):
    import imageio.v3 as iio

    raw = _ramp(16, 16, 60000).astype(np.uint16)
    iio.imwrite(tmp_path / "deep.png", raw)
    (image,), _ = open_collection(tmp_path / "deep.png").load()
    assert image.scaling.dtype == "uint16"
    np.testing.assert_array_equal(image.scaling.restore(image.array)[0], raw)


def test_npy_stack_is_memory_mapped_and_indexed(tmp_path, rng):
    stack = rng.random((4, 12, 10)).astype(np.float32)
    np.save(tmp_path / "s.npy", stack)
    images, _ = open_collection(tmp_path / "s.npy").load()
    assert [im.id for im in images] == ["s_000", "s_001", "s_002", "s_003"]
    assert all(im.scaling.mode == "identity" for im in images)
    np.testing.assert_array_equal(images[2].array[0], stack[2])


def test_npy_float_outside_unit_range_is_min_max_scaled(tmp_path):
    raw = _ramp(10, 10, 7.0) - 3.0
    np.save(tmp_path / "f.npy", raw)
    (image,), _ = open_collection(tmp_path / "f.npy").load()
    assert image.scaling == Scaling("float64", 7.0, -3.0, "range")
    np.testing.assert_allclose(image.scaling.restore(image.array)[0], raw, atol=1e-5)


def test_npz_members_and_layouts(tmp_path, rng):
    rgb = rng.random((2, 3, 10, 12))  # N C H W
    hwc = rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", colour=rgb, photo=hwc)
    images = {im.id: im for im in open_collection(tmp_path / "a.npz")}
    assert sorted(images) == ["colour_000", "colour_001", "photo"]
    np.testing.assert_allclose(images["colour_001"].array, rgb[1], rtol=1e-6)
    assert images["photo"].array.shape == (3, 10, 12)
    np.testing.assert_allclose(images["photo"].array * 255, np.moveaxis(hwc, -1, 0), atol=1e-4)


def test_explicit_layout_overrides_the_guess(tmp_path, rng):
    stack = rng.random((12, 10, 3))  # guessed as one RGB image
    np.save(tmp_path / "x.npy", stack)
    assert [im.array.shape for im in open_collection(tmp_path / "x.npy")] == [(3, 12, 10)]
    images = list(open_collection(tmp_path / "x.npy", layout="NHW", min_side=3))
    assert len(images) == 12 and images[5].array.shape == (1, 10, 3)
    np.testing.assert_allclose(images[5].array[0], stack[5], rtol=1e-6)
    with pytest.raises(ValueError, match="layout 'NCHW' does not fit"):
        open_collection(tmp_path / "x.npy", layout="NCHW")


def test_zarr_array(tmp_path, rng):
    stack = rng.integers(0, 65535, (3, 16, 16), dtype=np.uint16)
    array = zarr.create_array(str(tmp_path / "s.zarr"), shape=stack.shape, dtype="uint16",
                              chunks=(1, 16, 16))
    array[:] = stack
    images, _ = open_collection(tmp_path / "s.zarr").load()
    assert [im.id for im in images] == ["s_000", "s_001", "s_002"]
    np.testing.assert_array_equal(images[1].scaling.restore(images[1].array)[0], stack[1])


def test_ome_zarr_level0_with_z_split(tmp_path, rng):
    from ome_zarr.writer import write_image

    image = rng.integers(0, 255, (3, 2, 32, 32), dtype=np.uint8)  # c, z, y, x
    group = zarr.open_group(str(tmp_path / "cells.ome.zarr"), mode="w")
    write_image(image, group, axes="czyx", scale_factors=[2])
    images, _ = open_collection(tmp_path / "cells.ome.zarr").load()
    assert [im.id for im in images] == ["cells_z000", "cells_z001"]
    assert images[1].array.shape == (3, 32, 32)  # level 0, RGB kept
    np.testing.assert_allclose(images[1].array * 255, image[:, 1], atol=1e-4)


def test_hand_written_ome_zarr_v04(tmp_path, rng):
    raw = rng.integers(0, 4000, (16, 16), dtype=np.uint16)
    group = zarr.open_group(str(tmp_path / "old.zarr"), mode="w", zarr_format=2)
    group.create_array("0", data=raw)
    group.create_array("1", data=raw[::2, ::2])
    group.attrs["multiscales"] = [{"version": "0.4", "axes": [
        {"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
        "datasets": [{"path": "0"}, {"path": "1"}]}]
    (image,), _ = open_collection(tmp_path / "old.zarr").load()
    assert image.id == "old" and image.array.shape == (1, 16, 16)
    np.testing.assert_array_equal(image.scaling.restore(image.array)[0], raw)


def test_samples_stream_records():
    digits, skipped = open_collection("sample:digits:5").load()
    assert len(digits) == 5 and not skipped and digits[0].array.shape == (1, 8, 8)
    assert digits[0].scaling.scale == 16
    cells = list(open_collection("sample:cells:8"))
    assert len(cells) == 8 and all(c.array.shape == (1, 32, 32) for c in cells)
    assert len({c.id for c in cells}) == 8
    fashion = list(open_collection("sample:fashion-mnist:3"))
    assert [f.array.shape for f in fashion] == [(1, 32, 32)] * 3
    assert np.all(fashion[0].array[:, :2] == 0)  # zero padding 28 -> 32


def test_sample_spec_errors():
    assert parse_sample("sample:fashion-mnist:256") == ("fashion-mnist", 256)
    with pytest.raises(ValueError, match="unknown sample 'nope'"):
        open_collection("sample:nope")
    with pytest.raises(ValueError, match="bad image count"):
        open_collection("sample:digits:many")
    with pytest.raises(ValueError, match="has 1797 images; asked for 5000"):
        open_collection("sample:digits:5000")


# ------------------------------------------------------------------------ bad input table


def _bad_folder(tmp_path, rng):
    import imageio.v3 as iio

    folder = tmp_path / "in"
    folder.mkdir()
    good = rng.integers(0, 255, (16, 16), dtype=np.uint8)
    iio.imwrite(folder / "good.png", good)
    tifffile.imwrite(folder / "good16.tif", rng.integers(0, 65535, (16, 16), dtype=np.uint16))
    tifffile.imwrite(folder / "whole.tif", rng.integers(0, 65535, (64, 64), dtype=np.uint16))
    data = (folder / "whole.tif").read_bytes()
    (folder / "truncated.tif").write_bytes(data[: len(data) // 2])
    (folder / "whole.tif").unlink()
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image")
    (folder / "fake.png").write_text("not a png either")
    tifffile.imwrite(folder / "nan.tif", np.where(good > 128, np.nan, 0.5).astype(np.float32))
    tifffile.imwrite(folder / "inf.tif", np.where(good > 128, np.inf, 0.5).astype(np.float32))
    tifffile.imwrite(folder / "constant.tif", np.full((16, 16), 7, np.uint16))
    tifffile.imwrite(folder / "tiny.tif", np.array([[3]], np.uint8))
    tifffile.imwrite(folder / "complex.tif", (good + 1j * good).astype(np.complex64))
    tifffile.imwrite(folder / "mask.tif", good > 100)
    tifffile.imwrite(folder / "huge.tif", shape=(4100, 4100), dtype=np.uint8)  # sparse file
    (folder / ".DS_Store").write_bytes(b"\0\1")
    return folder


def test_bad_inputs_are_skipped_with_reasons(tmp_path, rng):
    folder = _bad_folder(tmp_path, rng)
    collection = open_collection(folder)
    images = list(collection)
    assert sorted(im.id for im in images) == ["good", "good16"]
    reasons = {s.id: s.reason for s in collection.skipped}
    expected = {
        "truncated": "unreadable",
        "empty": "empty file (0 bytes)",
        "notes": "not an image file (suffix '.txt'",
        "fake": "unreadable PNG",
        "nan": "NaN/Inf pixel(s)",
        "inf": "NaN/Inf pixel(s)",
        "constant": "constant image (every pixel = 7)",
        "tiny": "image is 1x1, smaller than min_side=8",
        "complex": "unsupported dtype complex64",
        "mask": "unsupported dtype bool",
        "huge": "image is 4100x4100, over max_pixels=16777216; cut it into tiles",
    }
    assert set(reasons) == set(expected)
    for image_id, phrase in expected.items():
        assert phrase in reasons[image_id], (image_id, reasons[image_id])
        assert "\n" not in reasons[image_id]


def test_collection_is_reiterable_and_streams(tmp_path, rng):
    folder = _bad_folder(tmp_path, rng)
    collection = open_collection(folder)
    first = next(iter(collection))  # lazily: one image decoded, the rest untouched
    assert first.id == "good"
    assert len(list(collection)) == 2 and len(list(collection)) == 2
    assert len(collection.skipped) == 11


def test_images_are_decoded_one_at_a_time(tmp_path, rng):
    for name in ("a", "b", "c"):
        tifffile.imwrite(tmp_path / f"{name}.tif", rng.integers(0, 255, (16, 16), np.uint8))
    items = open_collection(tmp_path).items()
    assert next(items).id == "a"
    (tmp_path / "c.tif").write_bytes(b"")  # damaged after the first image was read
    rest = list(items)
    assert [(r.id, getattr(r, "reason", None)) for r in rest] == [
        ("b", None), ("c", "empty file (0 bytes)")]


def test_collection_level_errors(tmp_path):
    with pytest.raises(ValueError, match="source not found"):
        open_collection(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty collection: no image files"):
        open_collection(tmp_path / "empty")
    np.save(tmp_path / "none.npy", np.zeros((0, 8, 8)))
    with pytest.raises(ValueError, match="empty collection"):
        open_collection(tmp_path / "none.npy")
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(ValueError, match="unsupported source"):
        open_collection(tmp_path / "x.csv")
    with pytest.raises(ValueError, match="unknown scaling"):
        open_collection(tmp_path, scaling="log")


def test_to_unit_range_records():
    x, record = to_unit_range(np.array([[0, 255], [10, 20]], np.uint8))
    assert record == Scaling("uint8", 255.0, 0.0, "dtype") and x.max() == 1
    x, record = to_unit_range(np.array([[-32768, 0], [10, 32767]], np.int16))
    assert record.offset == -32768 and record.scale == 65535 and x.min() == 0 and x.max() == 1
    x, record = to_unit_range(np.array([[0, 1e6], [2, 3]], np.uint32))
    assert record.mode == "range" and record.scale == 1e6
