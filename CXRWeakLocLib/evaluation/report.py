"""What ``evaluate`` measured, and its files: ``metrics.json``, ``metrics.md``,
``per_image.csv`` and ``iou_accuracy.png``."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import CXRWeakLocError
from ..core.files import atomic_write_text, ensure_folder, partial_path
from ..core.masks import MaskRule
from ..metrics import MODES, ClassificationReport, Interval, LocalizationReport

__all__ = ["HEADLINE_PREFIX", "CrossValidatedChoice", "EvaluationReport", "check_mode",
           "localization_table", "write_report"]

#: How each mode's figures are named in :meth:`EvaluationReport.headline` (and cards).
HEADLINE_PREFIX = {"pixel": "", "box": "box_"}


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise CXRWeakLocError(f"unknown mode {mode!r} (known: {', '.join(MODES)})")


def localization_table(report: LocalizationReport, mode: str = "pixel") -> str:
    """Markdown table findings x T(IoU) of IoU-accuracy in ``mode``, with a Mean row and
    counts."""
    header = ["Finding", *(f"T(IoU)={t:g}" for t in report.thresholds), "n"]
    rows = [*report.findings.items(), ("Mean", report.mean)]
    lines = [
        "| " + " | ".join(header) + " |",
        "|---|" + "---:|" * (len(report.thresholds) + 1),
    ]
    for name, summary in rows:
        accuracy = summary.accuracy(mode)
        cells = [f"{accuracy[t]:.2f}" for t in report.thresholds]
        lines.append("| " + " | ".join([name, *cells, str(summary.count)]) + " |")
    return "\n".join(lines) + "\n"


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
            for mode in MODES:
                lines += [f"## IoU-accuracy, {mode} mode", "",
                          localization_table(self.localization, mode), ""]
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
                      localization_table(self.floor, "pixel"), ""]
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
