"""``<stem>.<finding>.heatmap.nrrd``: each localised finding's heatmap as float32.

Same geometry as the segmentation (``W H 1``, LPS), so Slicer overlays the two and
the input exactly. Written with gzip level 1 (:data:`COMPRESSION_LEVEL`).
"""

from __future__ import annotations

from pathlib import Path

import nrrd
import numpy as np

from ..core.layout import OutputLayout
from ..core.radiograph import Radiograph
from ..core.results import LocalizationResult
from .geometry import ijk_to_lps, to_ijk

__all__ = ["COMPRESSION_LEVEL", "write_float_nrrd", "write_heatmaps"]

#: gzip level: 1 is the fastest that compresses; float32 maps barely shrink further
#: at higher levels, which cost several times the time.
COMPRESSION_LEVEL = 1


def write_float_nrrd(path: Path, image: np.ndarray, radiograph: Radiograph, what: str) -> None:
    """A float32 image (rows x columns) as NRRD in the radiograph's geometry."""
    matrix = ijk_to_lps(radiograph)
    header = {
        "space": "left-posterior-superior",
        "kinds": ["domain", "domain", "domain"],
        "space directions": matrix[:3, :3].T,
        "space origin": matrix[:3, 3],
        "encoding": "gzip",
    }
    voxels = to_ijk(np.asarray(image, dtype=np.float32), radiograph, what)
    nrrd.write(str(path), voxels, header, compression_level=COMPRESSION_LEVEL, index_order="F")


def write_heatmaps(
    result: LocalizationResult, radiograph: Radiograph, layout: OutputLayout
) -> list[Path]:
    """Write one NRRD per localised finding; returns the paths written."""
    written = []
    for item in result.localized:
        path = layout.heatmap(item.name)
        write_float_nrrd(path, item.heatmap, radiograph, f"{item.name} heatmap")
        written.append(path)
    return written
