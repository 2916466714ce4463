"""Classification metrics per finding: ROC-AUC and average precision (PR-AUC)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from .numbers import json_float, nan_mean

__all__ = ["ClassificationReport", "FindingClassification", "average_precision", "roc_auc"]


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
            nan_mean(f.roc_auc for f in per_finding.values()),
            nan_mean(f.pr_auc for f in per_finding.values()),
        )

    def to_dict(self) -> dict:
        """JSON-ready dict (NaN as None)."""
        return {
            "findings": {
                name: {
                    "roc_auc": json_float(f.roc_auc),
                    "pr_auc": json_float(f.pr_auc),
                    "n_positive": f.n_positive,
                    "n_negative": f.n_negative,
                }
                for name, f in self.findings.items()
            },
            "mean_roc_auc": json_float(self.mean_roc_auc),
            "mean_pr_auc": json_float(self.mean_pr_auc),
        }
