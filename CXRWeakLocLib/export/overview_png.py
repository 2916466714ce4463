"""``<stem>.png``: the picture a person looks at first.

A grid of panels: the radiograph, then one panel per localised finding with its
heatmap, mask outline, boxes, name and probability. With no localised finding,
the radiograph alone, titled "no finding above threshold". The display is
downsampled to at most :data:`MAX_DISPLAY` pixels a side, so drawing stays fast.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from scipy import ndimage

from ..localize import FindingResult, LocalizationResult
from ..radiograph import Radiograph

__all__ = ["MAX_DISPLAY", "write_overview"]

#: Largest displayed side in pixels.
MAX_DISPLAY = 768
PANEL_INCHES = 4.0
DPI = 100
HEATMAP_ALPHA = 0.6


def _stride(radiograph: Radiograph) -> int:
    return max(1, math.ceil(max(radiograph.size) / MAX_DISPLAY))


def _outline(mask: np.ndarray) -> np.ndarray:
    """A 2-pixel band along the inside of the mask border."""
    return mask & ~ndimage.binary_erosion(mask, iterations=2)


def _draw_finding(ax, item: FindingResult, stride: int) -> None:
    heatmap = np.clip(item.heatmap[::stride, ::stride], 0.0, 1.0)
    colours = colormaps["inferno"](heatmap)
    colours[..., 3] = HEATMAP_ALPHA * heatmap  # low heat stays transparent: anatomy shows
    ax.imshow(colours, interpolation="bilinear")
    outline = _outline(item.mask[::stride, ::stride])
    overlay = np.zeros((*outline.shape, 4), dtype=np.float32)
    overlay[outline] = (*item.finding.color_float, 1.0)
    ax.imshow(overlay, interpolation="nearest")
    for box in item.boxes:
        ax.add_patch(Rectangle(
            (box.x0 / stride - 0.5, box.y0 / stride - 0.5), box.width / stride, box.height / stride,
            fill=False, edgecolor="white", linewidth=1.0, linestyle="--",
        ))
    ax.set_title(f"{item.name}  p={item.probability:.2f} (thr {item.threshold:.2f})",
                 fontsize=10)


def write_overview(result: LocalizationResult, radiograph: Radiograph, path: Path) -> None:
    """Render the overview PNG of one radiograph."""
    stride = _stride(radiograph)
    image = radiograph.pixels[::stride, ::stride]
    localized = result.localized
    panels = len(localized) + 1
    columns = math.ceil(math.sqrt(panels))
    rows = math.ceil(panels / columns)
    # A bare Figure on the Agg canvas: no pyplot state, no display, thread-safe.
    figure = Figure(figsize=(PANEL_INCHES * columns, PANEL_INCHES * rows + 0.4), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax in axes.flat[:panels]:
        ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="bilinear")
    axes.flat[0].set_title(
        radiograph.stem if localized else f"{radiograph.stem}: no finding above threshold",
        fontsize=10,
    )
    for ax, item in zip(axes.flat[1:], localized, strict=False):
        _draw_finding(ax, item, stride)
    for ax in axes.flat[:panels]:  # non-square pixels are shown to scale
        ax.set_aspect(radiograph.spacing[1] / radiograph.spacing[0])
    figure.suptitle(f"{result.model_name} {result.model_version} ({result.method}), "
                    f"mask {result.mask_rule}", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
