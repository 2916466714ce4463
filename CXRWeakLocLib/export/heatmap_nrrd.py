"""``<stem>.<finding>.heatmap.nrrd``: each localised finding's heatmap as float32.

A heatmap is written at the resolution the model made it (its feature grid, e.g.
16 x 16 for the shipped ``cam``), with a geometry (:func:`~CXRWeakLocLib.core.heatmaps.grid_matrix`)
that puts the grid's cells exactly over the radiograph, LPS, ``W H 1`` as the
segmentation: Slicer and any NRRD reader overlay it on the input, and
:func:`~CXRWeakLocLib.core.heatmaps.resample_heatmap` brings it back to the input's
pixel grid. A result without a grid (one made in Slicer) is written at the input's
resolution. Maps up to :data:`RAW_LIMIT_BYTES` are written raw (gzip saves a few
hundred bytes there and costs more than the write); larger ones gzip level 1.
"""

from __future__ import annotations

from pathlib import Path

import nrrd
import numpy as np

from ..core.heatmaps import grid_matrix
from ..core.layout import OutputLayout
from ..core.radiograph import Radiograph
from ..core.results import LocalizationResult
from .geometry import ijk_to_lps

__all__ = ["COMPRESSION_LEVEL", "RAW_LIMIT_BYTES", "write_float_nrrd", "write_heatmaps"]

#: gzip level of maps larger than :data:`RAW_LIMIT_BYTES`: float32 maps barely shrink
#: further at higher levels, which cost several times the time.
COMPRESSION_LEVEL = 1
#: Maps of at most this many bytes (a 128 x 128 float32 grid) are written raw.
RAW_LIMIT_BYTES = 64 * 1024


def write_float_nrrd(path: Path, image: np.ndarray, radiograph: Radiograph, what: str,
                     grid: bool = False) -> None:
    """A float32 image as NRRD over the radiograph: on its pixel grid (rows x columns),
    or with ``grid`` any rows x columns of cells tiling it."""
    image = np.asarray(image, dtype=np.float32)
    if (image.shape != radiograph.size if not grid
            else image.ndim != 2 or min(image.shape) < 1):
        raise ValueError(f"{what} has shape {image.shape}, the radiograph {radiograph.size}")
    matrix = grid_matrix(ijk_to_lps(radiograph), radiograph.size, image.shape)
    header = {
        "space": "left-posterior-superior",
        "kinds": ["domain", "domain", "domain"],
        "space directions": matrix[:3, :3].T,
        "space origin": matrix[:3, 3],
        "encoding": "raw" if image.nbytes <= RAW_LIMIT_BYTES else "gzip",
    }
    nrrd.write(str(path), image.T[:, :, np.newaxis], header,
               compression_level=COMPRESSION_LEVEL, index_order="F")


def write_heatmaps(
    result: LocalizationResult, radiograph: Radiograph, layout: OutputLayout
) -> list[Path]:
    """Write one NRRD per localised finding (its grid when it has one); the paths written."""
    written = []
    for item in result.localized:
        path = layout.heatmap(item.name)
        if item.heatmap_grid is None:
            write_float_nrrd(path, item.heatmap, radiograph, f"{item.name} heatmap")
        else:
            write_float_nrrd(path, item.heatmap_grid, radiograph, f"{item.name} heatmap",
                             grid=True)
        written.append(path)
    return written
