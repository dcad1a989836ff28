"""A grayscale StyleGAN (Karras et al. 2019) in the rosinality v1 layout (thesis 3.2.9, 4.2).

Generator: mapping network (PixelNorm + 8 equalised-lr linear layers, LeakyReLU 0.2) from z to
the style w; a learned constant 4x4 input; per resolution a block of twice (conv -> noise
injection -> LeakyReLU 0.2 -> AdaIN(w)), upsampling by nearest neighbour + conv + [1, 2, 1]
blur; a 1x1 ``to_gray`` per resolution. Channels 512, 512, 512, 512, 256, 128 for 4 ... 128.

**Progressive growing**, as in the reference the thesis trained: ``forward(z, step, alpha)``
renders at ``4 * 2**step`` px and fades the newest block in with ``alpha`` (the output is
``(1 - alpha) * upsample(previous to_gray) + alpha * new to_gray``). Progressive growing is
kept rather than a fixed-resolution variant because it is what the thesis's samples (Fig 5.2)
came from and because it trains the low resolutions cheaply, which matters on a CPU; a fixed
resolution is the special case of a one-phase schedule with ``alpha = 1``.

Discriminator: mirrors the generator (``from_gray`` per resolution, two convs + 2x average
pooling per block), minibatch standard deviation before the last 4x4 block, then one linear.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from emseg_lib.errors import EmsegInputError

STYLEGAN_CHANNELS = (512, 512, 512, 512, 256, 128)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate (weights scaled by sqrt(2 / fan_in))."""

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim))
        self.bias = nn.Parameter(torch.full((out_dim,), bias_init))
        self.scale = math.sqrt(2.0 / in_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class EqualConv2d(nn.Module):
    """Conv2d with equalised learning rate; ``padding`` keeps the size for odd kernels."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 padding: int = 0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size,
                                               kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.scale = math.sqrt(2.0 / (in_channels * kernel_size**2))
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class PixelNorm(nn.Module):
    """Normalise every feature vector to unit root-mean-square."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class Blur(nn.Module):
    """Depthwise [1, 2, 1] x [1, 2, 1] / 16 low-pass filter."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        kernel = torch.tensor([1.0, 2.0, 1.0])
        kernel = (kernel[:, None] * kernel[None, :]) / 16.0
        self.register_buffer("kernel", kernel.expand(channels, 1, 3, 3).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.kernel, padding=1, groups=x.shape[1])


class NoiseInjection(nn.Module):
    """Add per-channel-scaled single-channel Gaussian noise (scales start at 0)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            noise = torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device)
        return x + self.weight * noise


class AdaIN(nn.Module):
    """Adaptive instance norm: ``gamma(w) * InstanceNorm(x) + beta(w)``."""

    def __init__(self, channels: int, style_dim: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels)
        self.style = EqualLinear(style_dim, 2 * channels)
        with torch.no_grad():
            self.style.bias[:channels] = 1.0

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.style(w)[:, :, None, None].chunk(2, dim=1)
        return gamma * self.norm(x) + beta


