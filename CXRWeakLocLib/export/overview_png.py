"""``<stem>.png``: the picture a person looks at first.

A grid of panels under a header line (model, version, method, mask rule): the
radiograph, then one panel per localised finding with its heatmap (transparent
where the map is low, so the anatomy shows), its mask outline in the finding's
colour, its boxes (white, dashed), and its name, probability and threshold. With
no localised finding, the radiograph alone, titled "no finding above threshold".

Composed with numpy and Pillow alone (no plotting library, no state kept between
calls): each panel is :data:`PANEL_SIDE` pixels a side for up to
:data:`LARGE_PANELS` panels and :data:`SMALL_PANEL_SIDE` beyond, so an overview
of all 14 findings stays small and quick to draw. Non-square pixels are shown to
scale.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from ..core.radiograph import Radiograph
from ..core.results import FindingResult, LocalizationResult

__all__ = ["LARGE_PANELS", "PANEL_SIDE", "SMALL_PANEL_SIDE", "write_overview"]

#: Side of one panel (title strip included) in pixels, up to ``LARGE_PANELS`` panels.
PANEL_SIDE = 400
#: Side of one panel when there are more than ``LARGE_PANELS`` panels.
SMALL_PANEL_SIDE = 256
LARGE_PANELS = 4
HEADER_HEIGHT = 40
TITLE_HEIGHT = 22
HEATMAP_ALPHA = 0.6
OUTLINE_WIDTH = 2
DASH, GAP = 4, 3
BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)
BOX = (255, 255, 255)
#: PNG deflate level: 1 is several times faster than Pillow's default and the
#: file is hardly larger (the panels are mostly smooth).
PNG_COMPRESSION = 1

#: The "inferno" colour map at 17 evenly spaced stops (0..1), RGB 0-255.
_INFERNO_STOPS = np.array([
    [0, 0, 4], [11, 7, 36], [33, 12, 74], [61, 9, 101], [87, 16, 110], [113, 25, 110],
    [138, 34, 106], [163, 44, 97], [188, 55, 84], [210, 70, 68], [228, 90, 49],
    [241, 115, 29], [249, 142, 9], [252, 172, 17], [249, 203, 53], [242, 234, 105],
    [252, 255, 164],
], dtype=np.float32)
#: 256-entry heat LUT interpolated from the stops.
HEAT_LUT = np.stack([
    np.interp(np.linspace(0.0, 1.0, 256), np.linspace(0.0, 1.0, len(_INFERNO_STOPS)), channel)
    for channel in _INFERNO_STOPS.T
], axis=-1).astype(np.float32)


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's built-in font at ``size`` pixels (cached: loading it is not free)."""
    return ImageFont.load_default(size=size)


def _fitting_font(text: str, width: int, size: int):
    """The largest font of at most ``size`` px (down to 8) in which ``text`` fits ``width``."""
    while size > 8 and _font(size).getlength(text) > width:
        size -= 1
    return _font(size)


def _centred_text(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], text: str,
                  size: int) -> None:
    """``text`` centred in ``box`` (x0, y0, x1, y1), shrunk until it fits."""
    x0, y0, x1, y1 = box
    font = _fitting_font(text, x1 - x0 - 4, size)
    draw.text(((x0 + x1) / 2, (y0 + y1) / 2), text, fill=TEXT, font=font, anchor="mm")


def _display_size(radiograph: Radiograph, width: int, height: int) -> tuple[int, int]:
    """(width, height) of the radiograph fitted into ``width`` x ``height``, to scale in mm."""
    rows, columns = radiograph.size
    column_spacing, row_spacing = radiograph.spacing
    physical_width, physical_height = columns * column_spacing, rows * row_spacing
    scale = min(width / physical_width, height / physical_height)
    return (max(1, round(physical_width * scale)), max(1, round(physical_height * scale)))


