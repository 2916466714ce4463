"""Markdown rows of RESULTS.md from ``evaluate`` output folders.

Usage: python -m training.gan.results LABEL=EVAL_FOLDER [LABEL=EVAL_FOLDER ...]
Each EVAL_FOLDER holds a ``metrics.json``; missing folders are listed as not run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HEADER = ("| Model | Set | Images | Regions | Mask rule | IoU-acc@0.1 | @0.3 | @0.5 | mTIoU "
          "| Pointing | PoI precision (IoR) | PoI coverage | ROC-AUC |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def _number(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def row(label: str, folder: Path) -> str:
    """One table row of an evaluation folder."""
    path = folder / "metrics.json"
    if not path.is_file():
        return f"| {label} | {folder.name} | not run | | | | | | | | | | |"
    data = json.loads(path.read_text())
    rule = data["mask_rule"]
    loc = (data.get("localization") or {}).get("mean") or {}
    accuracy = loc.get("accuracy_pixel", {})
    auc = data["classification"].get("mean_roc_auc")
    cells = [label, data["dataset"] + f" ({folder.name})", str(data["images"]),
             str(data["boxes"]), f"`{rule['name']}({rule['value']:g})`",
             *(_number(accuracy.get(t)) for t in ("0.1", "0.3", "0.5")),
             _number(loc.get("mtiou_pixel")), _number(loc.get("pointing")),
             _number(loc.get("poi_precision")), _number(loc.get("poi_coverage")),
             _number(auc if isinstance(auc, float) else None)]
    return "| " + " | ".join(cells) + " |"


def main(arguments: list[str]) -> None:
    print(HEADER)
    for argument in arguments:
        label, _, folder = argument.partition("=")
        print(row(label, Path(folder)))


if __name__ == "__main__":
    main(sys.argv[1:])
