"""``cxrweakloc evaluate``: one model, one dataset, every metric, written to a folder.

Each ground-truth box or mask is scored on the heatmap of its own finding (the
"oracle class" protocol of HAM and the disease-mask paper), with the very mask rule
``localize`` uses (:func:`~CXRWeakLocLib.metrics.score_localization` calls
:func:`~CXRWeakLocLib.masks.apply_mask_rule`). Outputs: ``metrics.json``,
``metrics.md`` (findings x T(IoU)), ``iou_accuracy.png`` and ``per_image.csv``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .core.errors import CXRWeakLocError
from .core.files import atomic_write_text, ensure_folder, partial_path
from .core.masks import MASK_RULES, MaskRule
from .core.radiograph import Radiograph, read_radiograph
from .data.records import ImageRecord, label_vector, patient_key
from .data.sources import read_dataset
from .localize import Localizer
from .metrics import (
    ClassificationReport,
    Interval,
    LocalizationReport,
    LocalizationScore,
    annotation_mask,
    floor_heatmap,
    mean_iou_accuracy_interval,
    paired_iou_accuracy_difference,
    score_localization,
)

__all__ = ["EvaluationReport", "Comparison", "CrossValidatedChoice", "compare_evaluations",
           "cross_validate_choice", "evaluate_model", "parse_mask_rule", "record_radiograph",
           "SWEEP_RULES"]

logger = logging.getLogger(__name__)

#: The two ways a map is scored against a box (METHODS.md): the binary mask itself, or
#: the box of its best-matching connected component (the papers' T(IoU) protocol).
MODES = ("pixel", "box")
#: How each mode's figures are named in :meth:`EvaluationReport.headline` (and cards).
HEADLINE_PREFIX = {"pixel": "", "box": "box_"}
#: The mode a model's mask rule is chosen in: the papers' T(IoU) protocol, the headline.
CHOOSE_MODE = "box"
#: Mask rules scored by ``--sweep-mask-rules`` (to choose a model's rule on a dev set).
SWEEP_RULES: tuple[MaskRule, ...] = (
    *(MaskRule("fraction_of_max", v) for v in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)),
    *(MaskRule("mean_plus_k_std", v) for v in (0.0, 0.5, 1.0)),
    MaskRule("otsu", 0.0),
    *(MaskRule("top_fraction", v) for v in (0.1, 0.2, 0.3, 0.4)),
)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise CXRWeakLocError(f"unknown mode {mode!r} (known: {', '.join(MODES)})")


def parse_mask_rule(text: str) -> MaskRule:
    """``name[:value[:min_region_fraction]]`` -> MaskRule; a clear error otherwise.

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


@dataclass
class CrossValidatedChoice:
    """The rule choice scored on patients it was not made on (the optimism it hides).

    The regions are split into ``folds`` by patient; each fold is scored under the
    sweep's best rule on the other folds. ``localization`` pools those held-out scores.
    """

    folds: int
    mode: str
    rules: list[str]
    localization: LocalizationReport

    def to_dict(self) -> dict:
        mean = self.localization.mean
        return {"folds": self.folds, "chosen_in_mode": self.mode, "rules": self.rules,
                **{f"{prefix}iou_accuracy_0.3": mean.accuracy(mode)[0.3]
                   for mode, prefix in HEADLINE_PREFIX.items()}}


