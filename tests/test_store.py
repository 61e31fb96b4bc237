"""The chunked collection store: groups, chunks, sigma, benchmark noise, output safety."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tifffile

from data.collection import Collection, ImageRecord, Scaling, open_collection
from data.store import (
    OutputExistsError,
    OutputWriteError,
    auto_chunk_size,
    noise_for,
    open_store,
    read_chunk,
    write_collection,
)


def _folder(tmp_path, rng, sizes=((16, 16),) * 5 + ((24, 20),) * 3, name="in"):
    folder = tmp_path / name
    folder.mkdir()
    for i, (height, width) in enumerate(sizes):
        tifffile.imwrite(folder / f"im{i:02d}.tif",
                         rng.integers(0, 65535, (height, width), dtype=np.uint16))
    return folder


def _by_id(store_path) -> dict[str, dict]:
    out = {}
    for unit in open_store(store_path).chunks:
        chunk = read_chunk(store_path, unit.group, unit.chunk_index)
        for k, image_id in enumerate(chunk["ids"]):
            out[str(image_id)] = {key: (value[k] if value is not None else None)
                                  for key, value in chunk.items() if key != "scaling"}
            out[str(image_id)]["scaling"] = chunk["scaling"][k]
    return out


def _hashes(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture
def rng():
    return np.random.default_rng(1)


def test_mixed_sizes_make_two_groups_and_keep_every_pixel(tmp_path, rng):
    folder = _folder(tmp_path, rng)
    before = _hashes(folder)
    info = write_collection(folder, tmp_path / "s.zarr", chunk_size=2, sigma=0.05)
    assert _hashes(folder) == before  # inputs untouched
    assert {g: grp.shape for g, grp in info.groups.items()} == {"g0": (5, 1, 16, 16),
                                                                "g1": (3, 1, 24, 20)}
    assert info.n_images == 8 and not info.skipped and not info.has_clean
    assert [(u.group, u.chunk_index, u.start, u.stop) for u in info.chunks] == [
        ("g0", 0, 0, 2), ("g0", 1, 2, 4), ("g0", 2, 4, 5), ("g1", 0, 0, 2), ("g1", 1, 2, 3)]
    stored = _by_id(tmp_path / "s.zarr")
    for image in open_collection(folder):
        np.testing.assert_array_equal(stored[image.id]["noisy"], image.array)
        assert stored[image.id]["sigma"] == np.float32(0.05)
        assert Scaling.from_dict(stored[image.id]["scaling"]) == image.scaling
        assert stored[image.id]["sources"] == image.source
    assert sorted(int(v["index"]) for v in stored.values()) == list(range(8))
    assert info.attrs["sigma_mode"] == "given" and info.attrs["seed"] == 0


def test_automatic_chunks_hold_a_pixel_budget_per_image_size(tmp_path, rng):
    assert auto_chunk_size((1, 16, 16), 1024) == 4
    assert auto_chunk_size((3, 512, 512), 1024) == 1  # never 0
    assert auto_chunk_size((1, 2, 2), 2**30) == 4096  # capped
    # Each size group gets its own: 16x16 images 4 to a chunk, 24x20 images 2 to a chunk.
    info = write_collection(_folder(tmp_path, rng), tmp_path / "s.zarr", chunk_size=None,
                            chunk_pixels=1024, sigma=0.05)
    assert {g: grp.chunk_size for g, grp in info.groups.items()} == {"g0": 4, "g1": 2}
    assert [(u.group, u.start, u.stop) for u in info.chunks] == [
        ("g0", 0, 4), ("g0", 4, 5), ("g1", 0, 2), ("g1", 2, 3)]
    assert info.attrs["chunk_size"] is None


def test_benchmark_noise_does_not_depend_on_chunk_size_or_skips(tmp_path, rng):
    folder = _folder(tmp_path, rng)
    small = _by_id(write_collection(folder, tmp_path / "a.zarr", chunk_size=2, add_noise=0.1,
                                    seed=7).path)
    large = _by_id(write_collection(folder, tmp_path / "b.zarr", chunk_size=64, add_noise=0.1,
                                    seed=7).path)
    (folder / "im00.tif").write_bytes(b"")  # one image now fails: the others keep their noise
    faulty = write_collection(folder, tmp_path / "c.zarr", chunk_size=3, add_noise=0.1, seed=7)
    assert [s.id for s in faulty.skipped] == ["im00"]
    other = _by_id(faulty.path)
    assert set(small) == set(large) == set(other) | {"im00"}
    for image_id, values in small.items():
        np.testing.assert_array_equal(values["noisy"], large[image_id]["noisy"])
        if image_id in other:
            np.testing.assert_array_equal(values["noisy"], other[image_id]["noisy"])
    reseeded = _by_id(write_collection(folder, tmp_path / "d.zarr", chunk_size=2, add_noise=0.1,
                                       seed=8).path)
    assert not np.array_equal(reseeded["im01"]["noisy"], small["im01"]["noisy"])


def test_benchmark_noise_is_gaussian_with_the_given_std_and_not_clipped(tmp_path):
    images = open_collection("sample:fashion-mnist:64")
    info = write_collection(images, tmp_path / "f.zarr", chunk_size=16, add_noise=0.2, seed=0)
    stored = _by_id(info.path)
    residual = np.stack([v["noisy"] - v["clean"] for v in stored.values()])
    # 64 * 1024 draws: the std estimate is within 1% of 0.2 with overwhelming probability.
    assert abs(residual.std() - 0.2) < 0.002 and abs(residual.mean()) < 0.003
    assert min(v["noisy"].min() for v in stored.values()) < -0.3  # not clipped to [0, 1]
    image = stored["fmnist_00003"]
    np.testing.assert_array_equal(image["noisy"], image["clean"] + np.float32(0.2)
                                  * noise_for("fmnist_00003", 0, (1, 32, 32)))
    assert info.has_clean and all(v["sigma"] == np.float32(0.2) for v in stored.values())


def test_estimated_sigma_close_to_truth(tmp_path):
    yy, xx = np.mgrid[:128, :128] / 128
    truth = [0.02, 0.05, 0.1]
    stack = []
    for k, sigma in enumerate(truth):
        smooth = 0.5 + 0.25 * np.sin(4 * np.pi * (xx + k * yy))
        noise = np.random.default_rng(k).standard_normal(smooth.shape)
        stack.append((smooth + sigma * noise).astype(np.float32))
    np.save(tmp_path / "noisy.npy", np.stack(stack))
    info = write_collection(tmp_path / "noisy.npy", tmp_path / "e.zarr", chunk_size=2,
                            estimate_sigma=True)
    stored = _by_id(info.path)
    for k, sigma in enumerate(truth):
        # min-max scaling changed the units: compare in the stored [0, 1] scale.
        scale = Scaling.from_dict(stored[f"noisy_{k:03d}"]["scaling"]).scale
        estimate = float(stored[f"noisy_{k:03d}"]["sigma"]) * scale
        assert abs(estimate / sigma - 1) < 0.15, (sigma, estimate)
    assert info.attrs["sigma_mode"] == "estimated"


@pytest.mark.parametrize("kwargs, message", [
    (dict(sigma=-0.1), "sigma must be a finite number > 0"),
    (dict(sigma=0.0), "sigma must be a finite number > 0"),
    (dict(sigma=float("nan")), "sigma must be a finite number > 0"),
    (dict(sigma=25.0), "sigma=25 is absurd"),
    (dict(add_noise=-1.0), "add_noise must be a finite number > 0"),
    (dict(), "noise level unknown"),
    (dict(sigma=0.1, add_noise=0.1), "choose one of"),
    (dict(sigma=0.1, chunk_size=0), "chunk_size must be an integer >= 1 or None"),
    (dict(sigma=0.1, seed=-3), "seed must be an integer >= 0"),
])
def test_bad_parameters(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        write_collection("sample:digits:4", tmp_path / "x.zarr", **kwargs)
    assert not (tmp_path / "x.zarr").exists() and not list(tmp_path.iterdir())


def test_bad_images_are_recorded_and_the_rest_is_written(tmp_path, rng):
    folder = _folder(tmp_path, rng, sizes=[(16, 16)] * 3)
    (folder / "zero.png").write_bytes(b"")
    np_nan = np.full((16, 16), np.nan, np.float32)
    tifffile.imwrite(folder / "nan.tif", np_nan)
    info = write_collection(folder, tmp_path / "s.zarr", chunk_size=2, sigma=0.1)
    assert info.n_images == 3
    assert {s.id: s.reason.split(" (")[0] for s in info.skipped} == {
        "zero": "empty file", "nan": "256 NaN/Inf pixel(s)"}
    assert info.attrs["n_skipped"] == 2


def test_all_bad_is_a_clear_error(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"")
    (folder / "b.tif").write_bytes(b"II*\0garbage")
    with pytest.raises(ValueError, match=r"no readable images in .* \(2 skipped: a: empty file"):
        write_collection(folder, tmp_path / "s.zarr", sigma=0.1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"]


def test_existing_store_is_not_overwritten(tmp_path):
    first = write_collection("sample:digits:4", tmp_path / "s.zarr", sigma=0.1)
    with pytest.raises(OutputExistsError, match="already exists; pass overwrite=True"):
        write_collection("sample:digits:6", tmp_path / "s.zarr", sigma=0.1)
    assert open_store(first.path).n_images == 4
    again = write_collection("sample:digits:6", tmp_path / "s.zarr", sigma=0.1, overwrite=True)
    assert again.n_images == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]  # no temporary left


def test_read_chunk_and_open_store_errors(tmp_path):
    write_collection("sample:digits:5", tmp_path / "s.zarr", chunk_size=2, sigma=0.1)
    with pytest.raises(ValueError, match="no group 'g9'"):
        read_chunk(tmp_path / "s.zarr", "g9", 0)
    with pytest.raises(ValueError, match="chunk index 3 out of range for group 'g0' \\(3 chunks"):
        read_chunk(tmp_path / "s.zarr", "g0", 3)
    with pytest.raises(ValueError, match="store not found"):
        open_store(tmp_path / "nope.zarr")
    import zarr

    root = zarr.open_group(str(tmp_path / "s.zarr"), mode="r+")
    root.attrs["complete"] = False
    with pytest.raises(ValueError, match="is incomplete"):
        open_store(tmp_path / "s.zarr")


def test_a_killed_write_leaves_no_store(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        from data.collection import open_collection, Collection
        from data.store import write_collection
        base = open_collection("sample:digits:200")
        def slow():
            for k, item in enumerate(base.items()):
                if k == 20:
                    print("writing", flush=True)
                time.sleep(0.02)
                yield item
        write_collection(Collection("slow", slow), {str(tmp_path / "s.zarr")!r}, chunk_size=4,
                         sigma=0.1)
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                               cwd=os.getcwd(), text=True)
    assert process.stdout.readline().strip() == "writing"
    time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert not (tmp_path / "s.zarr").exists()  # nothing that could pass for a complete store
    with pytest.raises(ValueError, match="store not found"):
        open_store(tmp_path / "s.zarr")
    info = write_collection("sample:digits:8", tmp_path / "s.zarr", sigma=0.1)  # rerun works
    assert info.n_images == 8


def test_duplicate_ids_are_skipped(tmp_path):
    image = np.linspace(0, 1, 64, dtype=np.float32).reshape(1, 8, 8)
    scaling = Scaling("float32", 1.0, 0.0, "identity")

    def items():
        yield ImageRecord("a", "x", image, scaling)
        yield ImageRecord("a", "y", image, scaling)

    info = write_collection(Collection("dup", items), tmp_path / "s.zarr", sigma=0.1)
    assert info.n_images == 1 and [(s.id, s.reason) for s in info.skipped] == [
        ("a", "duplicate image id")]


def test_full_disk_is_a_clear_error_and_leaves_nothing(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a size-limited tmpfs")
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        noise = np.random.default_rng(0).random((64, 64, 64)).astype(np.float32)  # 1 MiB
        np.save(tmp_path / "big.npy", noise)
        with pytest.raises(OutputWriteError, match="no space left on device"):
            write_collection(tmp_path / "big.npy", mount / "s.zarr", chunk_size=4, sigma=0.1)
        assert list(mount.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mount)], check=True)
