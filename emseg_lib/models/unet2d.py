"""The 2D UNet of Ronneberger et al. 2015 with batch normalisation (thesis 3.1, 4.3).

Each level is two (3x3 conv, stride 1, pad 1, no bias) -> BatchNorm2d -> ReLU; max-pool 2 down,
ConvTranspose2d(k=2, s=2) up, skip connections by concatenation, a 1x1 conv to one logit.
At the thesis width (64 -> 1024 channels, 5 levels) it has 31,036,481 parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from emseg_lib.errors import EmsegInputError


class DoubleConv2d(nn.Sequential):
    """Two (3x3 conv without bias -> BatchNorm2d -> ReLU) layers."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class UNet2D(nn.Module):
    """Ronneberger UNet for boundary prediction.

    Args:
        in_channels: image channels (1 for EM).
        out_channels: output logits (1: cell vs boundary).
        base_width: channels of the first level; level ``i`` has ``base_width * 2**i``
            (thesis: 64, i.e. 64 -> 1024).
        depth: number of levels (thesis: 5).

    Shapes:
        input ``(N, in_channels, H, W)`` with ``H`` and ``W`` divisible by ``2**(depth-1)``;
        output ``(N, out_channels, H, W)`` logits.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, base_width: int = 64,
                 depth: int = 5) -> None:
        super().__init__()
        if depth < 2 or base_width < 1:
            raise EmsegInputError(f"UNet2D needs depth >= 2 and base_width >= 1, got "
                                  f"depth={depth}, base_width={base_width}")
        widths = [base_width * 2**i for i in range(depth)]
        self.config = {"in_channels": in_channels, "out_channels": out_channels,
                       "base_width": base_width, "depth": depth}
        self.depth = depth
        self.down = nn.ModuleList([DoubleConv2d(in_channels, widths[0])])
        self.down.extend(DoubleConv2d(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.pool = nn.MaxPool2d(2)
        self.upsample = nn.ModuleList(
            nn.ConvTranspose2d(widths[i], widths[i - 1], kernel_size=2, stride=2)
            for i in range(depth - 1, 0, -1)
        )
        self.up = nn.ModuleList(DoubleConv2d(2 * widths[i - 1], widths[i - 1])
                                for i in range(depth - 1, 0, -1))
        self.head = nn.Conv2d(widths[0], out_channels, kernel_size=1)
        kaiming_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        multiple = 2 ** (self.depth - 1)
        if x.shape[-1] % multiple or x.shape[-2] % multiple:
            raise EmsegInputError(
                f"UNet2D input height and width must be multiples of {multiple}, "
                f"got {tuple(x.shape[-2:])}"
            )
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for upsample, block in zip(self.upsample, self.up, strict=True):
            x = block(torch.cat([skips.pop(), upsample(x)], dim=1))
        return self.head(x)


def kaiming_init(model: nn.Module) -> None:
    """Kaiming-normal weights (fan-out, ReLU gain) for every conv; zero biases (thesis 4.3.2)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Conv3d | nn.ConvTranspose2d | nn.ConvTranspose3d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
