"""The fast post-processing gives exactly the labels of the SciPy / scikit-image code it
replaced (:mod:`emseg_lib.postprocess.reference`), on synthetic and network-like maps, with
ties."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy.special import expit
from skimage.measure import label as sk_label
from skimage.morphology import h_maxima as sk_h_maxima
from skimage.segmentation import watershed as sk_watershed

from emseg_lib.data.targets import cell_target, instance_boundary
from emseg_lib.postprocess import flood_boundaries, get_method, seeded_watershed
from emseg_lib.postprocess.flooding import flood, watershed_lines
from emseg_lib.postprocess.morphology import distance_map, h_maxima, label, segment_means
from emseg_lib.postprocess.reference import reference_flood, reference_seeded, reference_thesis
from emseg_lib.postprocess.thesis import watershed_postprocess


def _network_like(labels: np.ndarray, seed: int, blur: float = 1.5, noise: float = 0.08,
                  gaps: bool = True) -> np.ndarray:
    """A cell probability like a network's: blurred target, noise, opened membranes."""
    rng = np.random.default_rng(seed)
    target = cell_target(instance_boundary(labels.astype(np.int64))).astype(np.float64)
    if gaps:  # membranes faded in blobs: openings for the watershed to close
        fade = ndi.gaussian_filter(rng.random(labels.shape), 4) > 0.53
        target = np.where(fade, np.maximum(target, 0.88), target)
    sigma = (0, blur, blur) if labels.ndim == 3 else blur
    prob = ndi.gaussian_filter(target, sigma) + rng.normal(0.0, noise, labels.shape)
    return np.clip(prob, 0.0, 1.0).astype(np.float32)


@pytest.fixture(scope="module")
def maps(small_volume):
    """(name, (Y, X) float32 probability) pairs: blurred targets with noise, saturated
    sigmoids (plateaus at 1.0), uint8-quantised maps (ties everywhere), a float64 map."""
    labels = small_volume.labels
    out = [(f"synthetic{z}", _network_like(labels[z], z)) for z in range(3)]
    logits = 30 * (_network_like(labels[3], 3, noise=0.02) - 0.5)
    out.append(("saturated sigmoid", expit(logits).astype(np.float32)))
    out.append(("uint8", np.round(_network_like(labels[4], 4) * 255).astype(np.float32) / 255))
    out.append(("float64", _network_like(labels[5], 5).astype(np.float64)))
    out.append(("no noise", _network_like(labels[6], 6, noise=0.0, gaps=False)))
    return out


@pytest.mark.parametrize("sig_th, edge_th", [(0.83, 0.91), (0.5, 0.6), (0.95, 1.0),
                                             (0.3, 0.3)])
def test_thesis_labels_equal_the_reference(maps, sig_th, edge_th):
    for name, prob in maps:
        fast = watershed_postprocess(prob, sig_th, edge_th)
        np.testing.assert_array_equal(fast, reference_thesis(prob, sig_th, edge_th),
                                      err_msg=name)
        np.testing.assert_array_equal(flood_boundaries(fast, prob),
                                      reference_flood(fast, prob), err_msg=name)


def test_thesis_grid_equals_the_reference(maps):
    method = get_method("thesis")
    name, prob = maps[0]
    for outer in method.grid["sig_th"][::3]:
        for thresholds, seg in method.grid_segmentations(prob, outer):
            kept = reference_thesis(prob, thresholds["sig_th"], thresholds["edge_th"])
            np.testing.assert_array_equal(seg, reference_flood(kept, prob), err_msg=name)


@pytest.mark.parametrize("seed_th, smooth_px", [(0.8, 1.0), (0.9, 0.0), (0.6, 2.0)])
def test_seeded_labels_equal_the_reference(maps, seed_th, smooth_px):
    for name, prob in maps:
        np.testing.assert_array_equal(seeded_watershed(prob, seed_th, smooth_px),
                                      reference_seeded(prob, seed_th, smooth_px),
                                      err_msg=name)


def test_full_size_slice_equals_the_reference():
    """A 512² slice with hundreds of cells and ties of equal distance between markers."""
    from emseg_lib.data import synthetic_em_volume
    labels = synthetic_em_volume((1, 512, 512), seed=7).labels[0]
    prob = _network_like(labels, 7)
    kept = watershed_postprocess(prob, 0.83, 0.91)
    np.testing.assert_array_equal(kept, reference_thesis(prob, 0.83, 0.91))
    np.testing.assert_array_equal(flood_boundaries(kept, prob), reference_flood(kept, prob))


