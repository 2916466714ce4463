"""Small numeric conventions every metric shares: NaN-skipping means, JSON floats, and
when an IoU reaches a threshold."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

__all__ = ["json_float", "nan_mean", "reaches"]

#: An IoU this far below a threshold still reaches it (float rounding of ratios).
THRESHOLD_TOLERANCE = 1e-9


def nan_mean(values: Iterable[float]) -> float:
    """Mean of the non-NaN values; NaN when there are none."""
    array = np.asarray(list(values), dtype=np.float64)
    array = array[~np.isnan(array)]
    return float(array.mean()) if array.size else math.nan


def json_float(value: float) -> float | None:
    """``value`` for JSON: NaN becomes None."""
    return None if math.isnan(value) else float(value)


def reaches(ious: np.ndarray, threshold: float) -> np.ndarray:
    """Which IoUs count as reaching ``threshold`` (with the rounding tolerance)."""
    return ious >= threshold - THRESHOLD_TOLERANCE