class StyledBlock(nn.Module):
    """One synthesis resolution: (constant | upsample + conv + blur), then conv, noise, AdaIN."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int,
                 initial: bool = False) -> None:
        super().__init__()
        self.initial = initial
        if initial:
            self.constant = nn.Parameter(torch.randn(1, in_channels, 4, 4))
        else:
            self.conv1 = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                       EqualConv2d(in_channels, out_channels, 3, 1),
                                       Blur(out_channels))
        self.noise1, self.adain1 = NoiseInjection(out_channels), AdaIN(out_channels, style_dim)
        self.conv2 = EqualConv2d(out_channels, out_channels, 3, 1)
        self.noise2, self.adain2 = NoiseInjection(out_channels), AdaIN(out_channels, style_dim)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        x = self.constant.expand(w.shape[0], -1, -1, -1) if self.initial else self.conv1(x)
        x = self.adain1(F.leaky_relu(self.noise1(x), 0.2), w)
        x = self.conv2(x)
        return self.adain2(F.leaky_relu(self.noise2(x), 0.2), w)


class StyleGenerator(nn.Module):
    """Style-based generator for 1-channel images up to ``4 * 2**(len(channels) - 1)`` px.

    Args:
        channels: feature channels per resolution, 4x4 first (default up to 128x128).
        style_dim: length of z and w (512).
        n_mapping: fully connected layers of the mapping network (8).
        out_channels: 1 (grayscale).

    Shapes: ``forward(z (N, style_dim), step, alpha)`` -> ``(N, out, 4 * 2**step, same)``
    in roughly [-1, 1] (no final squashing, as the reference).
    """

    def __init__(self, channels: Sequence[int] = STYLEGAN_CHANNELS, style_dim: int = 512,
                 n_mapping: int = 8, out_channels: int = 1) -> None:
        super().__init__()
        self.config = {"channels": tuple(channels), "style_dim": style_dim,
                       "n_mapping": n_mapping, "out_channels": out_channels}
        mapping: list[nn.Module] = [PixelNorm()]
        for _ in range(n_mapping):
            mapping += [EqualLinear(style_dim, style_dim), nn.LeakyReLU(0.2)]
        self.mapping = nn.Sequential(*mapping)
        self.blocks = nn.ModuleList(
            StyledBlock(channels[max(i - 1, 0)], channels[i], style_dim, initial=i == 0)
            for i in range(len(channels))
        )
        self.to_gray = nn.ModuleList(EqualConv2d(c, out_channels, 1) for c in channels)
        self.style_dim = style_dim

    @property
    def max_step(self) -> int:
        """Index of the highest resolution: ``4 * 2**max_step`` px."""
        return len(self.blocks) - 1

    def forward(self, z: torch.Tensor, step: int | None = None, alpha: float = 1.0
                ) -> torch.Tensor:
        step = self.max_step if step is None else step
        if not 0 <= step <= self.max_step:
            raise EmsegInputError(f"step must lie in [0, {self.max_step}], got {step}")
        w = self.mapping(z)
        x = previous = None
        for i in range(step + 1):
            previous = x
            x = self.blocks[i](x, w)
        out = self.to_gray[step](x)
        if step > 0 and alpha < 1.0:
            skip = F.interpolate(self.to_gray[step - 1](previous), scale_factor=2,
                                 mode="nearest")
            out = (1 - alpha) * skip + alpha * out
        return out


class StyleDiscriminator(nn.Module):
    """Progressive discriminator mirroring :class:`StyleGenerator`.

    Shapes: ``forward(images (N, in, 4 * 2**step, same), step, alpha)`` -> ``(N,)`` scores.
    """

    def __init__(self, channels: Sequence[int] = STYLEGAN_CHANNELS, in_channels: int = 1
                 ) -> None:
        super().__init__()
        self.config = {"channels": tuple(channels), "in_channels": in_channels}
        self.from_gray = nn.ModuleList(EqualConv2d(in_channels, c, 1) for c in channels)
        blocks: list[nn.Module] = [nn.Sequential(
            EqualConv2d(channels[0] + 1, channels[0], 3, 1), nn.LeakyReLU(0.2),
            EqualConv2d(channels[0], channels[0], 4), nn.LeakyReLU(0.2),
        )]
        for i in range(1, len(channels)):
            blocks.append(nn.Sequential(
                EqualConv2d(channels[i], channels[i], 3, 1), nn.LeakyReLU(0.2),
                EqualConv2d(channels[i], channels[i - 1], 3, 1), nn.AvgPool2d(2),
                nn.LeakyReLU(0.2),
            ))
        self.blocks = nn.ModuleList(blocks)
        self.linear = EqualLinear(channels[0], 1)

    def forward(self, images: torch.Tensor, step: int, alpha: float = 1.0) -> torch.Tensor:
        x = self.from_gray[step](images)
        for i in range(step, -1, -1):
            if i == 0:
                std = torch.sqrt(x.var(dim=0, unbiased=False) + 1e-8).mean()
                x = torch.cat([x, std.expand(x.shape[0], 1, *x.shape[2:])], dim=1)
            x = self.blocks[i](x)
            if i == step and i > 0 and alpha < 1.0:
                skip = self.from_gray[i - 1](F.avg_pool2d(images, 2))
                x = (1 - alpha) * skip + alpha * x
        return self.linear(x.flatten(1))[:, 0]
