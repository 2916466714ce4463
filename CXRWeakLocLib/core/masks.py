"""From a heatmap to a binary mask and boxes: the named rules every path uses.

``localize``, ``evaluate``, the Slicer module and the benchmarks all turn maps into
masks through :func:`apply_mask_rule`, with the rule stored in the model card, so
the mask a user sees is the mask that was measured.

Rules (``MaskRule.name``):

``fraction_of_max``
    keep pixels whose min-max normalised heatmap is >= ``value`` (0-1).
``mean_plus_k_std``
    keep pixels above ``mean + value * std`` of the raw heatmap.
``otsu``
    keep pixels above Otsu's threshold of the normalised heatmap (``value`` unused).
``top_fraction``
    keep the ``value`` fraction of pixels with the highest heatmap values.

After thresholding, connected regions smaller than ``min_region_fraction`` of the
largest region are dropped (specks never make a box).

Each rule declares the range of its ``value`` and which way the value moves the mask
(:class:`RuleKind`), so a command line, a card and a threshold slider all check and
present a rule the same way. :func:`parse_mask_rule` reads the command-line form
``name[:value[:min_region_fraction]]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from .errors import CXRWeakLocError

__all__ = ["MaskRule", "RuleKind", "RULE_KINDS", "Box", "MASK_RULES", "normalize_heatmap",
           "apply_mask_rule", "mask_boxes", "mask_and_boxes", "otsu_threshold",
           "parse_mask_rule"]

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class RuleKind:
    """What a rule's ``value`` means: its range, and which way it moves the mask.

    Attributes:
        low, high: the accepted values (inclusive).
        larger_value_shrinks_mask: True when a larger value keeps fewer pixels (a
            threshold), False when it keeps more (a fraction of pixels).
        adjustable: False when the rule has no parameter (``value`` is ignored).
    """

    low: float
    high: float
    larger_value_shrinks_mask: bool = True
    adjustable: bool = True


#: Every rule's :class:`RuleKind` (the module docstring says what each rule does).
RULE_KINDS: dict[str, RuleKind] = {
    "fraction_of_max": RuleKind(0.0, 1.0),
    "mean_plus_k_std": RuleKind(0.0, 5.0),
    "otsu": RuleKind(0.0, 1.0, adjustable=False),
    "top_fraction": RuleKind(0.0, 1.0, larger_value_shrinks_mask=False),
}
MASK_RULES = tuple(RULE_KINDS)


@dataclass(frozen=True)
class MaskRule:
    """A named heatmap-to-mask rule with its parameter (see the module docstring)."""

    name: str = "fraction_of_max"
    value: float = 0.5
    min_region_fraction: float = 0.1

    def __post_init__(self) -> None:
        if self.name not in MASK_RULES:
            raise ValueError(f"unknown mask rule {self.name!r} (known: {', '.join(MASK_RULES)})")
        if not 0.0 <= self.min_region_fraction <= 1.0:
            raise ValueError(f"min_region_fraction must be in 0-1, got {self.min_region_fraction}")
        kind = self.kind
        if kind.adjustable and not kind.low <= self.value <= kind.high:
            raise ValueError(f"{self.name}'s value must be in {kind.low:g}-{kind.high:g}, "
                             f"got {self.value:g}")

    @property
    def kind(self) -> RuleKind:
        """The rule's value range and direction."""
        return RULE_KINDS[self.name]

    def to_dict(self) -> dict:
        return asdict(self)

    def with_value(self, value: float) -> MaskRule:
        """The same rule with another parameter (the Slicer threshold slider uses this)."""
        return MaskRule(self.name, float(value), self.min_region_fraction)

    def __str__(self) -> str:
        return f"{self.name}({self.value:g})"


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixel coordinates: columns x0..x1, rows y0..y1 (exclusive)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def area(self) -> int:
        return self.width * self.height

    def to_xywh(self) -> list[int]:
        return [self.x0, self.y0, self.width, self.height]


def normalize_heatmap(heatmap: np.ndarray, like: np.ndarray | None = None) -> np.ndarray:
    """Min-max normalise to [0, 1] (a constant map becomes all zeros).

    With ``like``, scale by ``like``'s range instead of the map's own (a map's grid
    normalised as its upsampled copy is; its values may then pass 0 and 1 a little).
    """
    heatmap = np.asarray(heatmap, dtype=np.float32)
    reference = heatmap if like is None else np.asarray(like, dtype=np.float32)
    low, high = float(reference.min()), float(reference.max())
    if high - low <= 1e-12:
        return np.zeros_like(heatmap)
    return (heatmap - low) / (high - low)


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of values in [0, 1] (the bin centre that best splits ``bins`` bins)."""
    hist, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    centers = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(hist)
    weight_high = weight_low[-1] - weight_low
    mean_low = np.cumsum(hist * centers) / np.maximum(weight_low, 1)
    total = (hist * centers).sum()
    mean_high = (total - np.cumsum(hist * centers)) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(centers[int(np.argmax(between))])


def _thresholded(heatmap: np.ndarray, rule: MaskRule) -> np.ndarray:
    """The rule's cut of ``heatmap``, before small regions are dropped."""
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if rule.name == "mean_plus_k_std":
        return heatmap > heatmap.mean() + rule.value * heatmap.std()
    normalized = normalize_heatmap(heatmap)
    if rule.name == "fraction_of_max":
        mask = normalized >= rule.value
    elif rule.name == "otsu":
        mask = normalized > otsu_threshold(normalized)
    else:  # top_fraction
        cut = np.quantile(normalized, 1.0 - rule.value)
        mask = normalized >= cut
    if float(heatmap.max() - heatmap.min()) <= 1e-12:
        mask = np.zeros_like(mask)
    return mask


