"""In-plane resizing: the same pixels as skimage's resize, labels exactly, image to rounding."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.transform import resize

from emseg_lib.data.resize import resize_linear, resize_nearest
from emseg_lib.data.targets import instance_boundary

SIZES = [((3, 223, 223), (160, 160)), ((1, 200, 171), (160, 97)), ((2, 40, 40), (64, 57)),
         ((1, 1, 9), (5, 3)), ((1, 7, 1), (7, 4))]


@pytest.mark.parametrize(("shape", "size"), SIZES)
def test_nearest_is_skimage_order_0_exactly(shape, size):
    labels = np.random.default_rng(0).integers(0, 2 ** 40, shape, dtype=np.uint64)
    expected = resize(labels, (shape[0], *size), order=0, anti_aliasing=False,
                      preserve_range=True)
    out = resize_nearest(labels, size)
    assert out.dtype == np.uint64
    np.testing.assert_array_equal(out, expected.astype(np.uint64))


@pytest.mark.parametrize(("shape", "size"), SIZES)
def test_linear_is_skimage_order_1_to_rounding(shape, size):
    image = np.random.default_rng(1).random(shape, dtype=np.float32)
    expected = resize(image, (shape[0], *size), order=1, anti_aliasing=False,
                      preserve_range=True)
    out = resize_linear(image, size)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("thickness", [1, 2, 3])
def test_instance_boundary_dilation_is_the_square_dilation(thickness):
    labels = np.random.default_rng(2).integers(1, 4, (2, 31, 26))
    contour = instance_boundary(labels, 0, background=False)
    square = np.ones((1, 2 * thickness + 1, 2 * thickness + 1), dtype=bool)
    np.testing.assert_array_equal(instance_boundary(labels, thickness, background=False),
                                  ndi.binary_dilation(contour, structure=square))
