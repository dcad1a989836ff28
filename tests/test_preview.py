"""Pictures of results: the preview slices kept while a volume is segmented, the preview
figure and the per-slice score plot."""

from __future__ import annotations

import numpy as np
import pandas as pd

from emseg_lib.output.preview import PreviewSamples, preview_path, preview_slices, save_preview
from emseg_lib.report.plots import segmentation_preview, slice_scores


def test_preview_slices_are_evenly_spaced_and_kept_from_chunks():
    assert preview_slices(20) == [3, 10, 16]
    assert preview_slices(2) == [0, 1]
    assert preview_slices(1) == [0]
    samples = PreviewSamples(20)
    rng = np.random.default_rng(0)
    for z0 in range(0, 20, 8):  # chunks of 8 slices, the last one short
        n = min(8, 20 - z0)
        prob = rng.random((n, 6, 5)).astype(np.float32)
        labels = np.arange(z0, z0 + n)[:, None, None] * np.ones((1, 6, 5), np.uint64)
        samples.take(z0, prob, labels)
    assert [s.z for s in samples.samples] == [3, 10, 16]
    assert all(s.labels[0, 0] == s.z and s.raw is None for s in samples.samples)
    assert not PreviewSamples(20, count=0).wanted


def test_preview_figure_has_a_row_per_slice_and_raw_only_when_given(tmp_path):
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(1, 5), 16).reshape(8, 8).astype(np.uint64)
    samples = PreviewSamples(4)
    samples.take(0, rng.random((4, 8, 8)), np.stack([labels] * 4),
                 rng.integers(0, 255, (4, 8, 8), dtype=np.uint8))
    figure = segmentation_preview(samples.samples, "with raw")
    assert len(figure.axes) == 3 * len(samples.samples)
    without = PreviewSamples(4)
    without.take(0, rng.random((4, 8, 8)), np.stack([labels] * 4))
    assert len(segmentation_preview(without.samples, "probabilities only").axes) == 2 * 3
    path = save_preview(figure, preview_path(tmp_path / "seg.zarr"))
    assert path == tmp_path / "seg.preview.png" and path.read_bytes()[:4] == b"\x89PNG"
    assert [p.name for p in tmp_path.iterdir()] == ["seg.preview.png"]


def test_slice_scores_plot_has_both_axes():
    table = pd.DataFrame({"slice": [0, 1, 2], "voi_split": [0.1, 0.2, 0.3],
                          "voi_merge": [0.3, 0.2, 0.1], "arand": [0.05, 0.1, 0.2]})
    figure = slice_scores(table, "scores")
    voi, rand = figure.axes
    assert voi.get_ylabel() == "VOI (bits)" and "Rand" in rand.get_ylabel()
    assert [len(line.get_xdata()) for line in voi.get_lines() + rand.get_lines()] == [3, 3, 3]
