"""Measuring models: ``evaluate`` (:mod:`.loop`), its report (:mod:`.report`), mask-rule
choice (:mod:`.rules`) and paired comparison (:mod:`.compare`)."""

from .compare import Comparison, compare_evaluations
from .loop import evaluate_model, record_radiograph
from .report import HEADLINE_PREFIX, CrossValidatedChoice, EvaluationReport, write_report
from .rules import CHOOSE_MODE, SWEEP_RULES, best_sweep_rule, cross_validate_choice

__all__ = ["CHOOSE_MODE", "HEADLINE_PREFIX", "SWEEP_RULES", "Comparison", "CrossValidatedChoice",
           "EvaluationReport", "best_sweep_rule", "compare_evaluations", "cross_validate_choice",
           "evaluate_model", "record_radiograph", "write_report"]
