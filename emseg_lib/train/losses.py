"""GAN losses shared by the training loops."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def hinge_discriminator_loss(real_score: torch.Tensor, fake_score: torch.Tensor
                             ) -> torch.Tensor:
    """Hinge loss of a discriminator: ``mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))``.

    Args:
        real_score, fake_score: discriminator outputs, any shape (e.g. ``(N,)``).
    """
    return F.relu(1 - real_score).mean() + F.relu(1 + fake_score).mean()
