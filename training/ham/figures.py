"""CAM vs HAM maps on the same dev images, one PNG per boxed finding.

Usage (from the repository root, once both models are in Resources/Models)::

    .venv/bin/python -m training.ham.figures [--per-finding 4]

Writes ``results/figures/ham_vs_cam_<Finding>.png``: for each of the first
``--per-finding`` dev images with a box of that finding (list order), the radiograph
with the expert box (dashed), then each model's heatmap of that finding with its
mask outline (each model's own card rule), as ``localize`` exports them.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
from matplotlib.patches import Rectangle

from CXRWeakLocLib.core.findings import BOXED_FINDINGS
from CXRWeakLocLib.core.radiograph import read_radiograph
from CXRWeakLocLib.data.records import ImageRecord
from CXRWeakLocLib.data.sources import read_dataset
from CXRWeakLocLib.localize import Localizer
from CXRWeakLocLib.metrics import annotation_mask, score_localization

logger = logging.getLogger("ham.figures")

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data" / "nih-mini"


def examples(records: list[ImageRecord], finding: str, count: int) -> list[ImageRecord]:
    """The first ``count`` records with a box of ``finding``."""
    return [r for r in records if any(a.finding == finding for a in r.annotations)][:count]


def draw_finding(finding: str, records: list[ImageRecord], models: dict[str, Localizer],
                 path: Path) -> None:
    columns = 1 + len(models)
    figure, axes = plt.subplots(len(records), columns, figsize=(3.1 * columns, 3.2 * len(records)),
                                dpi=90, squeeze=False)
    for row, record in zip(axes, records, strict=True):
        radiograph = read_radiograph(record.image)
        annotation = next(a for a in record.annotations if a.finding == finding)
        truth = annotation_mask(annotation, radiograph.size)
        row[0].imshow(radiograph.pixels, cmap="gray")
        row[0].set_title(record.id, fontsize=8)
        for axis, (name, localizer) in zip(row[1:], models.items(), strict=True):
            [result] = localizer.localize([radiograph], findings=[finding])
            found = result.get(finding)
            score = score_localization(found.heatmap, truth, localizer.mask_rule)
            axis.imshow(radiograph.pixels, cmap="gray")
            axis.imshow(found.heatmap, cmap="jet", alpha=0.4, vmin=0, vmax=1)
            axis.contour(found.mask, levels=[0.5], colors="white", linewidths=1)
            axis.set_title(f"{name}: p={found.probability:.2f}, IoU={score.iou_pixel:.2f}",
                           fontsize=8)
        for axis in row:
            x, y, w, h = annotation.box
            axis.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor="lime",
                                     linestyle="--", linewidth=1.5))
            axis.set_axis_off()
    figure.suptitle(f"{finding}: CAM vs HAM (dev boxes, dashed)", fontsize=11)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=REPO / "results" / "figures")
    parser.add_argument("--per-finding", type=int, default=4)
    parser.add_argument("--models", nargs="+", default=["cam", "ham"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    matplotlib.use("Agg")
    records = read_dataset("chestxray14", args.data, args.data / "dev_bbox_list.txt",
                           annotations=True)
    models = {Path(name).name: Localizer.from_name(name, "cpu") for name in args.models}
    args.out.mkdir(parents=True, exist_ok=True)
    for finding in BOXED_FINDINGS:
        path = args.out / f"ham_vs_cam_{finding}.png"
        draw_finding(finding, examples(records, finding, args.per_finding), models, path)
        logger.info("wrote %s", path)


if __name__ == "__main__":
    main()
