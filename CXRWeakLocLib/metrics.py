"""Every localisation and classification metric, implemented once.

Localisation is scored per (image, ground-truth finding) on the ground-truth
finding's heatmap ("oracle class"). The prediction ``P`` is always the mask of
:func:`CXRWeakLocLib.masks.apply_mask_rule` under the model's rule, so the measured
mask is the one ``localize`` shows; ``G`` is the ground-truth mask.

Conventions:

* Boxes are ``(x, y, w, h)`` in image pixels (ChestX-ray14, TBX11K/COCO) unless
  named ``xyxy`` (CheXpert/HAM ``[x1, y1, x2, y2]``). Pixel ``(r, c)`` covers
  ``[c, c + 1) x [r, r + 1)``; it belongs to a float box when its centre
  ``(c + 0.5, r + 0.5)`` satisfies ``x <= c + 0.5 < x + w`` and
  ``y <= r + 0.5 < y + h``. Integer boxes therefore cover exactly ``w x h`` pixels.
* An empty prediction has IoU 0 and IoR / PoI 0 (nothing found is nothing right).
* NCC is 0 when the heatmap is constant (no correlation can be measured).
* Means over findings are macro means over the findings present in the scores
  (never divided by a fixed 14 or 8); NaN entries are skipped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from .core.findings import BOXED_FINDINGS
from .core.masks import Box, MaskRule, apply_mask_rule, mask_boxes
from .data.records import Annotation

__all__ = [
    "IOU_THRESHOLDS",
    "ClassificationReport",
    "Interval",
    "FindingClassification",
    "LocalizationReport",
    "LocalizationScore",
    "LocalizationSummary",
    "annotation_mask",
    "average_precision",
    "box_iou",
    "box_to_mask",
    "floor_heatmap",
    "iou_accuracy",
    "mask_bounding_box",
    "mean_iou_accuracy_interval",
    "paired_iou_accuracy_difference",
    "roc_auc",
    "score_localization",
    "xywh_to_xyxy",
    "xyxy_to_xywh",
]

#: T(IoU) thresholds of the disease-mask paper's Table 1.
IOU_THRESHOLDS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)

#: An IoU this far below a threshold still reaches it (float rounding of ratios).
_THRESHOLD_TOLERANCE = 1e-9

_MODES = ("pixel", "box")


# ----------------------------------------------------------------- boxes and masks


def xyxy_to_xywh(box: Sequence[float]) -> tuple[float, float, float, float]:
    """``[x1, y1, x2, y2]`` -> ``(x, y, w, h)``."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return x1, y1, x2 - x1, y2 - y1


def xywh_to_xyxy(box: Sequence[float]) -> tuple[float, float, float, float]:
    """``(x, y, w, h)`` -> ``[x1, y1, x2, y2]``."""
    x, y, w, h = (float(v) for v in box)
    return x, y, x + w, y + h


def box_to_mask(box_xywh: Sequence[float], shape: tuple[int, int]) -> np.ndarray:
    """Boolean ``shape`` mask of the pixels whose centre lies inside the box.

    The box is clipped to the image; a box narrower than a pixel may hold no centre.
    """
    x, y, w, h = (float(v) for v in box_xywh)
    if w < 0 or h < 0:
        raise ValueError(f"box {tuple(box_xywh)} has a negative width or height")
    rows = np.arange(shape[0]) + 0.5
    cols = np.arange(shape[1]) + 0.5
    inside_rows = (rows >= y) & (rows < y + h)
    inside_cols = (cols >= x) & (cols < x + w)
    return inside_rows[:, None] & inside_cols[None, :]


def annotation_mask(annotation: Annotation, shape: tuple[int, int]) -> np.ndarray:
    """Ground-truth mask of an annotation: its own mask if it has one, else its box's."""
    if annotation.mask is not None:
        mask = np.asarray(annotation.mask, dtype=bool)
        if mask.shape != tuple(shape):
            raise ValueError(f"annotation mask shape {mask.shape} != image shape {tuple(shape)}")
        return mask
    if annotation.box is None:
        raise ValueError(f"annotation of {annotation.finding!r} has neither box nor mask")
    return box_to_mask(annotation.box, shape)


