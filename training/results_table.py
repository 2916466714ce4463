"""Print the README's results table from the shipped model cards (measured, not typed).

Usage: python training/results_table.py [--write README.md]
Rows: every shipped model with ``metrics["dev_bbox"]``, the no-model floor, and the
papers' published numbers for context (their data sizes differ from ours).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from CXRWeakLocLib.checkpoint import read_card, shipped_models
from CXRWeakLocLib.masks import MaskRule

#: Published IoU-accuracy at T(IoU) 0.3 / 0.5 / 0.7 on ChestX-ray14 (METHODS.md).
PUBLISHED = [
    ("ResNet-50 CAM (disease-mask paper, Table 1)", "~86,000 images, 984 boxes",
     (0.31, 0.17, 0.06)),
    ("+ alignment (disease-mask paper)", "~86,000 images, 984 boxes", (0.37, 0.21, 0.10)),
    ("+ alignment + disease masks (disease-mask paper)", "~86,000 images, 984 boxes",
     (0.47, 0.27, 0.13)),
]


def _cell(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def _cell_with_interval(value, interval) -> str:
    """``0.154 (0.128-0.181)``: the figure and its 95% bootstrap interval when recorded."""
    if value is None or not interval:
        return _cell(value)
    return f"{value:.3f} ({interval[0]:.3f}-{interval[1]:.3f})"


def _stage_label(stage: dict) -> str:
    """``nih-mini, 931 images``: where a training stage's data came from and how much."""
    where = Path(stage.get("root") or "").name or stage.get("dataset") or "?"
    return f"{where}, {stage.get('train_images', '?')} images"


def trained_on(training: dict) -> str:
    """The card's training stages, pretraining first, repeated stages once."""
    labels: list[str] = []
    for stage in [*training.get("pretraining", []), training]:
        label = _stage_label(stage)
        if not labels or labels[-1] != label:
            labels.append(label)
    return " -> ".join(labels)


def table() -> list[str]:
    """The table's markdown lines."""
    lines = ["| Model | Trained on | T=0.1 | T=0.3 (95% CI) | T=0.5 | T=0.7 | box mode T=0.3 | "
             "mTIoU | pointing | PoI precision | PoI coverage | mean ROC-AUC |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    floor = None
    for folder in shipped_models():
        card = read_card(folder)
        dev = card.metrics.get("dev_bbox")
        if not dev:
            continue
        floor = dev.get("no_model_floor_iou_accuracy_0.3", floor)
        rule = dev.get("mask_rule")
        if isinstance(rule, dict):  # a card may keep the rule as its dict
            rule = str(MaskRule(**rule))
        at_03 = _cell_with_interval(dev.get('iou_accuracy_0.3'), dev.get('iou_accuracy_0.3_ci95'))
        lines.append(f"| `{card.name}` ({rule}) | {trained_on(card.training)} | "
              f"{_cell(dev.get('iou_accuracy_0.1'))} | {at_03} | "
              f"{_cell(dev.get('iou_accuracy_0.5'))} | {_cell(dev.get('iou_accuracy_0.7'))} | "
              f"{_cell(dev.get('box_iou_accuracy_0_3'))} | "
              f"{_cell(dev.get('mtiou'))} | {_cell(dev.get('pointing'))} | "
              f"{_cell(dev.get('poi_precision'))} | {_cell(dev.get('poi_coverage'))} | "
              f"{_cell(dev.get('mean_roc_auc'))} |")
    if floor is not None:
        lines.append(f"| no-model floor (mean dev box per finding) | - | - | {floor:.3f} "
                     f"| - | - | {floor:.3f} | - | - | - | - | - |")
    for name, data, (t3, t5, t7) in PUBLISHED:
        lines.append(f"| {name} | {data} | - | {t3:.2f} | {t5:.2f} | {t7:.2f} | - | - | - | - "
                     "| - | - |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description="README results table from model cards")
    parser.add_argument("--write", type=Path, help="replace the table between the markers")
    args = parser.parse_args()
    text = "\n".join(table())
    if args.write is None:
        print(text)
        return
    readme = args.write.read_text()
    pattern = re.compile(r"(<!-- results-table -->\n).*?(<!-- /results-table -->)", re.S)
    args.write.write_text(pattern.sub(lambda m: m.group(1) + text + "\n" + m.group(2), readme))


if __name__ == "__main__":
    main()