@pytest.mark.parametrize("sampling", [None, (40.0, 4.0, 4.0)])
def test_3d_labels_equal_the_reference(small_volume, sampling):
    prob = _network_like(small_volume.labels[:6, :64, :64], 11)
    fast = watershed_postprocess(prob, 0.7, 0.85, sampling=sampling)
    np.testing.assert_array_equal(fast, reference_thesis(prob, 0.7, 0.85, sampling=sampling))
    np.testing.assert_array_equal(flood_boundaries(fast, prob), reference_flood(fast, prob))


@pytest.mark.parametrize("levels", [3, 50])
def test_watershed_lines_replay_scikit_image_on_plateaus(levels):
    """Integer elevations: most keys tie, so the heap's own tie order decides."""
    rng = np.random.default_rng(levels)
    for trial in range(5):
        elevation = rng.integers(0, levels, (61, 47)).astype(np.float32)
        markers = np.zeros(elevation.shape, np.int64)
        spots = rng.integers(0, elevation.size, 30 + 40 * trial)
        markers.ravel()[spots] = rng.integers(1, 12, spots.size)
        np.testing.assert_array_equal(
            watershed_lines(elevation, markers),
            sk_watershed(elevation, markers, connectivity=1, watershed_line=True))


@pytest.mark.parametrize("levels", [2, 5, 255])
@pytest.mark.parametrize("shape", [(61, 47), (7, 19, 23)])
def test_flood_replays_scikit_image_on_plateaus(levels, shape):
    """Without lines, every pixel takes its label when it enters the queue: the first marker
    of a tie to leave the heap claims the pixels between tied markers."""
    rng = np.random.default_rng(levels)
    for trial in range(5):
        elevation = rng.integers(0, levels, shape).astype(np.float32)
        markers = np.zeros(shape, np.int64)
        spots = rng.integers(0, elevation.size, 20 + elevation.size // (2 + trial))
        markers.ravel()[spots] = rng.integers(1, 9, spots.size)
        np.testing.assert_array_equal(flood(elevation, markers),
                                      sk_watershed(elevation, markers, connectivity=1))


def test_watershed_without_markers_and_watched_pixels():
    elevation = np.random.default_rng(0).random((20, 30)).astype(np.float32)
    np.testing.assert_array_equal(watershed_lines(elevation, np.zeros((20, 30), int)),
                                  np.zeros((20, 30), int))
    markers = np.zeros((20, 30), int)
    markers[3, 4], markers[15, 25] = 1, 2
    watch = elevation > 0.5
    full = sk_watershed(elevation, markers, connectivity=1, watershed_line=True)
    np.testing.assert_array_equal(watershed_lines(elevation, markers, watch=watch)[watch],
                                  full[watch])


def test_building_blocks_equal_scipy_and_scikit_image(maps):
    for name, prob in maps:
        for threshold in (0.2, 0.83):
            cells = prob > threshold
            distance = ndi.distance_transform_edt(cells).astype(np.float32)
            np.testing.assert_array_equal(distance_map(cells), distance, err_msg=name)
            np.testing.assert_array_equal(h_maxima(distance, 1.0), sk_h_maxima(distance, 1.0))
            for connectivity in (1, 2):
                ids, n = label(cells, connectivity, return_num=True)
                np.testing.assert_array_equal(ids, sk_label(cells, connectivity=connectivity))
                np.testing.assert_array_equal(segment_means(prob, ids, n), ndi.mean(
                    prob, labels=ids, index=np.arange(1, n + 1)))
    everything = np.ones((5, 7), bool)
    np.testing.assert_array_equal(distance_map(everything),
                                  ndi.distance_transform_edt(everything).astype(np.float32))
    assert not h_maxima(np.zeros((4, 4), np.float32), 1.0).any()


def test_marker_ids_beyond_the_packed_range_are_refused():
    """Ids share an ``int32`` with the pixel's state: ids that do not fit are an error, not
    wrapped around."""
    elevation = np.zeros((4, 5), np.float32)
    markers = np.zeros((4, 5), np.int64)
    markers[0, 0] = 2 ** 30
    with pytest.raises(ValueError, match="ids in 0"):
        watershed_lines(elevation, markers)
    markers[0, 0] = 2 ** 31
    with pytest.raises(ValueError, match="ids in 0"):
        flood(elevation, markers)
    markers[0, 0] = 2 ** 31 - 1
    assert (flood(elevation, markers) == 2 ** 31 - 1).all()
