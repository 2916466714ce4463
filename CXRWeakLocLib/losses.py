"""Losses shared by the methods: weighted BCE for classifiers, WGAN-GP's gradient penalty."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["WeightedBCELoss", "gradient_penalty"]


class WeightedBCELoss(nn.Module):
    """ChestX-ray8's weighted cross-entropy (W-CEL) over the known labels of a batch.

    Per batch, ``w_P = (|P| + |N|) / |P|`` and ``w_N = (|P| + |N|) / |N|``, where ``P``
    and ``N`` count the positive and negative labels of the whole batch (Wang et al.
    2017), so rare positives are not drowned by the many negatives. Labels with
    ``known == 0`` do not count.
    """

    def forward(
        self, logits: torch.Tensor, targets: torch.Tensor, known: torch.Tensor | None = None
    ) -> torch.Tensor:
        known = torch.ones_like(targets) if known is None else known
        positives = (targets * known).sum()
        negatives = ((1 - targets) * known).sum()
        total = positives + negatives
        w_pos = total / positives.clamp(min=1.0)
        w_neg = total / negatives.clamp(min=1.0)
        weights = (w_pos * targets + w_neg * (1 - targets)) * known
        loss = nn.functional.binary_cross_entropy_with_logits(
            logits.float(), targets, weight=weights, reduction="sum"
        )
        return loss / known.sum().clamp(min=1.0)


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor,
                     fake: torch.Tensor, generator: torch.Generator | None = None
                     ) -> torch.Tensor:
    """WGAN-GP: ``mean((|grad D(x_hat)|_2 - 1)^2)`` on random interpolates ``x_hat``.

    The norm is taken over **all** non-batch axes (the official VA-GAN code took it
    over axis 1 only, i.e. per row of pixels, which is not the critic's gradient norm).
    """
    alpha = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), generator=generator,
                       device="cpu").to(real.device, real.dtype)
    mixed = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    scores = critic(mixed)
    (grads,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    norms = grads.flatten(start_dim=1).norm(2, dim=1)
    return ((norms - 1) ** 2).mean()
