"""A rough anatomical estimate of a frontal chest radiograph: lung fields and heart.

No training and no model: the lungs are the two largest dark regions inside the body,
the heart the bright region between them. One estimator serves every user: the
disease-mask method's pseudo masks (drawn from its anchor image), the healing
networks' optional lung-field restriction of their maps, and the check that a map's
peak falls inside the chest.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .masks import normalize_heatmap, otsu_threshold

__all__ = ["chest_region", "heart_region", "lung_fields"]

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
#: Dark-pixel quantiles tried, from the darkest 5% up to 60%.
_QUANTILES = np.arange(0.05, 0.605, 0.01)
#: A lung field covers at least this fraction of the image.
_MIN_LUNG_FRACTION = 0.01


def lung_fields(image: np.ndarray) -> np.ndarray | None:
    """The two lung fields of a radiograph (any intensity scale), or None if not found.

    The dark pixels (below the ``q``-quantile of the min-max normalised image) form
    8-connected regions; regions touching the border (air outside the body) are
    dropped. ``q`` is the largest of 0.05, 0.06, ..., 0.60 at which two such regions of
    at least 1% of the image each remain (a larger ``q`` joins the lungs to the outside
    air); those two regions, holes filled, are the lungs.
    """
    image = normalize_heatmap(image)
    best = None
    for quantile in _QUANTILES:
        labels, count = ndimage.label(image < np.quantile(image, quantile),
                                      structure=_EIGHT_CONNECTED)
        border = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0],
                                               labels[:, -1]])))
        sizes = np.bincount(labels.ravel(), minlength=count + 1)
        inside = sorted((i for i in range(1, count + 1) if i not in border),
                        key=lambda i: sizes[i], reverse=True)[:2]
        if len(inside) == 2 and sizes[inside[1]] >= _MIN_LUNG_FRACTION * image.size:
            best = np.isin(labels, inside)
    return None if best is None else ndimage.binary_fill_holes(best)


def heart_region(image: np.ndarray, lungs: np.ndarray) -> np.ndarray:
    """The heart: pixels at or above the image's Otsu threshold between the lungs'
    centroids, in the lower half of the lungs' rows; the largest such region, holes
    filled (the whole search box when nothing there is bright)."""
    bright = normalize_heatmap(image) >= otsu_threshold(normalize_heatmap(image))
    rows, cols = np.nonzero(lungs)
    labels, count = ndimage.label(lungs)
    centroids = sorted(c for _, c in ndimage.center_of_mass(lungs, labels, range(1, count + 1)))
    left, right = (int(centroids[0]), int(centroids[-1])) if count > 1 else (
        cols.min(), cols.max())
    top = int((rows.min() + rows.max()) / 2)
    region = np.zeros_like(bright)
    region[top:rows.max() + 1, left:right + 1] = True
    candidates, found = ndimage.label(bright & region)
    if not found:
        return region
    sizes = np.bincount(candidates.ravel())[1:]
    return ndimage.binary_fill_holes(candidates == int(np.argmax(sizes)) + 1)


def chest_region(image: np.ndarray, margin: float = 0.06) -> np.ndarray:
    """Lung fields and heart widened by ``margin`` of the image's shorter side, so the
    heart border, pleura and costophrenic angles stay in; all True when no lungs are
    found (nothing is excluded on a guess)."""
    lungs = lung_fields(image)
    if lungs is None:
        return np.ones(np.shape(image), dtype=bool)
    chest = lungs | heart_region(image, lungs)
    iterations = max(1, int(round(margin * min(chest.shape))))
    return ndimage.binary_dilation(chest, iterations=iterations)