@dataclass
class EvaluationReport:
    """Everything ``evaluate`` measured, with the protocol it was measured under."""

    model: str
    dataset: str
    images: int
    mask_rule: MaskRule
    localization: LocalizationReport | None
    classification: ClassificationReport
    floor: LocalizationReport | None = None
    #: per mode ("pixel", "box"): 95% bootstrap interval of the mean IoU-accuracy at 0.3
    intervals: dict[str, Interval] = field(default_factory=dict)
    #: per mode: model minus floor IoU-accuracy at 0.3 on the same regions (paired 95% CI)
    above_floor: dict[str, Interval] = field(default_factory=dict)
    sweep: list[dict] = field(default_factory=list)
    #: the mode the mask rule was chosen in on this set (the best of ``sweep``); None: given
    rule_chosen_in: str | None = None
    #: scores when each patient fold's rule is chosen on the other folds (choose_rule only)
    cross_validated: CrossValidatedChoice | None = None
    rows: list[dict] = field(default_factory=list)

    @property
    def boxes(self) -> int:
        return self.localization.mean.count if self.localization else 0

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "dataset": self.dataset,
            "images": self.images,
            "boxes": self.boxes,
            "protocol": "each ground-truth region scored on its own finding's heatmap",
            "mask_rule": self.mask_rule.to_dict(),
            "mask_rule_chosen_on_this_set": self.rule_chosen_in is not None,
            "mask_rule_chosen_in_mode": self.rule_chosen_in,
            "localization": self.localization.to_dict() if self.localization else None,
            "no_model_floor": self.floor.to_dict() if self.floor else None,
            "iou_accuracy_0.3_interval": {m: asdict(i) for m, i in self.intervals.items()},
            "iou_accuracy_0.3_minus_floor": {m: asdict(i) for m, i in self.above_floor.items()},
            "classification": self.classification.to_dict(),
            "mask_rule_sweep": self.sweep,
            "mask_rule_cross_validated": (self.cross_validated.to_dict()
                                          if self.cross_validated else None),
        }

    def headline(self) -> dict:
        """The few numbers a model card and the README table carry."""
        values = {"images": self.images, "boxes": self.boxes,
                  "mean_roc_auc": self.classification.mean_roc_auc}
        if self.localization:
            mean = self.localization.mean
            for t in (0.1, 0.3, 0.5, 0.7):
                values[f"iou_accuracy_{t:g}"] = mean.accuracy_pixel.get(t)
                values[f"box_iou_accuracy_{t:g}"] = mean.accuracy_box.get(t)
                if self.floor:  # the floor is box-shaped: the same in box mode for box truth
                    values[f"no_model_floor_iou_accuracy_{t:g}"] = (
                        self.floor.mean.accuracy_pixel.get(t))
            values.update(mtiou=mean.mtiou_pixel, box_mtiou=mean.mtiou_box,
                          pointing=mean.pointing, poi_precision=mean.poi_precision,
                          poi_coverage=mean.poi_coverage)
        if self.cross_validated:
            for mode, prefix in HEADLINE_PREFIX.items():
                values[f"cv_{prefix}iou_accuracy_0.3"] = (
                    self.cross_validated.localization.mean.accuracy(mode)[0.3])
        for mode, prefix in HEADLINE_PREFIX.items():
            if mode in self.intervals:
                interval = self.intervals[mode]
                values[f"{prefix}iou_accuracy_0.3_ci95"] = [interval.low, interval.high]
            if mode in self.above_floor:
                above = self.above_floor[mode]
                values[f"{prefix}iou_accuracy_0.3_minus_floor"] = above.estimate
                values[f"{prefix}iou_accuracy_0.3_minus_floor_ci95"] = [above.low, above.high]
        return {k: (None if v is None or (isinstance(v, float) and np.isnan(v)) else v)
                for k, v in values.items()}

    def summary_line(self) -> str:
        head = self.headline()
        parts = [f"{self.model} on {self.dataset}: {self.images} images, {self.boxes} regions"]
        if head.get("iou_accuracy_0.3") is not None:
            parts.append(f"IoU-accuracy@0.3 {head['iou_accuracy_0.3']:.3f}")
            parts.append(f"mTIoU {head['mtiou']:.3f}")
        if head.get("mean_roc_auc") is not None:
            parts.append(f"mean ROC-AUC {head['mean_roc_auc']:.3f}")
        return ", ".join(parts)

    def to_markdown(self) -> str:
        lines = [f"# {self.model} on {self.dataset}", "",
                 f"{self.images} images, {self.boxes} ground-truth regions; mask rule "
                 f"`{self.mask_rule}`"
                 + (f" (chosen on this set: the sweep's best {self.rule_chosen_in}-mode "
                    "IoU-accuracy at 0.3)" if self.rule_chosen_in else "")
                 + "; each region scored on its own finding's heatmap.", ""]
        if self.localization:
            lines += ["## IoU-accuracy, pixel mode", "", self.localization.to_markdown("pixel"),
                      "", "## IoU-accuracy, box mode", "", self.localization.to_markdown("box"), ""]
            mean = self.localization.mean
            lines += [f"mTIoU {mean.mtiou_pixel:.3f} (pixel), {mean.mtiou_box:.3f} (box); "
                      f"pointing game {mean.pointing:.3f}; IoR/PoI-precision "
                      f"{mean.poi_precision:.3f}; PoI-coverage {mean.poi_coverage:.3f}; "
                      f"NCC {mean.ncc:.3f}", ""]
        if self.cross_validated:
            cv = self.cross_validated
            figures = ", ".join(f"{mode} {cv.localization.mean.accuracy(mode)[0.3]:.3f}"
                                for mode in MODES)
            lines += [f"Mean IoU-accuracy at T(IoU)=0.3 with the rule chosen on other patients "
                      f"({cv.folds} patient folds, each scored under the best {cv.mode}-mode "
                      f"rule of the others: {', '.join(f'`{r}`' for r in cv.rules)}): "
                      f"{figures}.", ""]
        for mode, interval in self.intervals.items():
            lines += [f"Mean IoU-accuracy at T(IoU)=0.3, {mode} mode: {interval.estimate:.3f}, "
                      f"{interval.level:.0%} bootstrap interval {interval.low:.3f}-"
                      f"{interval.high:.3f} (regions resampled within each finding).", ""]
        for mode, above in self.above_floor.items():
            lines += [f"Above the no-model floor at T(IoU)=0.3, {mode} mode: "
                      f"{above.as_difference()}, paired bootstrap interval (the same regions "
                      "drawn for both).", ""]
        if self.floor:
            lines += ["## No-model floor (each finding's mean box, for every image)", "",
                      self.floor.to_markdown("pixel"), ""]
        lines += ["## Classification", "",
                  "Images labelled for a finding (unlabelled ones are not negatives); nan: one",
                  "class only.", "",
                  "| Finding | ROC-AUC | PR-AUC | positives | negatives |", "|---|---|---|---|---|"]
        for name, values in self.classification.findings.items():
            lines.append(f"| {name} | {values.roc_auc:.3f} | {values.pr_auc:.3f} | "
                         f"{values.n_positive} | {values.n_negative} |")
        lines.append(f"| Mean | {self.classification.mean_roc_auc:.3f} | "
                     f"{self.classification.mean_pr_auc:.3f} | | |")
        if self.sweep:
            lines += ["", "## Mask rules on this set (IoU-accuracy)", "",
                      "| Rule | " + " | ".join(f"{mode} T=0.3 | {mode} T=0.5 | {mode} mTIoU"
                                                for mode in MODES) + " |",
                      "|---" * (1 + 3 * len(MODES)) + "|"]
            lines += [f"| `{s['rule']}` | " + " | ".join(
                f"{s[f'{p}iou_accuracy_0.3']:.3f} | {s[f'{p}iou_accuracy_0.5']:.3f} | "
                f"{s[f'{p}mtiou']:.3f}" for p in HEADLINE_PREFIX.values()) + " |"
                for s in self.sweep]
        return "\n".join(lines) + "\n"


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
    _check_mode(choose_in)
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

    swept = [_sweep_row(r, s) for r, s in zip(rules[1:], scores[1:], strict=True) if s]
    chosen = 0
    if choose_rule:
        if not swept:
            raise CXRWeakLocError(f"{root}: no ground-truth regions to choose a mask rule on")
        chosen = 1 + swept.index(max(swept, key=lambda row: _sweep_key(row, choose_in)))
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


