"""TBX11K (tuberculosis) in its COCO-style layout.

``root/imgs/`` holds the images in class folders (``health/``, ``sick/`` non-TB,
``tb/``, ``test/``); ``annotations/json/TBX11K_<split>.json`` is COCO: ``images``
(``file_name`` relative to ``imgs/``), ``categories`` (active, obsolete and
unclassified pulmonary tuberculosis, all of supercategory ``Tuberculosis``) and
``annotations`` with boxes ``[x, y, w, h]`` in image pixels.

Records carry one image-level label, Tuberculosis: 1 for an image with TB boxes or
in ``tb/``, 0 in ``health/`` or ``sick/``, unknown (absent) otherwise. Each box is
an ``Annotation("Tuberculosis", box=...)``; the TB category of each box is kept, in
box order, in ``meta["tb_categories"]``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path, PurePosixPath

from ..core.errors import ConfigError
from .records import Annotation, ImageRecord

__all__ = ["read_tbx11k"]

logger = logging.getLogger(__name__)

FINDING = "Tuberculosis"
_FOLDER_LABELS = {"tb": 1.0, "health": 0.0, "sick": 0.0}


def read_tbx11k(root: Path, json_path: Path | None = None) -> list[ImageRecord]:
    """Records of the images of a TBX11K COCO json (default: the train split's).

    Args:
        root: TBX11K folder (holding ``imgs/``).
        json_path: COCO json; relative paths are taken from ``root``.
    """
    root = Path(root)
    json_path = root / (json_path or Path("annotations/json/TBX11K_train.json"))
    if not json_path.is_file():
        raise ConfigError(f"{json_path}: TBX11K annotation file not found")
    coco = json.loads(json_path.read_text())
    categories = {category["id"]: category["name"] for category in coco["categories"]}
    boxes: dict[int, list[dict]] = {}
    for annotation in coco.get("annotations", []):
        boxes.setdefault(annotation["image_id"], []).append(annotation)

    records = []
    for image in coco["images"]:
        found = boxes.get(image["id"], [])
        folder = PurePosixPath(image["file_name"]).parts[0]
        label = 1.0 if found else _FOLDER_LABELS.get(folder)
        records.append(ImageRecord(
            id=PurePosixPath(image["file_name"]).stem,
            image=root / "imgs" / image["file_name"],
            labels={} if label is None else {FINDING: label},
            annotations=[Annotation(FINDING, box=tuple(map(float, a["bbox"]))) for a in found],
            meta={"size": (image["height"], image["width"]), "folder": folder,
                  "tb_categories": [categories[a["category_id"]] for a in found]},
        ))
    logger.info("%s: %d TBX11K images, %d TB boxes", json_path, len(records),
                sum(len(found) for found in boxes.values()))
    return records
