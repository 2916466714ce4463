"""Classification losses shared by the methods."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["WeightedBCELoss"]


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
