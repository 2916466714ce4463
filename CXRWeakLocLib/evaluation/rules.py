"""Choosing a model's mask rule on a dev set, and how much that choice flatters it.

``evaluate --sweep-mask-rules`` scores every rule of :data:`SWEEP_RULES`; a model's rule
is the best of them in :data:`CHOOSE_MODE` (:func:`best_sweep_rule`), and
:func:`cross_validate_choice` scores each patient fold under the rule the other folds
choose (the honest version of the same choice).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from ..core.errors import CXRWeakLocError
from ..core.masks import MaskRule
from ..metrics import LocalizationReport, LocalizationScore
from .report import HEADLINE_PREFIX, CrossValidatedChoice, EvaluationReport

__all__ = ["CHOOSE_MODE", "SWEEP_RULES", "best_sweep_rule", "cross_validate_choice",
           "sweep_key", "sweep_row"]

#: The mode a model's mask rule is chosen in: the papers' T(IoU) protocol, the headline.
CHOOSE_MODE = "box"
#: Mask rules scored by ``--sweep-mask-rules`` (to choose a model's rule on a dev set).
SWEEP_RULES: tuple[MaskRule, ...] = (
    *(MaskRule("fraction_of_max", v) for v in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)),
    *(MaskRule("mean_plus_k_std", v) for v in (0.0, 0.5, 1.0)),
    MaskRule("otsu", 0.0),
    *(MaskRule("top_fraction", v) for v in (0.1, 0.2, 0.3, 0.4)),
)


def sweep_row(rule: MaskRule, scores: list[tuple[str, LocalizationScore]]) -> dict:
    """One swept rule's figures in both modes (keys prefixed as in the headline)."""
    report = LocalizationReport.from_scores(scores)
    mean = report.mean
    row: dict = {"rule": str(rule), "name": rule.name, "value": rule.value}
    for mode, prefix in HEADLINE_PREFIX.items():
        accuracy = mean.accuracy(mode)
        row |= {f"{prefix}iou_accuracy_0.3": accuracy[0.3],
                f"{prefix}iou_accuracy_0.5": accuracy[0.5],
                f"{prefix}mtiou": getattr(mean, f"mtiou_{mode}"),
                f"{prefix}per_finding_iou_accuracy_0.3": {
                    name: summary.accuracy(mode)[0.3]
                    for name, summary in report.findings.items()}}
    return row


def _fold(patient: str, folds: int) -> int:
    return int(hashlib.sha256(patient.encode()).hexdigest()[:8], 16) % folds


def cross_validate_choice(rules: Sequence[MaskRule],
                          scores: Sequence[list[tuple[str, LocalizationScore]]],
                          patients: Sequence[str], mode: str, folds: int = 5
                          ) -> CrossValidatedChoice | None:
    """Score each patient fold under the rule the other folds choose (best at 0.3 in ``mode``).

    ``scores[r][i]`` is region ``i`` under ``rules[r]``; ``patients[i]`` its patient.
    None when fewer than two folds hold regions.
    """
    fold_of = [_fold(patient, folds) for patient in patients]
    used = sorted(set(fold_of))
    if len(used) < 2:
        return None
    held_out: list[tuple[str, LocalizationScore]] = []
    chosen: list[str] = []
    for fold in used:
        rows = [sweep_row(rule, [s for s, f in zip(rule_scores, fold_of, strict=True)
                                  if f != fold])
                for rule, rule_scores in zip(rules, scores, strict=True)]
        best = max(range(len(rules)), key=lambda r: sweep_key(rows[r], mode))
        chosen.append(str(rules[best]))
        held_out += [s for s, f in zip(scores[best], fold_of, strict=True) if f == fold]
    return CrossValidatedChoice(len(used), mode, chosen, LocalizationReport.from_scores(held_out))


def best_sweep_rule(report: EvaluationReport, mode: str = CHOOSE_MODE) -> MaskRule:
    """The swept rule with the best mean IoU-accuracy at 0.3 in ``mode`` (mTIoU breaks ties)."""
    if not report.sweep:
        raise CXRWeakLocError("no mask-rule sweep in this report")
    best = max(report.sweep, key=lambda row: sweep_key(row, mode))
    return MaskRule(best["name"], best["value"])


def sweep_key(row: dict, mode: str) -> tuple[float, float]:
    """Best rule first: IoU-accuracy at 0.3, then mTIoU, both in ``mode``."""
    prefix = HEADLINE_PREFIX[mode]
    return row[f"{prefix}iou_accuracy_0.3"], row[f"{prefix}mtiou"]