def _sweep_row(rule: MaskRule, scores: list[tuple[str, LocalizationScore]]) -> dict:
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
        rows = [_sweep_row(rule, [s for s, f in zip(rule_scores, fold_of, strict=True)
                                  if f != fold])
                for rule, rule_scores in zip(rules, scores, strict=True)]
        best = max(range(len(rules)), key=lambda r: _sweep_key(rows[r], mode))
        chosen.append(str(rules[best]))
        held_out += [s for s, f in zip(scores[best], fold_of, strict=True) if f == fold]
    return CrossValidatedChoice(len(used), mode, chosen, LocalizationReport.from_scores(held_out))


def best_sweep_rule(report: EvaluationReport, mode: str = CHOOSE_MODE) -> MaskRule:
    """The swept rule with the best mean IoU-accuracy at 0.3 in ``mode`` (mTIoU breaks ties)."""
    if not report.sweep:
        raise CXRWeakLocError("no mask-rule sweep in this report")
    best = max(report.sweep, key=lambda row: _sweep_key(row, mode))
    return MaskRule(best["name"], best["value"])


def _sweep_key(row: dict, mode: str) -> tuple[float, float]:
    """Best rule first: IoU-accuracy at 0.3, then mTIoU, both in ``mode``."""
    prefix = HEADLINE_PREFIX[mode]
    return row[f"{prefix}iou_accuracy_0.3"], row[f"{prefix}mtiou"]