def _regions(mask: np.ndarray, min_fraction: float) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                             tuple[int, int]]:
    """Labels (8-connected) of ``mask`` inside the box around its pixels, the labels kept
    (regions of at least ``min_fraction`` of the largest), every region's size, and the
    box's corner (row, column). Labelling the box alone gives the same regions in the same
    order as the whole image (the box keeps the pixels' raster order), for a fraction of
    the work: a finding's mask is a small part of the radiograph."""
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return np.zeros((0, 0), np.int32), np.zeros(0, np.int64), np.zeros(0, np.int64), (0, 0)
    corner = (int(rows[0]), int(columns[0]))
    box = mask[rows[0]:rows[-1] + 1, columns[0]:columns[-1] + 1]
    labels, count = ndimage.label(box, structure=_EIGHT_CONNECTED)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    if count <= 1 or min_fraction <= 0:
        return labels, np.arange(1, count + 1), sizes, corner
    return labels, np.flatnonzero(sizes >= min_fraction * sizes.max()) + 1, sizes, corner


def _kept(shape: tuple[int, ...], labels: np.ndarray, keep: np.ndarray,
          corner: tuple[int, int]) -> np.ndarray:
    """The pixels of the kept labels on an image of ``shape`` (a lookup table)."""
    table = np.zeros(int(labels.max(initial=0)) + 1, dtype=bool)
    table[keep] = True
    mask = np.zeros(shape, dtype=bool)
    mask[corner[0]:corner[0] + labels.shape[0], corner[1]:corner[1] + labels.shape[1]] = \
        table[labels]
    return mask


def _boxes(labels: np.ndarray, keep: np.ndarray, sizes: np.ndarray,
           corner: tuple[int, int]) -> list[Box]:
    """Boxes of the kept labels, largest first (ties in label order), in image pixels."""
    if keep.size == 0:
        return []
    slices = ndimage.find_objects(labels)
    order = keep[np.argsort(-sizes[keep - 1], kind="stable")]
    row, column = corner
    return [Box(slices[i - 1][1].start + column, slices[i - 1][0].start + row,
                slices[i - 1][1].stop + column, slices[i - 1][0].stop + row) for i in order]


def apply_mask_rule(heatmap: np.ndarray, rule: MaskRule) -> np.ndarray:
    """Binary mask (bool, same shape) of ``heatmap`` under ``rule``."""
    thresholded = _thresholded(heatmap, rule)
    labels, keep, _, corner = _regions(thresholded, rule.min_region_fraction)
    return _kept(thresholded.shape, labels, keep, corner)


def mask_boxes(mask: np.ndarray) -> list[Box]:
    """Boxes of the connected regions (8-connectivity) of ``mask``, largest first."""
    labels, keep, sizes, corner = _regions(np.asarray(mask, dtype=bool), 0.0)
    return _boxes(labels, keep, sizes, corner)


def mask_and_boxes(heatmap: np.ndarray, rule: MaskRule) -> tuple[np.ndarray, list[Box]]:
    """``apply_mask_rule`` and the ``mask_boxes`` of its mask, labelling the image once:
    the kept regions are the mask's regions, in the same order."""
    thresholded = _thresholded(heatmap, rule)
    labels, keep, sizes, corner = _regions(thresholded, rule.min_region_fraction)
    return _kept(thresholded.shape, labels, keep, corner), _boxes(labels, keep, sizes, corner)


def parse_mask_rule(text: str) -> MaskRule:
    """``name[:value[:min_region_fraction]]`` -> MaskRule; a one-line error otherwise.

    ``fraction_of_max:0.4`` keeps the default speck filter; ``fraction_of_max:0.706:0``
    boxes every isolated region (ChestX-ray14's protocol: 180 of 255, no filter).
    """
    name, *numbers = text.split(":")
    if name not in MASK_RULES:
        raise CXRWeakLocError(f"unknown mask rule {name!r} (known: {', '.join(MASK_RULES)})")
    if len(numbers) > 2:
        raise CXRWeakLocError(f"mask rule {text!r}: expected name[:value[:min_region_fraction]]")
    try:
        value, min_region = (float(number) if number else None
                             for number in [*numbers, "", ""][:2])
    except ValueError:
        raise CXRWeakLocError(f"mask rule {text!r}: values must be numbers") from None
    default = MaskRule(name)
    try:
        return MaskRule(name, default.value if value is None else value,
                        default.min_region_fraction if min_region is None else min_region)
    except ValueError as error:  # a parameter out of range
        raise CXRWeakLocError(f"mask rule {text!r}: {error}") from None
