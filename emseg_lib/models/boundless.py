"""The Boundless image-extension GAN (Teterwak et al. 2019; thesis 3.2.10, 4.4).

Generator: 16 gated convolutions (feature = conv, gate = conv, out =
InstanceNorm(ELU(feature) * sigmoid(gate))), an encoder (layers 1-8: two stride-2 levels and
dilations 2, 4) and a decoder with skip concatenations and bilinear upsampling, then a plain
3x3 conv clamped to [-1, 1]. Input ``cat(masked image, ones, mask)``, mask 1 = unknown.
3,454,705 parameters for 1 output channel at the default width; layers 1-8 hold 1,444,096.

Discriminator: spectral-normalised 5x5 stride-2 convs on ``cat(image, mask)``, a final 5x5
valid conv to a 256-vector ``h`` and a projection output ``w.h + <h, V y>`` where ``y`` is an
L2-normalised 1000-d class-logit vector of the ground truth from an InceptionV3-style network
(:class:`InceptionStyleExtractor`). Without such a vector the projection term is dropped.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from emseg_lib.errors import EmsegInputError

#: layers of the thesis's counting for transfer learning: 16 gated convs + the output conv
N_SEGMENTATION_LAYERS = 17


class GatedConv2d(nn.Module):
    """``InstanceNorm(ELU(conv_f(x)) * sigmoid(conv_g(x)))`` with "same" padding.

    Shapes: ``(N, in, H, W)`` -> ``(N, out, ceil(H / stride), ceil(W / stride))``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        padding = dilation * (kernel_size - 1) // 2
        self.feature = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding,
                                 dilation)
        self.gate = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding,
                              dilation)
        self.norm = nn.InstanceNorm2d(out_channels, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(F.elu(self.feature(x)) * torch.sigmoid(self.gate(x)))


class BoundlessGenerator(nn.Module):
    """Gated-convolution encoder/decoder for image extension.

    Args:
        in_channels: 3 = masked image, ones, mask (grayscale).
        out_channels: 1 (grayscale).
        width: channels of the first layer (32 in the reference); the others scale with it.

    Shapes:
        ``forward(image, mask)``: ``image`` ``(N, 1, H, W)`` in [-1, 1], ``mask`` ``(N, 1, H, W)``
        (1 = unknown) -> ``(N, 1, H, W)`` in [-1, 1]. Sizes ``4n + 1`` (e.g. 257) align exactly.

    ``layers`` holds the 16 gated convolutions in order (encoder = ``layers[:8]``).
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 1, width: int = 32) -> None:
        super().__init__()
        self.config = {"in_channels": in_channels, "out_channels": out_channels, "width": width}
        c1, c2, c4 = width, 2 * width, 4 * width
        specs = [
            (in_channels, c1, 5, 1, 1), (c1, c2, 3, 2, 1), (c2, c2, 3, 1, 1),
            (c2, c4, 3, 2, 1), (c4, c4, 3, 1, 1), (c4, c4, 3, 1, 1),
            (c4, c4, 3, 1, 2), (c4, c4, 3, 1, 4), (c4, c4, 3, 1, 8), (c4, c4, 3, 1, 16),
            (c4, c4, 3, 1, 1), (2 * c4, c4, 3, 1, 1),
            (2 * c4, c2, 3, 1, 1), (2 * c2, c2, 3, 1, 1),
            (2 * c2, c1, 3, 1, 1), (2 * c1, width // 2, 3, 1, 1),
        ]
        self.layers = nn.ModuleList(GatedConv2d(i, o, k, s, d) for i, o, k, s, d in specs)
        self.head = nn.Conv2d(width // 2, out_channels, 3, padding=1)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.head(self.features(image, mask)), -1.0, 1.0)

    def features(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Output of the 16th gated convolution, ``(N, width // 2, H, W)``."""
        x = torch.cat([image * (1 - mask), torch.ones_like(mask), mask], dim=1)
        out = []
        for layer in self.layers[:11]:
            x = layer(x)
            out.append(x)
        # out[k] is the output of layer k + 1 (1-based numbering of the reference)
        x = self.layers[11](torch.cat([out[10], out[4]], 1))
        x = _upsample_to(torch.cat([x, out[3]], 1), out[2])
        x = self.layers[12](x)
        x = self.layers[13](torch.cat([x, out[2]], 1))
        x = _upsample_to(torch.cat([x, out[1]], 1), out[0])
        x = self.layers[14](x)
        return self.layers[15](torch.cat([x, out[0]], 1))


class BoundlessSegmenter(BoundlessGenerator):
    """The Boundless generator as a segmentation network (thesis 4.4.2, 4.5).

    The final clamp is removed and the output is one logit. The input is the image alone; it
    is scaled to [-1, 1] and given to the generator with an all-zero mask (nothing unknown)
    and the ones-channel. :mod:`emseg_lib.models.pretrained` loads and freezes its layers.

    Args:
        in_channels, out_channels, width: as :class:`BoundlessGenerator` (3, 1, 32 in the
            thesis); they must match the pretrained weights.

    Shapes: ``(N, 1, H, W)`` image in [0, 1] (like every emseg segmentation network) ->
    ``(N, 1, H, W)`` cell logits.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 1, width: int = 32) -> None:
        super().__init__(in_channels, out_channels, width)

    def forward(self, image: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        scaled = image * 2.0 - 1.0
        return self.head(self.features(scaled, torch.zeros_like(scaled)))

    def segmentation_layers(self) -> list[nn.Module]:
        """The 17 layers in order: 16 gated convolutions, then the output conv."""
        return [*self.layers, self.head]


def _upsample_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=True)


def composite(image: torch.Tensor, mask: torch.Tensor, generated: torch.Tensor
              ) -> torch.Tensor:
    """``x_hat = z + M * G(z)``: known pixels from ``image``, unknown ones from ``generated``."""
    return image * (1 - mask) + generated * mask


class BoundlessDiscriminator(nn.Module):
    """Spectral-normalised projection discriminator on ``cat(image, mask)``.

    Args:
        in_channels: image channels + 1 (mask): 2 for grayscale.
        class_dim: length of the conditioning vector ``y`` (1000 InceptionV3 logits).
        widths: channels of the stride-2 convolutions.

    Shapes:
        ``forward(image, mask, y=None)``: ``(N, 1, 257, 257)`` (any size; the last conv is a
        global 5x5 at 257) -> ``(N,)`` scores. ``y``: ``(N, class_dim)`` or None.
    """

    def __init__(self, in_channels: int = 2, class_dim: int = 1000,
                 widths: tuple[int, ...] = (64, 128, 256, 256, 256, 256)) -> None:
        super().__init__()
        self.config = {"in_channels": in_channels, "class_dim": class_dim,
                       "widths": tuple(widths)}
        layers: list[nn.Module] = []
        previous = in_channels
        for width in widths:
            layers += [spectral_norm(nn.Conv2d(previous, width, 5, stride=2, padding=2)),
                       nn.LeakyReLU(0.01)]
            previous = width
        self.features = nn.Sequential(*layers)
        self.last = spectral_norm(nn.Conv2d(previous, previous, 5))
        self.linear = spectral_norm(nn.Linear(previous, 1, bias=False))
        self.embed = spectral_norm(nn.Linear(class_dim, previous, bias=False))

    def forward(self, image: torch.Tensor, mask: torch.Tensor,
                y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(torch.cat([image, mask], dim=1))
        h = F.leaky_relu(self.last(h), 0.01)
        h = h.sum(dim=(2, 3))  # 1x1 at 257; global sum pooling at other sizes
        score = self.linear(h)[:, 0]
        if y is not None:
            score = score + (self.embed(y) * h).sum(dim=1)
        return score


class InceptionStyleExtractor(nn.Module):
    """A compact InceptionV3-style network giving 1000 class logits for grayscale images.

    The reference conditions the Boundless discriminator on ImageNet InceptionV3 logits of
    the ground truth. Pretrained weights cannot be downloaded here, so this module is the
    architecture-compatible *stand-in*: it loads weights from a user-given file
    (:meth:`from_weights`); without one, the notebooks disable semantic conditioning
    instead of conditioning on random features, and say so.

    Shapes: ``(N, 1, H, W)`` in [-1, 1] -> ``(N, 1000)`` L2-normalised logits.
    """

    def __init__(self, width: int = 32, classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, width, 3, stride=2), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.MaxPool2d(3, stride=2),
        )
        self.branches = nn.ModuleList([
            nn.Conv2d(2 * width, width, 1),
            nn.Sequential(nn.Conv2d(2 * width, width, 1), nn.Conv2d(width, width, 5, padding=2)),
            nn.Sequential(nn.Conv2d(2 * width, width, 1), nn.Conv2d(width, width, 3, padding=1),
                          nn.Conv2d(width, width, 3, padding=1)),
            nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1), nn.Conv2d(2 * width, width, 1)),
        ])
        self.fc = nn.Linear(4 * width, classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.stem(image)
        x = torch.cat([F.relu(branch(x)) for branch in self.branches], dim=1)
        logits = self.fc(x.mean(dim=(2, 3)))
        return F.normalize(logits, dim=1)

    @classmethod
    def from_weights(cls, path: str | Path, width: int = 32) -> InceptionStyleExtractor:
        """Load a state dict saved with ``torch.save(model.state_dict(), path)``."""
        path = Path(path)
        if not path.is_file():
            raise EmsegInputError(f"{path}: feature-extractor weights file not found")
        model = cls(width)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as err:
            raise EmsegInputError(
                f"{path}: not InceptionStyleExtractor(width={width}) weights ({err})"
            ) from err
        return model.eval()
