"""Voxel-to-LPS geometry shared by the NRRD writers (segmentation and heatmaps).

A radiograph is written as a 3-D volume of sizes ``W H 1`` (i = column, j = row),
exactly as Slicer stores a 2-D image, so masks and heatmaps overlay the input.
"""

from __future__ import annotations

import numpy as np

from ..core.radiograph import Radiograph

__all__ = ["ijk_to_lps", "to_ijk"]


def ijk_to_lps(radiograph: Radiograph) -> np.ndarray:
    """4x4 matrix from voxel (i, j, k) to LPS mm: direction * spacing, then origin."""
    matrix = np.eye(4)
    column_spacing, row_spacing = radiograph.spacing
    matrix[:3, :3] = np.asarray(radiograph.direction, dtype=float) @ np.diag(
        [column_spacing, row_spacing, 1.0]
    )
    matrix[:3, 3] = radiograph.origin
    return matrix


def to_ijk(image: np.ndarray, radiograph: Radiograph, what: str) -> np.ndarray:
    """A rows x columns array as an (i, j, k) = (W, H, 1) array, after a shape check."""
    if image.shape != radiograph.size:
        raise ValueError(
            f"{what} has shape {image.shape}, the radiograph {radiograph.size}"
        )
    return image.T[:, :, np.newaxis]