def write_report(report: EvaluationReport, out_dir: Path) -> None:
    """``metrics.json``, ``metrics.md``, ``per_image.csv`` and ``iou_accuracy.png``."""
    ensure_folder(out_dir)
    atomic_write_text(out_dir / "metrics.json", json.dumps(report.to_dict(), indent=2) + "\n")
    atomic_write_text(out_dir / "metrics.md", report.to_markdown())
    temporary = partial_path(out_dir / "per_image.csv")
    with temporary.open("w", newline="") as handle:
        fields = list(report.rows[0]) if report.rows else ["image", "finding"]
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(report.rows)
    temporary.replace(out_dir / "per_image.csv")
    if report.localization:
        _plot(report, out_dir / "iou_accuracy.png")


def _plot(report: EvaluationReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5), dpi=110)
    thresholds = list(report.localization.thresholds)
    for name, summary in report.localization.findings.items():
        axis.plot(thresholds, [summary.accuracy_pixel[t] for t in thresholds], marker=".",
                  linewidth=1, label=f"{name} ({summary.count})")
    mean = report.localization.mean
    axis.plot(thresholds, [mean.accuracy_pixel[t] for t in thresholds], color="black",
              linewidth=2.5, label="Mean")
    if report.floor:
        axis.plot(thresholds, [report.floor.mean.accuracy_pixel[t] for t in thresholds],
                  color="grey", linestyle="--", linewidth=2, label="No-model floor")
    axis.set(xlabel="T(IoU)", ylabel="IoU-accuracy", ylim=(0, 1),
             title=f"{report.model} on {report.dataset} ({report.boxes} regions)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="upper right", ncol=2)
    figure.tight_layout()
    temporary = partial_path(path)
    figure.savefig(temporary)
    plt.close(figure)
    temporary.replace(path)


@dataclass(frozen=True)
class Comparison:
    """Two evaluations of the same regions: ``first`` minus ``second`` at one T(IoU)."""

    first: str
    second: str
    regions: int
    threshold: float
    mode: str
    difference: Interval

    @property
    def verdict(self) -> str:
        """Which model is better, or that the interval cannot tell them apart."""
        if self.difference.low > 0:
            return f"{self.first} is better"
        if self.difference.high < 0:
            return f"{self.second} is better"
        return "no clear difference"

    def summary_line(self) -> str:
        return (f"{self.first} minus {self.second}: mean {self.mode} IoU-accuracy@"
                f"{self.threshold:g} {self.difference.as_difference()} (paired "
                f"{self.difference.level:.0%} CI) over {self.regions} regions: {self.verdict}")


def compare_evaluations(first: Path | Sequence[Path], second: Path | Sequence[Path],
                        threshold: float = 0.3, mode: str = "pixel") -> Comparison:
    """Compare two ``evaluate`` output folders region by region (paired bootstrap).

    Both must have scored the same ground-truth regions (same images, same boxes): the
    ``per_image.csv`` rows are matched on image and finding, in order. The interval is
    :func:`~CXRWeakLocLib.metrics.paired_iou_accuracy_difference` of their IoUs in
    ``mode`` (``pixel`` or ``box``, see :data:`MODES`). A side given as several folders
    (runs of one recipe, e.g. training seeds) is scored by its mean over the runs.
    """
    _check_mode(mode)
    column = f"iou_{mode}"
    sides = [_runs_side(side, column) for side in (first, second)]
    (name_a, keys, ious_a), (name_b, keys_b, ious_b) = sides
    if keys != keys_b:
        raise CXRWeakLocError(
            f"{first} and {second} did not score the same regions ({len(keys)} vs "
            f"{len(keys_b)}, {len(set(keys) ^ set(keys_b))} not in both): evaluate both "
            "models on the same dataset and images list")
    pairs = [(finding, ious_a[index], ious_b[index])
             for index, (_, finding, _) in enumerate(keys)]
    if not pairs:
        raise CXRWeakLocError(f"{first}: no scored regions to compare")
    return Comparison(name_a, name_b, len(pairs), threshold, mode,
                      paired_iou_accuracy_difference(pairs, threshold))


def _runs_side(folders: Path | Sequence[Path], column: str
               ) -> tuple[str, list[tuple[str, str, int]], list[list[float]]]:
    """One side of a comparison: its name, region keys, and each region's IoUs (one per run)."""
    folders = [Path(folders)] if isinstance(folders, (str, Path)) else [Path(f) for f in folders]
    if not folders:
        raise CXRWeakLocError("compare: no evaluate folder given")
    keys: list[tuple[str, str, int]] = []
    ious: list[list[float]] = []
    for run, folder in enumerate(folders):
        name, rows = _evaluation_rows(folder)
        by_key = dict(zip(_region_keys(rows), rows, strict=True))
        if run == 0:
            first_name, keys, ious = name, list(by_key), [[] for _ in by_key]
        elif set(by_key) != set(keys):
            raise CXRWeakLocError(f"{folders[0]} and {folder} did not score the same regions: "
                                  "runs of one side must be evaluated on the same images")
        for values, key in zip(ious, keys, strict=True):
            values.append(float(by_key[key][column]))
    label = first_name if len(folders) == 1 else f"{first_name} ({len(folders)} runs)"
    return label, keys, ious


def _evaluation_rows(folder: Path) -> tuple[str, list[dict]]:
    """The model name and ``per_image.csv`` rows of an ``evaluate`` output folder."""
    table, summary = Path(folder) / "per_image.csv", Path(folder) / "metrics.json"
    if not table.is_file() or not summary.is_file():
        raise CXRWeakLocError(f"{folder}: not an evaluate output folder (no per_image.csv "
                              "and metrics.json)")
    try:
        name = json.loads(summary.read_text())["model"]
        with table.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        for row in rows:
            for mode in MODES:
                float(row[f"iou_{mode}"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise CXRWeakLocError(f"{folder}: unreadable evaluation ({error})") from None
    return name, rows


def _region_keys(rows: list[dict]) -> list[tuple[str, str, int]]:
    """``(image, finding, k)``: the k-th region of that finding on that image."""
    seen: dict[tuple[str, str], int] = {}
    keys = []
    for row in rows:
        pair = (row["image"], row["finding"])
        seen[pair] = seen.get(pair, 0) + 1
        keys.append((*pair, seen[pair]))
    return keys
