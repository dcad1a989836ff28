"""3D post-processing in chunks of slices (``emseg postprocess`` / ``segment --dims 3``
without ``--engine``): each chunk is segmented with a z halo and stitched to the chunk before
it, so a segment crossing a chunk face keeps one id, and an interrupted run resumes to the
same labels."""

from __future__ import annotations

import h5py
import numpy as np
from scipy import ndimage as ndi

from emseg_lib.cli import main
from emseg_lib.data.cremi import LABELS_KEY, PROBABILITY_KEY
from emseg_lib.data.synthetic import label_probability
from emseg_lib.output.stitching import ChunkStitcher


def _columns(z: int) -> np.ndarray:
    """``(z, 4, 12)`` three columns through z, ids 1, 2, 3 (4 voxels wide each)."""
    return np.repeat(np.repeat(np.array([1, 2, 3]), 4)[None, None], 4, axis=1).repeat(z, 0)


def test_a_chunk_takes_the_ids_of_the_segments_it_continues():
    first, second = ChunkStitcher(), _columns(6) + 6  # the second chunk numbers them 7, 8, 9
    second[3:, :, 8:] = 10  # the third column is another segment in its upper half
    ids, new = first.add(_columns(4), np.zeros((0, 4, 12)), second[:2])
    assert new == 3 and set(np.unique(ids)) == {1, 2, 3}
    below = _columns(2) + 6  # the second chunk's view of the first chunk's last slices
    ids, new = first.add(second, below, np.zeros((0, 4, 12)))
    np.testing.assert_array_equal(ids[:3, 0], [[1] * 4 + [2] * 4 + [3] * 4] * 3)
    assert new == 1 and set(np.unique(ids[3:, 0, 8:])) == {4}


def test_a_chunk_never_merges_two_segments_of_the_chunk_before_it():
    stitcher = ChunkStitcher()
    merged = np.where(_columns(4) < 3, 7, 8)  # the next chunk joins columns 1 and 2
    stitcher.add(_columns(4), np.zeros((0, 4, 12)), merged[:2])
    ids, new = stitcher.add(merged, np.where(_columns(2) < 3, 7, 8), np.zeros((0, 4, 12)))
    assert new == 1 and ids[0, 0, 0] == ids[0, 0, 4] == 4  # half of 7 each: no majority
    assert set(np.unique(ids[:, :, 8:])) == {3}


def _cells(shape: tuple[int, int, int], n: int, seed: int) -> np.ndarray:
    """``shape`` ids 1..n: the 3D Voronoi cells of ``n`` random points."""
    markers = np.zeros(shape, dtype=np.int64)
    points = np.random.default_rng(seed).integers(0, shape, size=(n, 3))
    markers[tuple(points.T)] = np.arange(1, n + 1)
    _, nearest = ndi.distance_transform_edt(markers == 0, return_indices=True)
    return markers[tuple(nearest)]


def _probabilities(tmp_path) -> tuple[str, np.ndarray]:
    labels = _cells((24, 64, 64), 40, seed=4)
    path = tmp_path / "prob.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset(PROBABILITY_KEY, data=label_probability(labels)).attrs[
            "resolution"] = [8.0, 8.0, 8.0]
    return str(path), labels


def _segment(prob: str, out, chunk_slices: int) -> np.ndarray:
    assert main(["postprocess", "--prob", prob, "--out", str(out), "--dims", "3",
                 "--seed-th", "0.8", "--min-seed-px", "4", "--chunk-slices",
                 str(chunk_slices)]) == 0
    with h5py.File(out) as handle:
        return handle[LABELS_KEY][:]


def test_3d_chunks_keep_the_ids_of_segments_crossing_their_faces(tmp_path):
    """Without stitching every segment would get a new id at each chunk face (0 % kept);
    stitched, the pairs of voxels of one true cell across a face keep one id nearly as often
    as in the whole volume segmented at once (a cell whose seed lies beyond a chunk's halo
    is flooded there by its neighbours: thicker chunks come closer)."""
    prob, labels = _probabilities(tmp_path)
    whole = _segment(prob, tmp_path / "whole.h5", 24)
    chunked = _segment(prob, tmp_path / "chunked.h5", 6)
    assert len(np.unique(whole)) > 20 and len(np.unique(chunked)) > 20

    def kept(seg: np.ndarray, z: int) -> float:
        same = labels[z - 1] == labels[z]
        return float(np.mean(seg[z - 1][same] == seg[z][same]))

    assert all(kept(whole, z) > 0.95 for z in (6, 12, 18))
    assert all(kept(chunked, z) > 0.8 for z in (6, 12, 18))  # the chunk faces