def mask_bounding_box(mask: np.ndarray) -> Box:
    """Bounding box of all true pixels of a non-empty mask."""
    rows = np.flatnonzero(np.any(mask, axis=1))
    cols = np.flatnonzero(np.any(mask, axis=0))
    if rows.size == 0:
        raise ValueError("the mask is empty: it has no bounding box")
    return Box(int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when both are empty)."""
    width = max(0, min(a.x1, b.x1) - max(a.x0, b.x0))
    height = max(0, min(a.y1, b.y1) - max(a.y0, b.y0))
    intersection = width * height
    union = a.area + b.area - intersection
    return intersection / union if union > 0 else 0.0


def floor_heatmap(
    boxes_of_finding: Sequence[Sequence[float]], shape: tuple[int, int]
) -> np.ndarray:
    """The "no-model floor": the mean ``(x, y, w, h)`` box of a finding as a 0/1 map."""
    boxes = np.asarray(boxes_of_finding, dtype=np.float64).reshape(-1, 4)
    if boxes.shape[0] == 0:
        raise ValueError("the floor heatmap needs at least one box")
    return box_to_mask(boxes.mean(axis=0), shape).astype(np.float32)


# ------------------------------------------------------------ per-image localisation


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


# ----------------------------------------------------------------------- aggregation


def _mean(values: Iterable[float]) -> float:
    """Mean of the non-NaN values; NaN when there are none."""
    array = np.asarray(list(values), dtype=np.float64)
    array = array[~np.isnan(array)]
    return float(array.mean()) if array.size else math.nan


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def iou_accuracy(
    ious: Iterable[float], thresholds: Sequence[float] = IOU_THRESHOLDS
) -> dict[float, float]:
    """Fraction of ground-truth boxes with IoU >= T for each T (NaN for no boxes)."""
    values = np.asarray(list(ious), dtype=np.float64)
    if values.size == 0:
        return {float(t): math.nan for t in thresholds}
    return {float(t): float(np.mean(_reaches(values, t))) for t in thresholds}


def _reaches(ious: np.ndarray, threshold: float) -> np.ndarray:
    """Which IoUs count as reaching ``threshold`` (with the rounding tolerance)."""
    return ious >= threshold - _THRESHOLD_TOLERANCE


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap confidence interval."""

    estimate: float
    low: float
    high: float
    level: float

    def as_difference(self) -> str:
        """``+0.045 (+0.016 to +0.073)``: the estimate and interval of a difference."""
        return f"{self.estimate:+.3f} ({self.low:+.3f} to {self.high:+.3f})"


def mean_iou_accuracy_interval(
    scores: Iterable[tuple[str, float]],
    threshold: float = 0.3,
    level: float = 0.95,
    samples: int = 2000,
    seed: int = 0,
) -> Interval:
    """Mean (over findings) IoU-accuracy at ``threshold`` with a percentile bootstrap CI.

    ``scores`` are ``(finding, iou)`` pairs, one per ground-truth region. Regions are
    resampled with replacement within each finding (the per-finding counts stay fixed),
    so the interval answers "how much would this figure move on another draw of the
    same number of boxes".
    """
    hits: dict[str, list[float]] = {}
    for finding, iou in scores:
        hits.setdefault(finding, []).append(float(_reaches(np.float64(iou), threshold)))
    return _finding_mean_interval(hits, level, samples, seed)


