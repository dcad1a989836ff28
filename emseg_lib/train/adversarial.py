"""Adversarial segmentation (the thesis's future work, 6.1): a UNet as the generator.

A discriminator sees ``(image, cell map)`` pairs: the target map is "real", the network's
probability map is "fake". An open boundary is easy to spot in such a pair, so the
adversarial term should push the segmentation network to close them. Hinge losses as in
the Boundless GAN; the generator's total loss is ``BCE + weight * (-D(image, p))``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from emseg_lib.train.losses import hinge_discriminator_loss


class SegmentationAdversary:
    """The discriminator, its optimizer and the adversarial weight, used by :func:`fit`.

    Args:
        discriminator: a :class:`PairDiscriminator` (or any module of that signature).
        weight: weight of the adversarial term in the segmentation network's loss.
        lr, betas: Adam settings of the discriminator (Boundless values by default).
    """

    def __init__(self, discriminator: nn.Module, weight: float = 0.01, lr: float = 1e-4,
                 betas: tuple[float, float] = (0.5, 0.9)) -> None:
        self.discriminator = discriminator
        self.weight = weight
        self.optimizer = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=betas)

    def to(self, device: torch.device) -> SegmentationAdversary:
        """Move the discriminator (and so its optimizer's future state) to ``device``."""
        self.discriminator.to(device)
        return self

    def generator_loss(self, image: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """``-D(image, sigmoid(logits))``, to be added (times ``weight``) to the BCE."""
        return -self.discriminator(image, torch.sigmoid(logits)).mean()

    def discriminator_step(self, image: torch.Tensor, logits: torch.Tensor,
                           target: torch.Tensor) -> float:
        """One hinge update: target maps are real, predicted probabilities are fake."""
        fake = torch.sigmoid(logits.detach())
        loss = hinge_discriminator_loss(self.discriminator(image, target),
                                        self.discriminator(image, fake))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def state_dict(self) -> dict[str, Any]:
        """Discriminator and optimizer state, for checkpoints."""
        return {"discriminator": self.discriminator.state_dict(),
                "optimizer": self.optimizer.state_dict(), "weight": self.weight}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.discriminator.load_state_dict(state["discriminator"])
        self.optimizer.load_state_dict(state["optimizer"])