def _resized(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A float array resampled (bilinear, anti-aliased) to ``size`` = (width, height)."""
    image = Image.fromarray(np.ascontiguousarray(array, dtype=np.float32), mode="F")
    return np.asarray(image.resize(size, Image.Resampling.BILINEAR))


def _outline(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A band of ``OUTLINE_WIDTH`` px along the inside of the displayed mask's border."""
    shown = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255, mode="L").resize(
        size, Image.Resampling.NEAREST)) > 0
    return shown & ~ndimage.binary_erosion(shown, iterations=OUTLINE_WIDTH)


def _dashed_rectangle(draw: ImageDraw.ImageDraw, x0: float, y0: float, x1: float,
                      y1: float) -> None:
    """A white dashed rectangle (Pillow draws solid lines only)."""
    for start, stop, fixed, horizontal in ((x0, x1, y0, True), (x0, x1, y1, True),
                                           (y0, y1, x0, False), (y0, y1, x1, False)):
        position = start
        while position < stop:
            end = min(position + DASH, stop)
            line = ([(position, fixed), (end, fixed)] if horizontal
                    else [(fixed, position), (fixed, end)])
            draw.line(line, fill=BOX, width=1)
            position = end + GAP


def _finding_panel(base: np.ndarray, item: FindingResult, size: tuple[int, int],
                   scale: tuple[float, float]) -> Image.Image:
    """The radiograph with one finding's heat overlay, mask outline and boxes."""
    heat = np.clip(_resized(item.heatmap, size), 0.0, 1.0)
    colours = HEAT_LUT[np.round(heat * 255).astype(np.uint8)]
    alpha = (HEATMAP_ALPHA * heat)[..., np.newaxis]
    panel = base[..., np.newaxis] * (1.0 - alpha) + colours * alpha
    pixels = np.round(panel).astype(np.uint8)
    pixels[_outline(item.mask, size)] = item.finding.color
    image = Image.fromarray(pixels, mode="RGB")
    draw = ImageDraw.Draw(image)
    scale_x, scale_y = scale
    for box in item.boxes:
        _dashed_rectangle(draw, box.x0 * scale_x, box.y0 * scale_y,
                          box.x1 * scale_x - 1, box.y1 * scale_y - 1)
    return image


def write_overview(result: LocalizationResult, radiograph: Radiograph, path: Path) -> None:
    """Render the overview PNG of one radiograph."""
    localized = result.localized
    panels = len(localized) + 1
    columns = math.ceil(math.sqrt(panels))
    rows = math.ceil(panels / columns)
    side = PANEL_SIDE if panels <= LARGE_PANELS else SMALL_PANEL_SIDE
    title_size = 13 if side == PANEL_SIDE else 11
    canvas = Image.new("RGB", (side * columns, HEADER_HEIGHT + side * rows), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    _centred_text(draw, (0, 0, canvas.width, HEADER_HEIGHT),
                  f"{result.model_name} {result.model_version} ({result.method}), "
                  f"mask {result.mask_rule}", 15)

    size = _display_size(radiograph, side - 4, side - TITLE_HEIGHT - 2)
    image_rows, image_columns = radiograph.size
    scale = (size[0] / image_columns, size[1] / image_rows)
    base = np.clip(_resized(radiograph.pixels, size), 0.0, 1.0) * 255.0
    titles = [radiograph.stem if localized else f"{radiograph.stem}: no finding above threshold"]
    images = [Image.fromarray(np.round(base).astype(np.uint8), mode="L")]
    for item in localized:
        titles.append(f"{item.name}  p={item.probability:.2f} (thr {item.threshold:.2f})")
        images.append(_finding_panel(base, item, size, scale))

    for index, (title, image) in enumerate(zip(titles, images, strict=True)):
        left = (index % columns) * side
        top = HEADER_HEIGHT + (index // columns) * side
        _centred_text(draw, (left, top, left + side, top + TITLE_HEIGHT), title, title_size)
        canvas.paste(image, (left + (side - size[0]) // 2,
                             top + TITLE_HEIGHT + (side - TITLE_HEIGHT - size[1]) // 2))
    canvas.save(path, compress_level=PNG_COMPRESSION)
