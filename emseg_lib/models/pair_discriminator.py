"""The discriminator of adversarial segmentation (thesis 6.1): a PatchGAN on (image, cell map)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import spectral_norm


class PairDiscriminator(nn.Module):
    """Spectral-normalised PatchGAN on ``cat(image, cell map)``.

    Shapes: ``image`` and ``cell_map`` ``(N, 1, H, W)`` -> ``(N,)`` mean patch score.
    """

    def __init__(self, width: int = 32, depth: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 2
        for i in range(depth):
            out = width * 2**i
            layers += [spectral_norm(nn.Conv2d(channels, out, 4, stride=2, padding=1)),
                       nn.LeakyReLU(0.2)]
            channels = out
        layers.append(spectral_norm(nn.Conv2d(channels, 1, 3, padding=1)))
        self.net = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor, cell_map: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([image, cell_map], dim=1)).mean(dim=(1, 2, 3))