def paired_iou_accuracy_difference(
    pairs: Iterable[tuple[str, float | Sequence[float], float | Sequence[float]]],
    threshold: float = 0.3,
    level: float = 0.95,
    samples: int = 2000,
    seed: int = 0,
) -> Interval:
    """Mean IoU-accuracy of A minus that of B on the same regions, with a paired bootstrap CI.

    ``pairs`` are ``(finding, iou_a, iou_b)``, one per ground-truth region scored by
    both. Each bootstrap draw resamples regions within each finding and takes the same
    regions for A and B, so what the two share (an easy box, a hard box) cancels: the
    interval is far narrower than the two separate intervals suggest. An interval above
    0 means A is better than B on boxes like these.

    A side may give several IoUs per region (several runs of one recipe, e.g. training
    seeds): its hit on the region is then the fraction of runs that reach ``threshold``,
    and the difference is that of the recipes' mean IoU-accuracy over their runs.
    """
    differences: dict[str, list[float]] = {}
    for finding, iou_a, iou_b in pairs:
        differences.setdefault(finding, []).append(
            _hit_fraction(iou_a, threshold) - _hit_fraction(iou_b, threshold))
    return _finding_mean_interval(differences, level, samples, seed)


def _hit_fraction(ious: float | Sequence[float], threshold: float) -> float:
    """The fraction of a region's IoUs (one per run) that reach ``threshold``."""
    return float(np.mean(_reaches(np.asarray(ious, dtype=np.float64), threshold)))


