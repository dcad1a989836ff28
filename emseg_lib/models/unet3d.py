"""The residual symmetric 3D UNet of Lee et al. 2017, as in pytorch_connectomics (thesis 3.2.4).

Filters ``[28, 36, 48, 64, 80]``, ELU, BatchNorm3d, replicate padding, bias-free convolutions
except the output. Anisotropic: levels 0-2 use in-plane ``(1, 3, 3)`` kernels and downsample
only in-plane, levels 3-4 use ``(3, 3, 3)`` kernels and downsample in z as well. Encoder levels
are a (strided) conv followed by a residual block; decoder levels convolve at the low
resolution, upsample trilinearly to the skip's size and **add** the skip. 923,201 parameters
at the default filters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from emseg_lib.models.unet2d import kaiming_init

LEE2017_FILTERS = (28, 36, 48, 64, 80)


def conv_bn_elu(in_channels: int, out_channels: int, kernel: tuple[int, int, int],
                stride: tuple[int, int, int] = (1, 1, 1)) -> nn.Sequential:
    """Bias-free 3D conv with replicate "same" padding -> BatchNorm3d -> ELU."""
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, kernel, stride=stride,
                  padding=tuple(k // 2 for k in kernel), padding_mode="replicate", bias=False),
        nn.BatchNorm3d(out_channels),
        nn.ELU(inplace=True),
    )


class ResidualBlock3d(nn.Module):
    """conv(1,3,3) -> BN -> ELU -> conv(1,3,3) -> BN, add the input, ELU (channels kept)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.first = conv_bn_elu(channels, channels, (1, 3, 3))
        self.second = nn.Sequential(
            nn.Conv3d(channels, channels, (1, 3, 3), padding=(0, 1, 1),
                      padding_mode="replicate", bias=False),
            nn.BatchNorm3d(channels),
        )
        self.act = nn.ELU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.second(self.first(x)) + x)


class UNet3D(nn.Module):
    """Lee et al. 2017 residual symmetric UNet.

    Args:
        in_channels: image channels (1).
        out_channels: output logits (1 for the cell map, 3 for affinities).
        filters: channels per level (Lee et al.: 28, 36, 48, 64, 80).

    Shapes:
        input ``(N, in_channels, D, H, W)``; output ``(N, out_channels, D, H, W)`` logits. Any
        size works (decoder upsamples to each skip's size); sizes ``2n + 1`` align exactly.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1,
                 filters: Sequence[int] = LEE2017_FILTERS) -> None:
        super().__init__()
        filters = list(filters)
        self.config = {"in_channels": in_channels, "out_channels": out_channels,
                       "filters": tuple(filters)}
        n_levels = len(filters)
        self.stem = conv_bn_elu(in_channels, filters[0], (1, 5, 5))
        self.encoder = nn.ModuleList()
        for i in range(n_levels):
            isotropic = i >= n_levels - 2
            kernel = (3, 3, 3) if isotropic else (1, 3, 3)
            stride = (1, 1, 1) if i == 0 else ((2, 2, 2) if isotropic else (1, 2, 2))
            self.encoder.append(nn.Sequential(
                conv_bn_elu(filters[max(i - 1, 0)], filters[i], kernel, stride),
                ResidualBlock3d(filters[i]),
            ))
        self.decoder_convs = nn.ModuleList()
        self.decoder_blocks = nn.ModuleList()
        for j in range(n_levels - 1, 0, -1):
            kernel = (3, 3, 3) if j >= n_levels - 2 else (1, 3, 3)
            self.decoder_convs.append(conv_bn_elu(filters[j], filters[j - 1], kernel))
            self.decoder_blocks.append(ResidualBlock3d(filters[j - 1]))
        self.head = nn.Conv3d(filters[0], out_channels, (1, 5, 5), padding=(0, 2, 2),
                              padding_mode="replicate")
        kaiming_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        skips = []
        for level in self.encoder:
            x = level(x)
            skips.append(x)
        x = skips.pop()
        for conv, block in zip(self.decoder_convs, self.decoder_blocks, strict=True):
            skip = skips.pop()
            x = F.interpolate(conv(x), size=skip.shape[2:], mode="trilinear",
                              align_corners=True)
            x = block(x + skip)
        return self.head(x)
