"""Training datasets: records -> MONAI ``CacheDataset`` with the model's input transform.

The deterministic part (read, resize, normalise — the very transform ``localize``
uses) is cached in memory; augmentation runs after the cache on every epoch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.data import CacheDataset
from monai.transforms import (
    Compose,
    MapTransform,
    RandAdjustContrastd,
    RandAffined,
    ToTensord,
    Transform,
)

from ..checkpoint import ModelCard
from ..localize import model_input_transform
from ..radiograph import read_radiograph
from .records import ImageRecord, label_vector

__all__ = ["LoadRadiographd", "ModelInputd", "records_dataset"]


class LoadRadiographd(MapTransform):
    """Reads ``data["image"]`` (a path, or an in-memory array) into a (1, H, W) array."""

    def __call__(self, data: dict) -> dict:
        data = dict(data)
        for key in self.keys:
            value = data[key]
            pixels = value if isinstance(value, np.ndarray) else read_radiograph(value).pixels
            data[key] = pixels[np.newaxis].astype(np.float32)
        return data


class ModelInputd(MapTransform):
    """Applies a model card's input transform (resize + normalise) to ``keys``."""

    def __init__(self, keys: Sequence[str], card: ModelCard) -> None:
        super().__init__(keys)
        self.transform: Transform = model_input_transform(card)

    def __call__(self, data: dict) -> dict:
        data = dict(data)
        for key in self.keys:
            data[key] = torch.as_tensor(self.transform(data[key])).float()
        return data


def _augmentations() -> list[Transform]:
    # No horizontal flip: the heart lies on the patient's left, and the maps must too.
    return [
        RandAffined(
            keys="image",
            prob=0.8,
            rotate_range=np.deg2rad(7.0),
            scale_range=(0.1, 0.1),
            translate_range=(0.06, 0.06),
            padding_mode="border",
            mode="bilinear",
        ),
        RandAdjustContrastd(keys="image", prob=0.5, gamma=(0.7, 1.4)),
    ]


def records_dataset(
    records: Sequence[ImageRecord],
    card: ModelCard,
    augment: bool,
    cache_rate: float = 1.0,
    num_workers: int = 0,
    progress: bool = False,
) -> CacheDataset:
    """A dataset of ``{"image", "label", "known"}`` items for a model card's findings.

    ``known`` is 0 where a label is unknown (ignored by the loss).
    """
    items = []
    for record in records:
        targets, known = label_vector(record, card.findings)
        source = record.pixels if record.pixels is not None else str(record.image)
        items.append({"image": source, "label": targets, "known": known, "id": record.id})
    transforms = [LoadRadiographd(keys="image"), ModelInputd(keys="image", card=card)]
    if augment:
        transforms += _augmentations()
    transforms.append(ToTensord(keys="image", track_meta=False))
    return CacheDataset(
        items, Compose(transforms), cache_rate=cache_rate, num_workers=num_workers,
        progress=progress,
    )
