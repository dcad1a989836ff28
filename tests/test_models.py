"""UNet2D and UNet3D: shapes, parameter counts at thesis widths, learning on a tiny batch."""

from __future__ import annotations

import pytest
import torch

from emseg_lib import EmsegInputError
from emseg_lib.models import UNet2D, UNet3D


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_unet2d_thesis_parameter_count():
    count = n_params(UNet2D())
    assert abs(count - 31.0e6) / 31.0e6 < 0.02
    assert count == 31_036_481  # REFERENCE.md: bias-free 3x3 convs


def test_unet3d_thesis_parameter_count():
    count = n_params(UNet3D())
    assert abs(count - 0.92e6) / 0.92e6 < 0.02
    assert count == 923_201


def test_unet2d_shapes():
    model = UNet2D(base_width=4, depth=4)
    assert model(torch.zeros(2, 1, 48, 64)).shape == (2, 1, 48, 64)
    with pytest.raises(EmsegInputError, match="multiples of 8"):
        model(torch.zeros(1, 1, 50, 64))


@pytest.mark.parametrize("shape", [(1, 1, 18, 64, 64), (2, 1, 9, 33, 33), (1, 1, 1, 32, 32)])
def test_unet3d_shapes(shape):
    model = UNet3D(filters=(4, 4, 6, 6, 8)).eval()
    assert model(torch.zeros(shape)).shape == (shape[0], 1, *shape[2:])
    assert UNet3D(out_channels=3, filters=(4, 4, 6, 6, 8))(torch.zeros(shape)).shape[1] == 3


@pytest.mark.parametrize("make, shape", [
    (lambda: UNet2D(base_width=4, depth=3), (2, 1, 32, 32)),
    (lambda: UNet3D(filters=(4, 4, 6, 6, 8)), (1, 1, 5, 32, 32)),
])
def test_loss_decreases_on_a_tiny_batch(make, shape):
    torch.manual_seed(0)
    model = make()
    image = torch.rand(shape)
    target = (image > 0.5).float()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    losses = []
    for _ in range(15):
        loss = loss_fn(model(image), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
