"""Boxes and masks: conversions, a box's pixels, bounding boxes, box IoU, the floor map.

Boxes are ``(x, y, w, h)`` in image pixels (ChestX-ray14, TBX11K/COCO) unless named
``xyxy`` (CheXpert/HAM ``[x1, y1, x2, y2]``). Pixel ``(r, c)`` covers
``[c, c + 1) x [r, r + 1)``; it belongs to a float box when its centre
``(c + 0.5, r + 0.5)`` satisfies ``x <= c + 0.5 < x + w`` and ``y <= r + 0.5 < y + h``.
Integer boxes therefore cover exactly ``w x h`` pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..core.masks import Box
from ..data.records import Annotation

__all__ = ["annotation_mask", "box_iou", "box_to_mask", "floor_heatmap", "mask_bounding_box",
           "xywh_to_xyxy", "xyxy_to_xywh"]


def xyxy_to_xywh(box: Sequence[float]) -> tuple[float, float, float, float]:
    """``[x1, y1, x2, y2]`` -> ``(x, y, w, h)``."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return x1, y1, x2 - x1, y2 - y1


def xywh_to_xyxy(box: Sequence[float]) -> tuple[float, float, float, float]:
    """``(x, y, w, h)`` -> ``[x1, y1, x2, y2]``."""
    x, y, w, h = (float(v) for v in box)
    return x, y, x + w, y + h


def box_to_mask(box_xywh: Sequence[float], shape: tuple[int, int]) -> np.ndarray:
    """Boolean ``shape`` mask of the pixels whose centre lies inside the box.

    The box is clipped to the image; a box narrower than a pixel may hold no centre.
    """
    x, y, w, h = (float(v) for v in box_xywh)
    if w < 0 or h < 0:
        raise ValueError(f"box {tuple(box_xywh)} has a negative width or height")
    rows = np.arange(shape[0]) + 0.5
    cols = np.arange(shape[1]) + 0.5
    inside_rows = (rows >= y) & (rows < y + h)
    inside_cols = (cols >= x) & (cols < x + w)
    return inside_rows[:, None] & inside_cols[None, :]


def annotation_mask(annotation: Annotation, shape: tuple[int, int]) -> np.ndarray:
    """Ground-truth mask of an annotation: its own mask if it has one, else its box's."""
    if annotation.mask is not None:
        mask = np.asarray(annotation.mask, dtype=bool)
        if mask.shape != tuple(shape):
            raise ValueError(f"annotation mask shape {mask.shape} != image shape {tuple(shape)}")
        return mask
    if annotation.box is None:
        raise ValueError(f"annotation of {annotation.finding!r} has neither box nor mask")
    return box_to_mask(annotation.box, shape)


def mask_bounding_box(mask: np.ndarray) -> Box:
    """Bounding box of all true pixels of a non-empty mask."""
    rows = np.flatnonzero(np.any(mask, axis=1))
    cols = np.flatnonzero(np.any(mask, axis=0))
    if rows.size == 0:
        raise ValueError("the mask is empty: it has no bounding box")
    return Box(int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when both are empty)."""
    width = max(0, min(a.x1, b.x1) - max(a.x0, b.x0))
    height = max(0, min(a.y1, b.y1) - max(a.y0, b.y0))
    intersection = width * height
    union = a.area + b.area - intersection
    return intersection / union if union > 0 else 0.0


def floor_heatmap(
    boxes_of_finding: Sequence[Sequence[float]], shape: tuple[int, int]
) -> np.ndarray:
    """The "no-model floor": the mean ``(x, y, w, h)`` box of a finding as a 0/1 map."""
    boxes = np.asarray(boxes_of_finding, dtype=np.float64).reshape(-1, 4)
    if boxes.shape[0] == 0:
        raise ValueError("the floor heatmap needs at least one box")
    return box_to_mask(boxes.mean(axis=0), shape).astype(np.float32)
