"""Which finding's map finds each finding's regions? (class specificity of a model's maps)

Usage: python -m training.map_confusion MODEL [--dataset NAME --root DIR] [--out FILE]
(default set: the synthetic test set of training/gan, runs/gan/synthetic_test)

Every ground-truth region is scored against the map of *every* finding the model
knows, under the card's mask rule: rows are the region's finding, columns the finding
whose map was used, cells the mean pixel IoU-accuracy at 0.3 (and the pointing game).
A model whose maps are specific to their finding has its hits on the diagonal; a
model that marks "whatever is abnormal" has them spread along rows, and a map that
marks nothing of its own finding shows an empty diagonal cell.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from CXRWeakLocLib.checkpoint import load_model
from CXRWeakLocLib.data.sources import read_dataset
from CXRWeakLocLib.evaluation import record_radiograph
from CXRWeakLocLib.localize import Localizer
from CXRWeakLocLib.metrics import annotation_mask, score_localization

THRESHOLD = 0.3


def confusion(model: str, dataset: str, root: Path, limit: int
              ) -> tuple[list[str], list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Region findings, map findings, IoU-hit and pointing means (rows x columns), counts."""
    loaded = load_model(model)
    localizer = Localizer(loaded)
    findings = loaded.card.findings
    records = [r for r in read_dataset(dataset, root, annotations=True) if r.annotations]
    rows = sorted({a.finding for r in records for a in r.annotations} & set(findings),
                  key=findings.index)
    hits = np.zeros((len(rows), len(findings)))
    pointing = np.zeros_like(hits)
    counts = np.zeros(len(rows))
    for record in tqdm(records[:limit] if limit else records, desc="regions", unit="image"):
        radiograph = record_radiograph(record)
        [result] = localizer.localize([radiograph], findings="all")
        for annotation in record.annotations:
            if annotation.finding not in rows:
                continue
            row = rows.index(annotation.finding)
            truth = annotation_mask(annotation, radiograph.pixels.shape)
            counts[row] += 1
            for column, finding in enumerate(findings):
                score = score_localization(result.get(finding).heatmap, truth,
                                           loaded.card.mask_rule)
                hits[row, column] += score.iou_pixel >= THRESHOLD
                pointing[row, column] += score.pointing_hit
    return rows, findings, hits / counts[:, None], pointing / counts[:, None], counts


def markdown(model: str, rows: list[str], columns: list[str], hits: np.ndarray,
             pointing: np.ndarray, counts: np.ndarray) -> str:
    """The two tables, rows = region's finding, columns = map's finding."""
    lines = [f"# Map confusion of {model}", "",
             f"Rows: the region's finding (n regions); columns: the finding whose map was "
             f"scored. Pixel IoU-accuracy at {THRESHOLD} / pointing game.", "",
             "| region \\ map | n | " + " | ".join(columns) + " |",
             "|---|---:|" + "---:|" * len(columns)]
    for index, row in enumerate(rows):
        cells = [f"{'**' if columns[c] == row else ''}{hits[index, c]:.2f}/"
                 f"{pointing[index, c]:.2f}{'**' if columns[c] == row else ''}"
                 for c in range(len(columns))]
        lines.append(f"| {row} | {int(counts[index])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--root", type=Path, default=Path("runs/gan/synthetic_test"))
    parser.add_argument("--limit", type=int, default=0, help="first N images (0: all)")
    parser.add_argument("--out", type=Path, help="write the markdown here too")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    text = markdown(args.model, *confusion(args.model, args.dataset, args.root, args.limit))
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
