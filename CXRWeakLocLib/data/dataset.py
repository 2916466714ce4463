"""Training datasets: records -> MONAI ``CacheDataset`` with the model's input transform.

The deterministic part (read, resize, normalise — the very transform ``localize``
uses) is cached in memory; augmentation runs after the cache on every epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.data import CacheDataset
from monai.transforms import (
    Compose,
    MapTransform,
    RandAdjustContrastd,
    RandAffined,
    RandomizableTransform,
    ToTensord,
    Transform,
)

from ..core.card import ModelCard
from ..core.errors import ConfigError, refuse_unknown
from ..core.radiograph import read_radiograph
from .records import ImageRecord, label_vector
from .transforms import model_input_transform

__all__ = ["Augmentation", "LoadRadiographd", "ModelInputd", "RandHidePatchesd",
           "RandResizedCropd", "records_dataset"]


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
        self.transform = model_input_transform(card)

    def __call__(self, data: dict) -> dict:
        data = dict(data)
        for key in self.keys:
            data[key] = torch.as_tensor(self.transform(data[key])).float()
        return data


@dataclass(frozen=True)
class Augmentation:
    """Training-time augmentation of the model input (after the cached resize/normalise).

    No horizontal flip: the heart lies on the patient's left, and the maps must too.

    Args:
        rotate_degrees, scale, translate: random affine (``scale``/``translate`` as
            fractions of the side).
        contrast_probability: chance of a random gamma in 0.7-1.4.
        crop_area: ``(min, max)`` area fraction of a random crop (aspect 3/4-4/3)
            resized back to the input size; ``(1, 1)`` switches it off. Crops move
            and often drop burnt-in markers and borders, which a small data set
            otherwise learns as shortcuts.
        hide_probability, hide_grid: Hide-and-Seek (Singh & Lee 2017): the input is
            cut into ``hide_grid`` x ``hide_grid`` patches and each is blanked with
            this probability, so that the classifier must use every part of a
            finding and its maps cover more of it. 0 switches it off.
    """

    rotate_degrees: float = 7.0
    scale: float = 0.1
    translate: float = 0.06
    contrast_probability: float = 0.5
    crop_area: tuple[float, float] = (1.0, 1.0)
    hide_probability: float = 0.0
    hide_grid: int = 8

    def __post_init__(self) -> None:
        low, high = self.crop_area
        if not 0.1 <= low <= high <= 1.0:
            raise ConfigError(f"augmentation crop_area {list(self.crop_area)}: need "
                              "0.1 <= min <= max <= 1")
        if not 0.0 <= self.hide_probability < 1.0 or self.hide_grid < 1:
            raise ConfigError("augmentation hide_probability must be in [0, 1) and "
                              "hide_grid >= 1")

    @classmethod
    def from_dict(cls, values: dict) -> Augmentation:
        """From a config table; unknown keys are a :class:`ConfigError`."""
        refuse_unknown(values, cls, "augmentation: unknown setting(s)")
        values = dict(values)
        if "crop_area" in values:
            values["crop_area"] = tuple(float(v) for v in values["crop_area"])
        return cls(**values)

    def transforms(self) -> list[Transform]:
        """The MONAI transforms of ``image``, in order."""
        steps: list[Transform] = []
        if self.crop_area != (1.0, 1.0):
            steps.append(RandResizedCropd("image", self.crop_area))
        steps += [
            RandAffined(
                keys="image",
                prob=0.8,
                rotate_range=np.deg2rad(self.rotate_degrees),
                scale_range=(self.scale, self.scale),
                translate_range=(self.translate, self.translate),
                padding_mode="border",
                mode="bilinear",
            ),
            RandAdjustContrastd(keys="image", prob=self.contrast_probability,
                                gamma=(0.7, 1.4)),
        ]
        if self.hide_probability > 0:
            steps.append(RandHidePatchesd("image", self.hide_probability, self.hide_grid))
        return steps


class RandResizedCropd(RandomizableTransform, MapTransform):
    """A random crop of ``area`` (fraction range) and aspect 3/4-4/3, resized back."""

    def __init__(self, keys: str, area: tuple[float, float]) -> None:
        RandomizableTransform.__init__(self, prob=1.0)
        MapTransform.__init__(self, keys)
        self.area = area

    def __call__(self, data: dict) -> dict:
        data = dict(data)
        for key in self.keys:
            image = torch.as_tensor(data[key])
            height, width = image.shape[-2:]
            area = self.R.uniform(*self.area) * height * width
            aspect = float(np.exp(self.R.uniform(np.log(3 / 4), np.log(4 / 3))))
            crop_h = min(height, max(1, round(np.sqrt(area / aspect))))
            crop_w = min(width, max(1, round(np.sqrt(area * aspect))))
            top = int(self.R.randint(0, height - crop_h + 1))
            left = int(self.R.randint(0, width - crop_w + 1))
            crop = image[..., top:top + crop_h, left:left + crop_w]
            data[key] = torch.nn.functional.interpolate(
                crop[None].float(), size=(height, width), mode="bilinear",
                align_corners=False)[0]
        return data


class RandHidePatchesd(RandomizableTransform, MapTransform):
    """Hide-and-Seek: blank (set to 0, the normalised mean) each grid patch with ``prob``."""

    def __init__(self, keys: str, prob: float, grid: int) -> None:
        RandomizableTransform.__init__(self, prob=1.0)
        MapTransform.__init__(self, keys)
        self.hide, self.grid = prob, grid

    def __call__(self, data: dict) -> dict:
        data = dict(data)
        for key in self.keys:
            image = torch.as_tensor(data[key]).clone()
            height, width = image.shape[-2:]
            hidden = torch.from_numpy(self.R.random_sample((self.grid, self.grid)) < self.hide)
            rows = torch.arange(height) * self.grid // height
            cols = torch.arange(width) * self.grid // width
            image[..., hidden[rows][:, cols]] = 0.0
            data[key] = image
        return data


def records_dataset(
    records: Sequence[ImageRecord],
    card: ModelCard,
    augmentation: Augmentation | None = None,
    cache_rate: float = 1.0,
    num_workers: int = 0,
    progress: bool = False,
) -> CacheDataset:
    """A dataset of ``{"image", "label", "known"}`` items for a model card's findings.

    ``known`` is 0 where a label is unknown (ignored by the loss); ``augmentation``
    (training only) runs on every read, after the cache.
    """
    items = []
    for record in records:
        targets, known = label_vector(record, card.findings)
        source = record.pixels if record.pixels is not None else str(record.image)
        items.append({"image": source, "label": targets, "known": known, "id": record.id})
    transforms = [LoadRadiographd(keys="image"), ModelInputd(keys="image", card=card)]
    if augmentation is not None:
        transforms += augmentation.transforms()
    transforms.append(ToTensord(keys="image", track_meta=False))
    return CacheDataset(
        items, Compose(transforms), cache_rate=cache_rate, num_workers=num_workers,
        progress=progress,
    )
