"""NIH ChestX-ray14 in NIH's own layout.

``root/`` holds ``Data_Entry_2017.csv`` (``Finding Labels`` ``|``-separated),
``BBox_List_2017.csv`` (expert boxes ``[x, y, w, h]`` in the pixels of the images as
stored; NIH writes ``Infiltrate`` where the labels say ``Infiltration``), split lists
(one image name a line) and ``images/``.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from ..core.errors import ConfigError
from ..core.findings import CHESTXRAY14, finding_by_name
from .records import Annotation, ImageRecord

__all__ = ["read_chestxray14", "read_image_list"]

logger = logging.getLogger(__name__)

LABELS_FILE = "Data_Entry_2017.csv"
BOXES_FILE = "BBox_List_2017.csv"


def read_image_list(path: Path) -> list[str]:
    """Image names of a split list (blank lines and ``#`` comments skipped)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: image list not found")
    return [
        line.strip() for line in path.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def read_chestxray14(
    root: Path,
    images_list: Path | None = None,
    with_boxes: bool = False,
    images_dir: str = "images",
) -> list[ImageRecord]:
    """Records of ChestX-ray14 images with their 14 image-level labels.

    Args:
        root: dataset folder in NIH's layout.
        images_list: restrict to the images named in this file (e.g. a split).
        with_boxes: attach the expert boxes (evaluation only; never for training).
        images_dir: sub-folder of ``root`` holding the PNGs.
    """
    root = Path(root)
    labels_path = root / LABELS_FILE
    if not labels_path.is_file():
        raise ConfigError(f"{root}: no {LABELS_FILE} (not a ChestX-ray14 folder)")
    names = [f.name for f in CHESTXRAY14]
    records: dict[str, ImageRecord] = {}
    with labels_path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            image = row["Image Index"]
            present = {
                finding_by_name(label).name
                for label in row["Finding Labels"].split("|")
                if label and label != "No Finding"
            }
            records[image] = ImageRecord(
                id=image,
                image=root / images_dir / image,
                labels={name: float(name in present) for name in names},
                meta={"patient": row.get("Patient ID", ""), "view": row.get("View Position", "")},
            )
    if images_list is not None:
        wanted = read_image_list(images_list)
        missing = [name for name in wanted if name not in records]
        if missing:
            raise ConfigError(
                f"{images_list}: {len(missing)} images not in {LABELS_FILE} (e.g. {missing[0]})"
            )
        selected = [records[name] for name in wanted]
    else:
        selected = list(records.values())
    if with_boxes:
        _attach_boxes(root / BOXES_FILE, {r.id: r for r in selected})
    logger.info("ChestX-ray14: %d images from %s", len(selected), root)
    return selected


def _attach_boxes(path: Path, records: dict[str, ImageRecord]) -> None:
    if not path.is_file():
        raise ConfigError(f"{path}: box file not found")
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        next(reader)  # header: Image Index, Finding Label, Bbox [x,y,w,h], ...
        for row in reader:
            if not row or row[0] not in records:
                continue
            x, y, w, h = (float(v) for v in row[2:6])
            records[row[0]].annotations.append(
                Annotation(finding=finding_by_name(row[1]).name, box=(x, y, w, h))
            )
