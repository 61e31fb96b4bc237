"""A small soak (benchmarks/soak.py): a few hundred image files with random per-image faults;
every good image is processed (its lambda = 0 output is the exact MMSE), every bad one is listed."""

from __future__ import annotations

import pytest

from benchmarks.soak import FAULTS, run_soak


@pytest.mark.slow
@pytest.mark.timeout(400)
@pytest.mark.usefixtures("prefect_harness")
def test_soak_every_good_image_processed_every_bad_one_listed(tmp_path):
    figures = run_soak(tmp_path, images=300, fault_rate=0.2, seed=3, chunk_size=64, workers=1)
    assert figures["images_tried"] == 300
    assert figures["faults_injected"] > 30 and set(figures["faults_by_kind"]) == set(FAULTS)
    assert figures["faults_survived"] == figures["faults_injected"]
    assert figures["faults_unlisted"] == [] and figures["bad_images_in_dataset"] == []
    assert figures["good_images_skipped"] == [] and figures["data_lost"] == 0
    assert figures["good_images_processed"] == figures["good_images"] == 300 - figures[
        "faults_injected"]
    assert figures["lambda0_not_mmse"] == []
    assert figures["failed_chunks"] == {} and figures["dataset_complete"]
    assert figures["inputs_unchanged"] and figures["reasons_one_line"]
