"""The network input of a radiograph: one transform for training and inference alike."""

from __future__ import annotations

from monai.transforms import Compose, NormalizeIntensity, Resize

from ..core.card import ModelCard

__all__ = ["model_input_transform"]


def model_input_transform(card: ModelCard) -> Compose:
    """Channel-first [0, 1] image -> network input: resize to the card's size, normalise.

    The training datasets use this same transform, so a model sees at inference
    exactly what it saw in training.
    """
    size = (card.input_size, card.input_size)
    norm = card.normalization
    return Compose([
        Resize(size, mode="bilinear", anti_aliasing=True),
        NormalizeIntensity(subtrahend=norm["mean"], divisor=norm["std"]),
    ])
