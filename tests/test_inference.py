"""Whole-slice and tiled inference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from emseg_lib import EmsegInputError
from emseg_lib.inference import predict_slices, predict_tiled
from emseg_lib.models import UNet3D


def _local_net() -> nn.Module:
    """Two 3x3x3 replicate-padded convs: receptive-field radius 2 voxels on every axis."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv3d(1, 4, 3, padding=1, padding_mode="replicate"), nn.ELU(),
        nn.Conv3d(4, 1, 3, padding=1, padding_mode="replicate"),
    ).eval()


def _direct(model: nn.Module, volume: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        x = torch.from_numpy(volume.astype(np.float32)[None, None] / 255.0)
        return torch.sigmoid(model(x))[0, 0].numpy()


def test_tiled_equals_direct_when_halo_covers_the_receptive_field(small_volume):
    model = _local_net()
    volume = small_volume.raw[:10, :70, :60]
    tiled = predict_tiled(model, volume, tile=(6, 24, 24), overlap=(5, 8, 8),
                          halo=(2, 2, 2), device="cpu", progress=False)
    np.testing.assert_allclose(tiled, _direct(model, volume), atol=1e-5)


def test_tiled_unet3d_runs_and_one_tile_is_direct(small_volume):
    torch.manual_seed(0)
    model = UNet3D(filters=(4, 4, 6, 6, 8)).eval()
    volume = small_volume.raw[:9, :65, :65]
    whole = predict_tiled(model, volume, tile=(18, 160, 160), overlap=(4, 40, 40),
                          halo=(1, 8, 8), device="cpu", progress=False)
    np.testing.assert_allclose(whole, _direct(model, volume), atol=1e-5)
    tiled = predict_tiled(model, small_volume.raw[:9], tile=(9, 65, 65), overlap=(4, 40, 40),
                          halo=(1, 8, 8), device="cpu", progress=False)
    assert tiled.shape == (9, 96, 96) and 0 <= tiled.min() and tiled.max() <= 1


def test_tiling_parameters_checked(small_volume):
    with pytest.raises(EmsegInputError, match="2 \\* halo < overlap < tile"):
        predict_tiled(_local_net(), small_volume.raw, tile=(6, 32, 32), overlap=(4, 4, 4),
                      halo=(2, 2, 2), device="cpu", progress=False)


class _Identity(torch.nn.Module):
    """Logits = the padded input's grey value mapped through the logit: probability in = out,
    so any shift or flip of the crop shows in the output."""

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        assert batch.shape[-2] % 4 == 0 and batch.shape[-1] % 4 == 0  # padded to the multiple
        return torch.logit(batch.clamp(1e-4, 1 - 1e-4))


def test_predict_slices_pads_and_crops_without_shifting():
    ramp = (np.add.outer(np.arange(90), 2 * np.arange(70)) % 251 + 2).astype(np.uint8)
    volume = np.stack([ramp, ramp[::-1], ramp[:, ::-1]])  # 90 x 70: not multiples of 4
    prob = predict_slices(_Identity(), volume, multiple=4, batch_size=2, device="cpu",
                          progress=False)
    assert prob.shape == volume.shape and prob.dtype == np.float32
    np.testing.assert_allclose(prob, volume / 255.0, atol=1e-5)
