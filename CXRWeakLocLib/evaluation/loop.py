"""``cxrweakloc evaluate``: one model, one dataset, every metric, written to a folder.

Each ground-truth box or mask is scored on the heatmap of its own finding (the
"oracle class" protocol of HAM and the disease-mask paper), with the very mask rule
``localize`` uses (:func:`~CXRWeakLocLib.metrics.score_localization` calls
:func:`~CXRWeakLocLib.core.masks.apply_mask_rule`). The report and its files are
:mod:`.report`'s; rule sweeps and their cross-validation :mod:`.rules`'.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..core.errors import CXRWeakLocError
from ..core.masks import MaskRule, parse_mask_rule
from ..core.radiograph import Radiograph, read_radiograph
from ..data.records import ImageRecord, label_vector, patient_key
from ..data.sources import read_dataset
from ..localize import Localizer
from ..metrics import (
    MODES,
    ClassificationReport,
    LocalizationReport,
    LocalizationScore,
    annotation_mask,
    floor_heatmap,
    mean_iou_accuracy_interval,
    paired_iou_accuracy_difference,
    score_localization,
)
from .report import EvaluationReport, check_mode, write_report
from .rules import CHOOSE_MODE, SWEEP_RULES, cross_validate_choice, sweep_key, sweep_row

__all__ = ["evaluate_model", "record_radiograph"]

logger = logging.getLogger(__name__)


def _batches(records: Sequence[ImageRecord], size: int) -> Iterator[Sequence[ImageRecord]]:
    for start in range(0, len(records), size):
        yield records[start:start + size]


def record_radiograph(record: ImageRecord) -> Radiograph:
    """The radiograph of a dataset record (in-memory pixels or its image file)."""
    if record.pixels is not None:
        return Radiograph(pixels=record.pixels)
    return read_radiograph(record.image)


def evaluate_model(
    dataset: str,
    root: Path,
    model: str,
    out_dir: Path,
    images_list: Path | None = None,
    device: str = "auto",
    mask_rule: str | MaskRule | None = None,
    sweep: bool = False,
    batch_size: int = 8,
    progress: bool = True,
    choose_rule: bool = False,
    choose_in: str = CHOOSE_MODE,
) -> EvaluationReport:
    """Score ``model`` on ``dataset`` and write the report files into ``out_dir``.

    ``sweep`` also scores every rule of :data:`SWEEP_RULES`; ``choose_rule`` does that
    and reports under the best of them (:func:`best_sweep_rule`) from the same pass,
    which is how a model's rule is chosen on a dev set: by its IoU-accuracy in mode
    ``choose_in`` (box mode for expert boxes; pixel mode where the truth is an exact mask).
    """
    check_mode(choose_in)
    records = read_dataset(dataset, Path(root), images_list, annotations=True)
    if not records:
        raise CXRWeakLocError(f"{root}: no images to evaluate")
    localizer = Localizer.from_name(model, device)
    if isinstance(mask_rule, str):
        mask_rule = parse_mask_rule(mask_rule)
    rule = mask_rule or localizer.card.mask_rule
    findings = localizer.card.findings
    rules = [rule, *(SWEEP_RULES if sweep or choose_rule else ())]
    scores: list[list[tuple[str, LocalizationScore]]] = [[] for _ in rules]
    floor_inputs: list[tuple[str, tuple, np.ndarray]] = []  # regions that have a box
    probabilities, labels, regions = [], [], []
    patients: list[str] = []  # the patient of each scored region (folds never split one)

    bar = tqdm(total=len(records), desc="evaluate", unit="image", disable=not progress)
    for chunk in _batches(records, batch_size):
        radiographs = [record_radiograph(record) for record in chunk]
        batch = np.stack([localizer.prepare(r).numpy() for r in radiographs])
        probs, maps = localizer.predict(torch.from_numpy(batch))
        for record, radiograph, p, image_maps in zip(chunk, radiographs, probs, maps,
                                                     strict=True):
            targets, known = label_vector(record, findings)
            probabilities.append(p)
            labels.append(np.where(known > 0, targets, np.nan))
            for annotation in record.annotations:
                if annotation.finding not in findings:
                    continue
                index = findings.index(annotation.finding)
                gt = annotation_mask(annotation, radiograph.size)
                if not gt.any():
                    continue
                heatmap = localizer.heatmap(image_maps, index, radiograph)
                for position, candidate in enumerate(rules):
                    scores[position].append(
                        (annotation.finding, score_localization(heatmap, gt, candidate))
                    )
                regions.append({"image": record.id, "finding": annotation.finding,
                                "probability": round(float(p[index]), 5)})
                patients.append(patient_key(record))
                if annotation.box is not None:
                    floor_inputs.append((annotation.finding, annotation.box, gt))
        bar.update(len(chunk))
    bar.close()

    swept = [sweep_row(r, s) for r, s in zip(rules[1:], scores[1:], strict=True) if s]
    chosen = 0
    if choose_rule:
        if not swept:
            raise CXRWeakLocError(f"{root}: no ground-truth regions to choose a mask rule on")
        chosen = 1 + swept.index(max(swept, key=lambda row: sweep_key(row, choose_in)))
    main = scores[chosen]
    floor_scores = _floor_scores(floor_inputs)
    paired_floor = len(floor_scores) == len(main) > 0  # every region has a box
    floor_columns = ([{f"floor_iou_{mode}": round(getattr(floor, f"iou_{mode}"), 5)
                       for mode in MODES} for _, floor in floor_scores]
                     if paired_floor else [{}] * len(main))
    report = EvaluationReport(
        model=localizer.card.name,
        dataset=dataset,
        images=len(records),
        mask_rule=rules[chosen],
        localization=LocalizationReport.from_scores(main) if main else None,
        classification=ClassificationReport.from_arrays(
            findings, np.asarray(probabilities), np.asarray(labels)),
        floor=LocalizationReport.from_scores(floor_scores) if floor_scores else None,
        intervals={mode: mean_iou_accuracy_interval(
            (finding, getattr(score, f"iou_{mode}")) for finding, score in main)
            for mode in MODES} if main else {},
        above_floor={mode: paired_iou_accuracy_difference(
            (finding, getattr(score, f"iou_{mode}"), getattr(floor, f"iou_{mode}"))
            for (finding, score), (_, floor) in zip(main, floor_scores, strict=True))
            for mode in MODES} if paired_floor else {},
        sweep=swept,
        rule_chosen_in=choose_in if choose_rule else None,
        cross_validated=(cross_validate_choice(rules[1:], scores[1:], patients, choose_in)
                         if choose_rule else None),
        rows=[{**region, **_score_columns(score), **floor}
              for region, (_, score), floor in zip(regions, main, floor_columns, strict=True)],
    )
    write_report(report, Path(out_dir))
    return report


def _score_columns(score: LocalizationScore) -> dict:
    """The per-region columns of ``per_image.csv``."""
    return {"iou_pixel": round(score.iou_pixel, 5), "iou_box": round(score.iou_box, 5),
            "ior": round(score.ior, 5), "poi_coverage": round(score.poi_coverage, 5),
            "pointing_hit": round(score.pointing_hit, 5), "ncc": round(score.ncc, 5)}


def _floor_scores(inputs: list[tuple[str, tuple, np.ndarray]]
                  ) -> list[tuple[str, LocalizationScore]]:
    """The no-model floor, region by region: each finding's mean box predicted for every image."""
    boxes: dict[str, list] = {}
    for finding, box, _ in inputs:
        boxes.setdefault(finding, []).append(box)
    floor_rule = MaskRule("fraction_of_max", 0.5, 0.0)
    return [(finding, score_localization(floor_heatmap(boxes[finding], gt.shape), gt, floor_rule))
            for finding, _, gt in inputs]
