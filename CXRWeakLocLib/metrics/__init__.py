"""Every localisation and classification metric, implemented once.

- :mod:`.geometry`: boxes and masks (conventions there);
- :mod:`.localization`: one map against one region, and summaries over regions;
- :mod:`.intervals`: bootstrap intervals, single and paired;
- :mod:`.classification`: ROC-AUC and PR-AUC per finding.
"""

from .classification import ClassificationReport, FindingClassification, average_precision, roc_auc
from .geometry import (
    annotation_mask,
    box_iou,
    box_to_mask,
    floor_heatmap,
    mask_bounding_box,
    xywh_to_xyxy,
    xyxy_to_xywh,
)
from .intervals import Interval, mean_iou_accuracy_interval, paired_iou_accuracy_difference
from .localization import (
    IOU_THRESHOLDS,
    MODES,
    LocalizationReport,
    LocalizationScore,
    LocalizationSummary,
    iou_accuracy,
    score_localization,
)

__all__ = [
    "IOU_THRESHOLDS",
    "MODES",
    "ClassificationReport",
    "FindingClassification",
    "Interval",
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
