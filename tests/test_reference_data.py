"""Profiles and the thesis's reference numbers."""

from __future__ import annotations

import pytest

from emseg_lib import EmsegInputError
from emseg_lib.models import LEE2017_FILTERS
from emseg_lib.profiles import PROFILES, get_profile
from emseg_lib.report.thesis_numbers import GRID_EDGE_DELTA, GRID_SIG_TH, threshold_grid


@pytest.mark.parametrize("model", ["unet2d", "unet3d"])
def test_thesis_grids_are_transcribed_consistently(model):
    voi = threshold_grid(model, "voi")
    assert list(voi.index) == list(GRID_SIG_TH)
    assert list(voi.columns) == list(GRID_EDGE_DELTA)
    # VOI = over- + under-segmentation in every cell of tables 5.2-5.4 / 5.7-5.9
    residual = voi - threshold_grid(model, "voi_split") - threshold_grid(model, "voi_merge")
    assert residual.abs().max().max() < 1e-6


def test_unknown_grid():
    with pytest.raises(EmsegInputError, match="no thesis grid"):
        threshold_grid("unet4d", "voi")


def test_profiles():
    assert set(PROFILES) == {"smoke", "quick", "full"}
    full = get_profile("full")
    assert full.synthetic_shape == (125, 1250, 1250)
    assert full.unet2d_width == 64 and full.unet2d.batch_size == 18
    assert full.unet3d_filters == LEE2017_FILTERS and full.unet3d.crop == (18, 160, 160)
    for profile in PROFILES.values():
        depth = profile.unet2d_depth
        assert all(c % 2 ** (depth - 1) == 0 for c in profile.unet2d.crop)
    with pytest.raises(EmsegInputError, match="profile must be one of"):
        get_profile("huge")
