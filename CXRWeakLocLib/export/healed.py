"""``<stem>.<finding>.healed.nrrd`` and ``.png``: the radiograph with the finding removed.

Generative methods (TagGAN, VA-GAN) "heal" the image by removing the disease map;
showing the healed image beside the input lets a reader judge the map. The NRRD is
float32 in [0, 1] with the input's geometry (it overlays the input in Slicer); the
PNG is 8-bit. Results without healed images write nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..core.layout import OutputLayout
from ..core.radiograph import Radiograph
from ..core.results import LocalizationResult
from .heatmap_nrrd import write_float_nrrd

__all__ = ["write_healed"]


def write_healed(
    result: LocalizationResult, radiograph: Radiograph, layout: OutputLayout
) -> list[Path]:
    """Write one NRRD and one PNG per localised finding that has a healed image."""
    written = []
    for item in result.localized:
        if item.healed is None:
            continue
        healed = item.healed.astype(np.float32)
        nrrd_path = layout.healed(item.name, ".nrrd")
        write_float_nrrd(nrrd_path, healed, radiograph, f"{item.name} healed image")
        png_path = layout.healed(item.name, ".png")
        Image.fromarray(np.round(np.clip(healed, 0, 1) * 255).astype(np.uint8)).save(png_path)
        written += [nrrd_path, png_path]
    return written
