"""CLIP's symmetric contrastive (InfoNCE) loss and its learned temperature."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional

__all__ = ["LogitScale", "clip_loss"]


class LogitScale(nn.Module):
    """CLIP's learned temperature: ``exp(log_scale)``, started at 1/0.07, capped at 100."""

    def __init__(self, initial: float = 1 / 0.07, maximum: float = 100.0) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(initial)))
        self.maximum = maximum

    def forward(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=self.maximum)


def clip_loss(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor,
              scale: torch.Tensor | float) -> torch.Tensor:
    """Symmetric InfoNCE: pair i's image and text are the positives of row and column i.

    Both sides are L2-normalised; the logits are ``scale`` times their cosine
    similarities; the loss is the mean of the image-to-text and text-to-image
    cross-entropies.
    """
    if image_embeddings.shape != text_embeddings.shape:
        raise ValueError(f"image and text embeddings differ in shape: "
                         f"{tuple(image_embeddings.shape)} vs {tuple(text_embeddings.shape)}")
    images = functional.normalize(image_embeddings, dim=-1)
    texts = functional.normalize(text_embeddings, dim=-1)
    logits = scale * images @ texts.T
    targets = torch.arange(logits.shape[0], device=logits.device)
    return (functional.cross_entropy(logits, targets)
            + functional.cross_entropy(logits.T, targets)) / 2
