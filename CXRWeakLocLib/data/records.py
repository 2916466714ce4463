"""The one record type every dataset reader produces.

Readers (ChestX-ray14, CheXpert, TBX11K, COVID-19, synthetic) each turn their own
layout into a list of :class:`ImageRecord`; the training dataset and ``evaluate``
consume only records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Annotation", "ImageRecord", "label_vector", "patient_key"]


@dataclass
class Annotation:
    """Localisation ground truth of one finding on one image (evaluation only).

    ``box`` is ``(x, y, w, h)`` in the image's own pixels (floats allowed);
    ``mask`` is a boolean (rows, columns) array when the dataset has segmentations.
    """

    finding: str
    box: tuple[float, float, float, float] | None = None
    mask: np.ndarray | None = None


@dataclass
class ImageRecord:
    """One image with image-level labels and, for evaluation, its annotations.

    ``labels`` maps finding name -> 1.0 (present), 0.0 (absent) or NaN (unknown /
    ignored, e.g. CheXpert's uncertain labels under the ``ignore`` policy).
    ``image`` is a path, or None for in-memory synthetic images (``pixels`` set).
    """

    id: str
    image: Path | None
    labels: dict[str, float]
    annotations: list[Annotation] = field(default_factory=list)
    pixels: np.ndarray | None = None
    meta: dict = field(default_factory=dict)


def patient_key(record: ImageRecord) -> str:
    """The patient an image belongs to (its id when the dataset names no patient)."""
    return record.meta.get("patient") or record.id


def label_vector(record: ImageRecord, findings: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(targets, known)`` float32 vectors over ``findings``; unknown labels have known=0.

    A finding the dataset does not label at all is unknown, not negative.
    """
    targets = np.zeros(len(findings), dtype=np.float32)
    known = np.zeros(len(findings), dtype=np.float32)
    for index, name in enumerate(findings):
        value = record.labels.get(name, math.nan)
        if not math.isnan(value):
            targets[index], known[index] = value, 1.0
    return targets, known
