"""The network input of a radiograph: one transform for training and inference alike."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from scipy.special import erf

from ..core.card import ModelCard
from ..core.heatmaps import bilinear_taps

__all__ = ["ModelInput", "model_input_transform"]

#: MONAI's Gaussian kernels reach this many sigmas (``GaussianFilter(truncated=4.0)``).
_TRUNCATED = 4.0


def _gaussian(sigma: float) -> np.ndarray:
    """MONAI's ``gaussian_1d(sigma, 4.0, approx="erf")``: the Gaussian integrated over
    each pixel, unnormalised, in float32; ``[1]`` for ``sigma <= 0`` (no smoothing)."""
    if sigma <= 0:
        return np.ones(1, dtype=np.float32)
    tail = int(max(sigma * _TRUNCATED, 0.5) + 0.5)
    x = np.arange(-tail, tail + 1, dtype=np.float32)
    t = np.float32(0.70710678) / np.float32(sigma)
    return np.clip(0.5 * (erf(t * (x + 0.5)) - erf(t * (x - 0.5))), 0, None).astype(np.float32)


@lru_cache(maxsize=32)
def _resize_taps(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices and weights ``(size_out, taps)`` of one axis of the resize: when the
    axis shrinks, a zero-padded Gaussian of sigma ``(size_in / size_out - 1) / 2`` (the
    anti-aliasing of MONAI's ``Resize`` and skimage), then bilinear sampling."""
    factor = np.float32(size_in) / np.float32(size_out)
    kernel = _gaussian(float((factor - 1) / 2) if size_out < size_in else 0.0)
    tail = len(kernel) // 2
    first, second, w_first, w_second = bilinear_taps(size_in, size_out)
    offsets = np.arange(-tail, tail + 2)
    columns = first[:, np.newaxis] + offsets
    padded = np.append(kernel, np.float32(0))  # index len(kernel): outside the kernel

    def kernel_at(centre: np.ndarray) -> np.ndarray:
        position = columns - centre[:, np.newaxis] + tail
        return padded[np.where((position >= 0) & (position < len(kernel)), position, -1)]

    weights = (w_first[:, np.newaxis].astype(np.float64) * kernel_at(first)
               + w_second[:, np.newaxis].astype(np.float64) * kernel_at(second))
    inside = (columns >= 0) & (columns < size_in)  # zero padding beyond the image
    return np.clip(columns, 0, size_in - 1), np.where(inside, weights, 0.0).astype(np.float32)


class ModelInput:
    """Channel-first [0, 1] image ``(1, H, W)`` -> network input ``(1, S, S)`` float32:
    resized to the card's side (anti-aliased when shrinking, then bilinear, as MONAI's
    ``Resize(mode="bilinear", anti_aliasing=True)``), then ``(x - mean) / std``.

    Each output pixel is a weighted sum of a few input rows and columns (the Gaussian's
    and the bilinear taps together), applied rows then columns: a few milliseconds
    where MONAI's full-resolution convolutions took tens.
    """

    def __init__(self, side: int, mean: float, std: float) -> None:
        self.side, self.mean, self.std = side, float(mean), float(std)

    def __call__(self, image) -> torch.Tensor:
        pixels = np.asarray(image, dtype=np.float32)
        if pixels.ndim != 3 or pixels.shape[0] != 1:
            raise ValueError(f"expected a (1, H, W) image, got shape {pixels.shape}")
        rows, row_weights = _resize_taps(pixels.shape[1], self.side)
        columns, column_weights = _resize_taps(pixels.shape[2], self.side)
        across = np.einsum("otw,ot->ow", pixels[0][rows], row_weights)
        resized = np.einsum("rot,ot->ro", across[:, columns], column_weights)
        normalised = (resized - np.float32(self.mean)) / np.float32(self.std)
        return torch.from_numpy(np.ascontiguousarray(normalised, dtype=np.float32))[None]


def model_input_transform(card: ModelCard) -> ModelInput:
    """The transform of a card's model input; the training datasets use this same one, so a
    model sees at inference exactly what it saw in training."""
    norm = card.normalization
    return ModelInput(card.input_size, norm["mean"], norm["std"])
