"""Whole-volume segmentation to HDF5: input checked first, output written only when complete."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emseg_lib import EmsegInputError
from emseg_lib.models import UNet2D
from emseg_lib.output import pipeline
from emseg_lib.profiles import get_profile

POST = pipeline.Postprocessing("seeded", workers=1)
TILING = get_profile("smoke").tiling_3d


def _model() -> UNet2D:
    torch.manual_seed(0)
    return UNet2D(base_width=2, depth=2).eval()


def test_non_uint8_raw_is_refused_before_any_work(tmp_path):
    with pytest.raises(EmsegInputError, match=r"raw data is float32, expected uint8; .*rescale"):
        pipeline.segment_to_file(_model(), np.zeros((2, 16, 16), np.float32),
                                 tmp_path / "seg.h5", POST, tiling=TILING,
                                 resolution=(40, 4, 4), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_failure_mid_volume_leaves_the_previous_output(tmp_path, monkeypatch):
    out = tmp_path / "seg.h5"
    out.write_bytes(b"previous results")
    calls = []

    def failing_on_the_second_chunk(prob, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return np.ones(prob.shape, np.int64)

    monkeypatch.setattr(pipeline, "segment_volume", failing_on_the_second_chunk)
    raw = np.random.default_rng(0).integers(0, 256, (3, 16, 16), dtype=np.uint8)
    with pytest.raises(KeyboardInterrupt):
        pipeline.segment_to_file(_model(), raw, out, POST, tiling=TILING,
                                 resolution=(40, 4, 4), chunk_slices=1, device="cpu",
                                 progress=False)
    assert out.read_bytes() == b"previous results"
    assert [p.name for p in tmp_path.iterdir()] == ["seg.h5"]


def test_output_bound_is_uncompressed_labels_and_probabilities():
    assert pipeline.output_bytes_bound((125, 1250, 1250)) == 125 * 1250 * 1250 * 12


def test_the_segment_count_is_the_number_of_distinct_ids_not_the_largest(tmp_path, monkeypatch):
    def gapped(prob, *args, **kwargs):  # two segments per chunk, ids 5 and 90
        labels = np.full(prob.shape, 5, np.int64)
        labels[:, :, 8:] = 90
        return labels

    monkeypatch.setattr(pipeline, "segment_volume", gapped)
    prob = np.full((3, 16, 16), 0.5, np.float32)
    run = pipeline.postprocess_to_file(prob, tmp_path / "seg.h5", POST, resolution=(40, 4, 4),
                                       chunk_slices=1, progress=False)
    assert run.cells == 6
