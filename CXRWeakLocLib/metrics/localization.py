"""Localisation scores: one heatmap against one ground-truth region, then their summaries.

Localisation is scored per (image, ground-truth finding) on the ground-truth finding's
heatmap ("oracle class"). The prediction ``P`` is always the mask of
:func:`~CXRWeakLocLib.core.masks.apply_mask_rule` under the model's rule, so the measured
mask is the one ``localize`` shows; ``G`` is the ground-truth mask. An empty prediction
has IoU 0 and IoR / PoI 0 (nothing found is nothing right); NCC is 0 when the heatmap
is constant. Means over findings are macro means over the findings present in the
scores (never divided by a fixed 14 or 8); NaN entries are skipped.

Two modes score a map against a region: **pixel** (the binary mask itself) and **box**
(the best-matching connected component's box against the region's box: the papers'
T(IoU) protocol).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ..core.findings import BOXED_FINDINGS
from ..core.masks import MaskRule, apply_mask_rule, mask_boxes
from .geometry import box_iou, mask_bounding_box
from .numbers import json_float, nan_mean, reaches

__all__ = ["IOU_THRESHOLDS", "MODES", "LocalizationReport", "LocalizationScore",
           "LocalizationSummary", "iou_accuracy", "score_localization"]

#: T(IoU) thresholds of the disease-mask paper's Table 1.
IOU_THRESHOLDS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
#: The two ways a map is scored against a region (see the module docstring).
MODES = ("pixel", "box")


@dataclass(frozen=True)
class LocalizationScore:
    """Localisation scores of one heatmap against one ground-truth finding.

    ``ior`` and ``poi_precision`` are the same number (``|P & G| / |P|``), kept
    under both names the papers use; ``poi_coverage`` is ``|P & G| / |G|``.
    ``pointing_hit`` is 1 when the map's maximum lies in the region, 0 when not; a
    map with tied maxima (a plateau) scores the fraction of them that do, i.e. the
    expected hit of a random tie-break, not whichever maximum comes first.
    """

    iou_pixel: float
    iou_box: float
    ior: float
    poi_precision: float
    poi_coverage: float
    pointing_hit: float
    ncc: float


def _ncc(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Normalised cross-correlation of a heatmap and a mask (0 if either is constant)."""
    h = heatmap - heatmap.mean()
    g = mask.astype(np.float64) - mask.mean()
    denominator = math.sqrt(float((h * h).sum()) * float((g * g).sum()))
    return float((h * g).sum()) / denominator if denominator > 0 else 0.0


def score_localization(
    heatmap: np.ndarray, gt_mask: np.ndarray, rule: MaskRule
) -> LocalizationScore:
    """Scores of ``heatmap`` (float, image resolution) against ``gt_mask`` under ``rule``.

    Pixel IoU compares the rule's mask with ``gt_mask``; box IoU is the best IoU of
    a connected component's box with the bounding box of ``gt_mask``. The pointing
    game counts tied maxima fairly (see :class:`LocalizationScore`).
    """
    heatmap = np.asarray(heatmap, dtype=np.float64)
    gt_mask = np.asarray(gt_mask, dtype=bool)
    if heatmap.ndim != 2 or heatmap.shape != gt_mask.shape:
        raise ValueError(f"heatmap {heatmap.shape} and mask {gt_mask.shape} must be equal 2-D")
    if not gt_mask.any():
        raise ValueError("the ground-truth mask is empty")
    predicted = apply_mask_rule(heatmap, rule)
    intersection = int(np.count_nonzero(predicted & gt_mask))
    union = int(np.count_nonzero(predicted | gt_mask))
    n_predicted = int(np.count_nonzero(predicted))
    precision = intersection / n_predicted if n_predicted else 0.0
    gt_box = mask_bounding_box(gt_mask)
    peaks = heatmap == heatmap.max()
    return LocalizationScore(
        iou_pixel=intersection / union,
        iou_box=max((box_iou(box, gt_box) for box in mask_boxes(predicted)), default=0.0),
        ior=precision,
        poi_precision=precision,
        poi_coverage=intersection / int(np.count_nonzero(gt_mask)),
        pointing_hit=float(np.count_nonzero(peaks & gt_mask) / np.count_nonzero(peaks)),
        ncc=_ncc(heatmap, gt_mask),
    )


def iou_accuracy(
    ious: Iterable[float], thresholds: Sequence[float] = IOU_THRESHOLDS
) -> dict[float, float]:
    """Fraction of ground-truth boxes with IoU >= T for each T (NaN for no boxes)."""
    values = np.asarray(list(ious), dtype=np.float64)
    if values.size == 0:
        return {float(t): math.nan for t in thresholds}
    return {float(t): float(np.mean(reaches(values, t))) for t in thresholds}


