"""Print the README's results table from the shipped model cards (measured, not typed).

Usage: python -m release.table [--write README.md]
Rows: every shipped model with ``metrics["dev_bbox"]``, the no-model floor, and the
papers' published numbers for context (their data sizes differ from ours).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from CXRWeakLocLib.core.card import read_card, shipped_models
from CXRWeakLocLib.core.masks import MaskRule
from CXRWeakLocLib.evaluation import HEADLINE_PREFIX
from CXRWeakLocLib.metrics import Interval

DM_RESULTS = Path(__file__).resolve().parent / "dm" / "RESULTS.md"
#: Published IoU-accuracy at T(IoU) 0.3 / 0.5 / 0.7 on ChestX-ray14 (docs/methods.md).
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


def _difference_cell(value, interval) -> str:
    """``+0.045 (+0.016 to +0.073)``: a paired difference and its 95% interval."""
    if value is None or not interval:
        return "-"
    return Interval(value, interval[0], interval[1], 0.95).as_difference()


def _mode_cells(dev: dict, prefix: str) -> list[str]:
    """T=0.1, T=0.3 (CI), T=0.3 cross-validated, minus floor (paired CI), T=0.5, T=0.7,
    mTIoU in one mode."""
    key = f"{prefix}iou_accuracy"
    return [_cell(dev.get(f"{key}_0.1")),
            _cell_with_interval(dev.get(f"{key}_0.3"), dev.get(f"{key}_0.3_ci95")),
            _cell(dev.get(f"cv_{key}_0.3")),
            _difference_cell(dev.get(f"{key}_0.3_minus_floor"),
                             dev.get(f"{key}_0.3_minus_floor_ci95")),
            _cell(dev.get(f"{key}_0.5")), _cell(dev.get(f"{key}_0.7")),
            _cell(dev.get(f"{prefix}mtiou"))]


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def table() -> list[str]:
    """The two tables' markdown lines: box mode (the papers' protocol), then pixel mode."""
    mode_header = ["T=0.1", "T=0.3 (95% CI)", "T=0.3, rule chosen on other patients",
                   "minus floor at 0.3 (paired 95% CI)", "T=0.5", "T=0.7", "mTIoU"]
    box = ["**Box mode** (the predicted mask's best-matching component box vs the expert box: "
           "the papers' T(IoU) protocol)", "",
           _row(["Model (mask rule)", "Trained on", *mode_header]),
           _row(["---", "---"] + ["---:"] * len(mode_header))]
    extra_header = ["pointing", "PoI precision", "PoI coverage", "mean ROC-AUC"]
    pixel = ["**Pixel mode** (the predicted mask itself vs the box), and the other measures", "",
             _row(["Model", *mode_header, *extra_header]),
             _row(["---"] + ["---:"] * (len(mode_header) + len(extra_header)))]
    floor: dict = {}
    for folder in shipped_models():
        card = read_card(folder)
        dev = card.metrics.get("dev_bbox")
        if not dev:
            continue
        if dev.get("no_model_floor_iou_accuracy_0.3") is not None:  # the same dev boxes
            floor = {t: dev.get(f"no_model_floor_iou_accuracy_{t}") for t in ("0.1", "0.3",
                                                                              "0.5", "0.7")}
        rule = dev.get("mask_rule")
        if isinstance(rule, dict):  # a card may keep the rule as its dict
            rule = str(MaskRule(**rule))
        box.append(_row([f"`{card.name}` ({rule})", trained_on(card.training),
                         *_mode_cells(dev, HEADLINE_PREFIX["box"])]))
        pixel.append(_row([f"`{card.name}`", *_mode_cells(dev, HEADLINE_PREFIX["pixel"]),
                           *(_cell(dev.get(k)) for k in ("pointing", "poi_precision",
                                                          "poi_coverage", "mean_roc_auc"))]))
    if floor:
        floor_cells = [_cell(floor["0.1"]), _cell(floor["0.3"]), "-", "0", _cell(floor["0.5"]),
                       _cell(floor["0.7"]), "-"]
        box.append(_row(["no-model floor (mean dev box per finding)", "-", *floor_cells]))
        pixel.append(_row(["no-model floor", *floor_cells, "-", "-", "-", "-"]))
    for name, data, (t3, t5, t7) in PUBLISHED:
        box.append(_row([name, data, "-", f"{t3:.2f}", "-", "-", f"{t5:.2f}", f"{t7:.2f}",
                         "-"]))
    return [*box, "", *pixel, *_comparison_table()]


def _comparison_table() -> list[str]:
    """Model minus baseline on the same boxes (``release.ship --against``), if recorded."""
    pattern = re.compile(r"^iou_accuracy_0\.3_minus_(?!floor)(\w+)$")
    lines = []
    for folder in shipped_models():
        card = read_card(folder)
        dev = card.metrics.get("dev_bbox") or {}
        for key in sorted(dev):
            match = None if key.endswith("_ci95") else pattern.match(key)
            if match:
                lines.append(_row([f"`{card.name}` minus `{match.group(1)}`",
                                   _difference_cell(dev[key], dev.get(f"{key}_ci95")),
                                   _difference_cell(dev.get(f"box_{key}"),
                                                    dev.get(f"box_{key}_ci95"))]))
    if not lines:
        return []
    return ["", "**Against each other** (IoU-accuracy at 0.3, the same dev boxes drawn for both: "
            "an interval above 0 means the first model is better)", "",
            _row(["Comparison", "pixel mode (paired 95% CI)", "box mode (paired 95% CI)"]),
            _row(["---", "---:", "---:"]), *lines]


def dm_ablation_table() -> list[str]:
    """The box-mode table of ``training/dm/RESULTS.md`` (written by ``dm/recipe.py ablation``)."""
    if not DM_RESULTS.is_file():
        return []
    section = DM_RESULTS.read_text().split("## Box mode", 1)
    if len(section) < 2:
        return []
    body = section[1].split("\n## ", 1)[0].splitlines()[1:]  # drop the heading's remainder
    return [line for line in body if line.startswith("|")]


def _replace_block(text: str, marker: str, lines: list[str]) -> str:
    """``text`` with the lines between ``<!-- marker -->`` and ``<!-- /marker -->`` replaced."""
    pattern = re.compile(rf"(<!-- {marker} -->\n).*?(<!-- /{marker} -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"no <!-- {marker} --> block to replace")
    return pattern.sub(lambda m: m.group(1) + "\n".join(lines) + "\n" + m.group(2), text)


def main() -> None:
    parser = argparse.ArgumentParser(description="README results tables from model cards")
    parser.add_argument("--write", type=Path, help="replace the tables between the markers")
    args = parser.parse_args()
    if args.write is None:
        print("\n".join([*table(), "", *dm_ablation_table()]))
        return
    readme = _replace_block(args.write.read_text(), "results-table", table())
    args.write.write_text(_replace_block(readme, "dm-ablation", dm_ablation_table()))


if __name__ == "__main__":
    main()
