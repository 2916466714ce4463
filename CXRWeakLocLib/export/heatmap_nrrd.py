"""``<stem>.<finding>.heatmap.nrrd``: each localised finding's heatmap as float32.

Same geometry as the segmentation (``W H 1``, LPS), so Slicer overlays the two and
the input exactly.
"""

from __future__ import annotations

from pathlib import Path

import nrrd
import numpy as np

from ..localize import LocalizationResult
from ..radiograph import Radiograph
from .geometry import ijk_to_lps, to_ijk
from .layout import OutputLayout

__all__ = ["write_heatmaps"]


def write_heatmaps(
    result: LocalizationResult, radiograph: Radiograph, layout: OutputLayout
) -> list[Path]:
    """Write one NRRD per localised finding; returns the paths written."""
    matrix = ijk_to_lps(radiograph)
    header = {
        "space": "left-posterior-superior",
        "kinds": ["domain", "domain", "domain"],
        "space directions": matrix[:3, :3].T,
        "space origin": matrix[:3, 3],
        "encoding": "gzip",
    }
    written = []
    for item in result.localized:
        voxels = to_ijk(item.heatmap.astype(np.float32), radiograph, f"{item.name} heatmap")
        path = layout.heatmap(item.name)
        nrrd.write(str(path), voxels, header, index_order="F")
        written.append(path)
    return written
