"""Bootstrap intervals of mean IoU-accuracy: one model, and two models on the same regions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .numbers import reaches

__all__ = ["Interval", "mean_iou_accuracy_interval", "paired_iou_accuracy_difference"]


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
        hits.setdefault(finding, []).append(float(reaches(np.float64(iou), threshold)))
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
    return float(np.mean(reaches(np.asarray(ious, dtype=np.float64), threshold)))


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