@dataclass(frozen=True)
class LocalizationSummary:
    """Localisation metrics of one finding, or their macro mean over findings.

    ``accuracy_*`` map T(IoU) to IoU-accuracy; ``mtiou_*`` is their mean over T;
    ``pointing`` is the pointing-game accuracy; ``count`` the number of boxes.
    """

    count: int
    accuracy_pixel: dict[float, float]
    accuracy_box: dict[float, float]
    mtiou_pixel: float
    mtiou_box: float
    ior: float
    poi_precision: float
    poi_coverage: float
    pointing: float
    ncc: float

    @classmethod
    def of_scores(
        cls, scores: Sequence[LocalizationScore], thresholds: Sequence[float]
    ) -> LocalizationSummary:
        """Summary of one finding's per-box scores."""

        def column(name: str) -> float:
            return nan_mean(float(getattr(score, name)) for score in scores)

        pixel = iou_accuracy((s.iou_pixel for s in scores), thresholds)
        box = iou_accuracy((s.iou_box for s in scores), thresholds)
        return cls(
            count=len(scores),
            accuracy_pixel=pixel,
            accuracy_box=box,
            mtiou_pixel=nan_mean(pixel.values()),
            mtiou_box=nan_mean(box.values()),
            ior=column("ior"),
            poi_precision=column("poi_precision"),
            poi_coverage=column("poi_coverage"),
            pointing=column("pointing_hit"),
            ncc=column("ncc"),
        )

    @classmethod
    def mean_of(
        cls, summaries: Sequence[LocalizationSummary], thresholds: Sequence[float]
    ) -> LocalizationSummary:
        """Macro mean of per-finding summaries (``count`` is the total)."""

        def column(name: str) -> float:
            return nan_mean(getattr(summary, name) for summary in summaries)

        def accuracy(name: str) -> dict[float, float]:
            return {
                float(t): nan_mean(getattr(summary, name)[float(t)] for summary in summaries)
                for t in thresholds
            }

        return cls(
            count=sum(summary.count for summary in summaries),
            accuracy_pixel=accuracy("accuracy_pixel"),
            accuracy_box=accuracy("accuracy_box"),
            mtiou_pixel=column("mtiou_pixel"),
            mtiou_box=column("mtiou_box"),
            ior=column("ior"),
            poi_precision=column("poi_precision"),
            poi_coverage=column("poi_coverage"),
            pointing=column("pointing"),
            ncc=column("ncc"),
        )

    def accuracy(self, mode: str) -> dict[float, float]:
        """IoU-accuracy of ``mode`` (``"pixel"`` or ``"box"``)."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r} (known: {', '.join(MODES)})")
        return self.accuracy_pixel if mode == "pixel" else self.accuracy_box

    def to_dict(self) -> dict:
        """JSON-ready dict: thresholds as ``"0.3"`` keys, NaN as None."""
        result: dict = {}
        for name, value in asdict(self).items():
            if isinstance(value, dict):
                result[name] = {f"{t:g}": json_float(v) for t, v in value.items()}
            elif isinstance(value, int):
                result[name] = value
            else:
                result[name] = json_float(value)
        return result


def _finding_order(name: str, first_seen: dict[str, int]) -> tuple[int, int]:
    """The 8 boxed ChestX-ray14 findings in NIH's order, then others as first seen."""
    if name in BOXED_FINDINGS:
        return 0, BOXED_FINDINGS.index(name)
    return 1, first_seen[name]


@dataclass(frozen=True)
class LocalizationReport:
    """Per-finding localisation summaries and their mean over the findings present."""

    thresholds: tuple[float, ...]
    findings: dict[str, LocalizationSummary]
    mean: LocalizationSummary

    @classmethod
    def from_scores(
        cls,
        scores: Iterable[tuple[str, LocalizationScore]],
        thresholds: Sequence[float] = IOU_THRESHOLDS,
    ) -> LocalizationReport:
        """Group ``(finding, score)`` pairs by finding and summarise."""
        grouped: dict[str, list[LocalizationScore]] = {}
        for finding, score in scores:
            grouped.setdefault(finding, []).append(score)
        first_seen = {name: index for index, name in enumerate(grouped)}
        names = sorted(grouped, key=lambda name: _finding_order(name, first_seen))
        thresholds = tuple(float(t) for t in thresholds)
        findings = {
            name: LocalizationSummary.of_scores(grouped[name], thresholds) for name in names
        }
        return cls(
            thresholds, findings, LocalizationSummary.mean_of(list(findings.values()), thresholds)
        )

    def to_dict(self) -> dict:
        return {
            "thresholds": list(self.thresholds),
            "findings": {name: summary.to_dict() for name, summary in self.findings.items()},
            "mean": self.mean.to_dict(),
        }