def _finding_mean_interval(values: dict[str, list[float]], level: float, samples: int,
                           seed: int) -> Interval:
    """Mean over findings of each finding's mean value; regions resampled within findings."""
    if not values:
        raise ValueError("no scores to bootstrap")
    groups = [np.asarray(v, dtype=np.float64) for v in values.values()]
    rng = np.random.default_rng(seed)
    resampled = np.mean([
        rng.choice(group, size=(samples, group.size), replace=True).mean(axis=1)
        for group in groups
    ], axis=0)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(resampled, [tail, 100 - tail])
    return Interval(float(np.mean([g.mean() for g in groups])), float(low), float(high), level)


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
            return _mean(float(getattr(score, name)) for score in scores)

        pixel = iou_accuracy((s.iou_pixel for s in scores), thresholds)
        box = iou_accuracy((s.iou_box for s in scores), thresholds)
        return cls(
            count=len(scores),
            accuracy_pixel=pixel,
            accuracy_box=box,
            mtiou_pixel=_mean(pixel.values()),
            mtiou_box=_mean(box.values()),
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
            return _mean(getattr(summary, name) for summary in summaries)

        def accuracy(name: str) -> dict[float, float]:
            return {
                float(t): _mean(getattr(summary, name)[float(t)] for summary in summaries)
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
        if mode not in _MODES:
            raise ValueError(f"unknown mode {mode!r} (known: {', '.join(_MODES)})")
        return self.accuracy_pixel if mode == "pixel" else self.accuracy_box

    def to_dict(self) -> dict:
        """JSON-ready dict: thresholds as ``"0.3"`` keys, NaN as None."""
        result: dict = {}
        for name, value in asdict(self).items():
            if isinstance(value, dict):
                result[name] = {f"{t:g}": _json_float(v) for t, v in value.items()}
            elif isinstance(value, int):
                result[name] = value
            else:
                result[name] = _json_float(value)
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

    def to_markdown(self, mode: str = "pixel") -> str:
        """Table findings x T(IoU) of IoU-accuracy in ``mode``, with a Mean row and counts."""
        header = ["Finding", *(f"T(IoU)={t:g}" for t in self.thresholds), "n"]
        rows = [*self.findings.items(), ("Mean", self.mean)]
        lines = [
            "| " + " | ".join(header) + " |",
            "|---|" + "---:|" * (len(self.thresholds) + 1),
        ]
        for name, summary in rows:
            accuracy = summary.accuracy(mode)
            cells = [f"{accuracy[t]:.2f}" for t in self.thresholds]
            lines.append("| " + " | ".join([name, *cells, str(summary.count)]) + " |")
        return "\n".join(lines) + "\n"


# -------------------------------------------------------------------- classification


def _known_pairs(
    scores: Sequence[float], labels: Sequence[float]
) -> tuple[np.ndarray, np.ndarray] | None:
    """Scores and boolean labels with unknown (NaN) labels dropped; None if one class only."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels, dtype=np.float64).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"{scores.size} scores but {labels.size} labels")
    known = ~np.isnan(labels)
    scores, labels = scores[known], labels[known]
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError("labels must be 0, 1 or NaN (unknown)")
    if np.isnan(scores).any():
        raise ValueError("a score of a known label is NaN")
    positive = labels == 1.0
    if positive.all() or not positive.any():
        return None
    return scores, positive


def roc_auc(scores: Sequence[float], labels: Sequence[float]) -> float:
    """ROC-AUC by the Mann-Whitney rank formula (ties count one half); NaN labels skipped.

    NaN when only one class is present.
    """
    pairs = _known_pairs(scores, labels)
    if pairs is None:
        return math.nan
    scores, positive = pairs
    ranks = stats.rankdata(scores)  # average ranks of ties
    n_positive = int(positive.sum())
    n_negative = positive.size - n_positive
    u = float(ranks[positive].sum()) - n_positive * (n_positive + 1) / 2
    return u / (n_positive * n_negative)


def average_precision(scores: Sequence[float], labels: Sequence[float]) -> float:
    """Average precision ``sum_k (R_k - R_{k-1}) P_k`` over distinct score thresholds.

    The step-wise definition of sklearn's ``average_precision_score``: tied scores
    form one threshold. NaN labels skipped; NaN when only one class is present.
    """
    pairs = _known_pairs(scores, labels)
    if pairs is None:
        return math.nan
    scores, positive = pairs
    order = np.argsort(-scores, kind="mergesort")
    scores, positive = scores[order], positive[order]
    last_of_group = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    true_positives = np.cumsum(positive)[last_of_group]
    precision = true_positives / (last_of_group + 1)
    recall = true_positives / true_positives[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


@dataclass(frozen=True)
class FindingClassification:
    """Classification metrics of one finding over the images whose label is known."""

    roc_auc: float
    pr_auc: float
    n_positive: int
    n_negative: int


@dataclass(frozen=True)
class ClassificationReport:
    """Per-finding ROC-AUC / PR-AUC and their means (NaN findings skipped)."""

    findings: dict[str, FindingClassification]
    mean_roc_auc: float
    mean_pr_auc: float

    @classmethod
    def from_arrays(
        cls, findings: Sequence[str], scores: np.ndarray, labels: np.ndarray
    ) -> ClassificationReport:
        """From ``(images, findings)`` score and label arrays (labels 0, 1 or NaN)."""
        scores = np.asarray(scores, dtype=np.float64)
        labels = np.asarray(labels, dtype=np.float64)
        if scores.shape != labels.shape or scores.shape[-1:] != (len(findings),):
            raise ValueError(
                f"scores {scores.shape} and labels {labels.shape} must be (images, {len(findings)})"
            )
        per_finding = {
            name: FindingClassification(
                roc_auc=roc_auc(scores[:, k], labels[:, k]),
                pr_auc=average_precision(scores[:, k], labels[:, k]),
                n_positive=int(np.count_nonzero(labels[:, k] == 1.0)),
                n_negative=int(np.count_nonzero(labels[:, k] == 0.0)),
            )
            for k, name in enumerate(findings)
        }
        return cls(
            per_finding,
            _mean(f.roc_auc for f in per_finding.values()),
            _mean(f.pr_auc for f in per_finding.values()),
        )

    def to_dict(self) -> dict:
        """JSON-ready dict (NaN as None)."""
        return {
            "findings": {
                name: {
                    "roc_auc": _json_float(f.roc_auc),
                    "pr_auc": _json_float(f.pr_auc),
                    "n_positive": f.n_positive,
                    "n_negative": f.n_negative,
                }
                for name, f in self.findings.items()
            },
            "mean_roc_auc": _json_float(self.mean_roc_auc),
            "mean_pr_auc": _json_float(self.mean_pr_auc),
        }
