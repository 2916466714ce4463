"""CheXpert (Stanford) label tables and CheXlocalize expert segmentations.

``root/`` is the CheXpert folder holding ``train.csv``, ``valid.csv``, ``train/`` and
``valid/``. The CSVs name images with the dataset folder as prefix
(``CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg``); that prefix
is dropped unless ``root`` is its parent, so both layouts resolve.

Label columns map to the engine's vocabulary through :func:`finding_by_name`:
Cardiomegaly, Edema, Consolidation, Pneumonia, Atelectasis and Pneumothorax by
name, ``Pleural Effusion`` -> Effusion, ``Pleural Other`` -> Pleural_Thickening and
``Lung Lesion`` -> Mass (CheXpert's lesion covers masses and nodules; Mass is the
closer ChestX-ray14 class, and Nodule stays unknown). ``No Finding``, ``Enlarged
Cardiomediastinum``, ``Lung Opacity``, ``Fracture`` and ``Support Devices`` have no
vocabulary entry and are skipped. Blank cells are unknown (NaN); uncertain cells
(-1) follow the ``uncertainty`` policy.

CheXlocalize (``gt_segmentations_val.json``) maps an image id
(``patient64541_study1_view1_frontal``) to ``{finding: COCO RLE}``; the ids are
those :func:`read_chexpert` gives its records.
"""

from __future__ import annotations

import json
import logging
import math
from csv import DictReader
from pathlib import Path, PurePosixPath

import numpy as np

from ..core.errors import ConfigError
from ..core.findings import UnknownFindingError, finding_by_name
from .records import Annotation, ImageRecord

__all__ = [
    "CHEXLOCALIZE_FILE",
    "UNCERTAINTY_POLICIES",
    "attach_annotations",
    "decode_rle",
    "read_chexlocalize",
    "read_chexpert",
    "read_chexpert_with_localize",
]

logger = logging.getLogger(__name__)

#: How an uncertain label (-1) is read: as present, as absent, or as unknown (NaN).
UNCERTAINTY_POLICIES = {"ones": 1.0, "zeros": 0.0, "ignore": math.nan}
_DATASET_PREFIX = "chexpert-v1.0"


def _vocabulary_name(column: str) -> str | None:
    """The engine's finding name of a CheXpert column, or None when it has none."""
    try:
        return finding_by_name(column).name
    except UnknownFindingError:
        return None


def _label_value(cell: str, uncertain: float) -> float:
    cell = cell.strip()
    if not cell:
        return math.nan
    value = float(cell)
    return uncertain if value == -1.0 else value


def read_chexpert(
    root: Path,
    csv: str = "valid.csv",
    frontal_only: bool = True,
    uncertainty: str = "ones",
) -> list[ImageRecord]:
    """Records of the images listed in ``root/csv`` with their CheXpert labels.

    Args:
        root: CheXpert folder (or its parent).
        csv: label table, ``valid.csv`` or ``train.csv``.
        frontal_only: keep frontal views only (lateral views dropped).
        uncertainty: policy for uncertain (-1) labels, one of
            :data:`UNCERTAINTY_POLICIES`.
    """
    if uncertainty not in UNCERTAINTY_POLICIES:
        raise ConfigError(
            f"unknown uncertainty policy {uncertainty!r} "
            f"(known: {', '.join(UNCERTAINTY_POLICIES)})"
        )
    root = Path(root)
    table = root / csv
    if not table.is_file():
        raise ConfigError(f"{root}: no {csv} (not a CheXpert folder)")
    uncertain = UNCERTAINTY_POLICIES[uncertainty]
    records = []
    with table.open(newline="") as handle:
        reader = DictReader(handle)
        columns = {
            column: name for column in reader.fieldnames or []
            if (name := _vocabulary_name(column)) is not None
        }
        for row in reader:
            if frontal_only and row["Frontal/Lateral"] != "Frontal":
                continue
            parts = _relative_parts(root, row["Path"])
            records.append(ImageRecord(
                id=_image_id(parts),
                image=root.joinpath(*parts),
                labels={name: _label_value(row[column], uncertain)
                        for column, name in columns.items()},
                meta={"patient": parts[-3], "view": row["AP/PA"], "sex": row["Sex"],
                      "age": row["Age"]},
            ))
    logger.info("%s: %d CheXpert images", table, len(records))
    return records


def _relative_parts(root: Path, path: str) -> tuple[str, ...]:
    """Path parts below ``root``: the dataset-folder prefix kept only if ``root`` holds it."""
    parts = PurePosixPath(path).parts
    if parts[0].lower().startswith(_DATASET_PREFIX) and not (root / parts[0]).is_dir():
        return parts[1:]
    return parts


def _image_id(parts: tuple[str, ...]) -> str:
    """CheXlocalize's id of an image: ``patient_study_view`` (no suffix)."""
    patient, study, view = parts[-3:]
    return f"{patient}_{study}_{PurePosixPath(view).stem}"


def decode_rle(rle: dict) -> np.ndarray:
    """Boolean (rows, columns) mask of a COCO RLE, compressed string or list of counts.

    COCO runs alternate background / foreground, start with background, and walk
    the image column by column (Fortran order).
    """
    rows, columns = rle["size"]
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = _rle_counts(counts)
    if sum(counts) != rows * columns:
        raise ValueError(f"RLE covers {sum(counts)} pixels, size {rows}x{columns} needs "
                         f"{rows * columns}")
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    return flat.reshape((columns, rows)).T


def _rle_counts(text: str) -> list[int]:
    """Run lengths of a compressed COCO RLE string (pycocotools' ``rleFrString``).

    Each number is 5-bit groups, least significant first, in characters offset by 48
    (bit 0x20: more groups follow; bit 0x10 of the last group: negative); from the
    fourth run on a number is the difference to the run two before.
    """
    counts: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            group = ord(text[position]) - 48
            value |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            position += 1
            shift += 5
            if not more and group & 0x10:
                value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def read_chexlocalize(json_path: Path) -> dict[str, list[Annotation]]:
    """Expert masks of CheXlocalize by image id, for the findings in the vocabulary.

    Empty masks (the finding is absent on that image) give no annotation.
    """
    json_path = Path(json_path)
    if not json_path.is_file():
        raise ConfigError(f"{json_path}: CheXlocalize segmentation file not found")
    annotations: dict[str, list[Annotation]] = {}
    for image_id, by_finding in json.loads(json_path.read_text()).items():
        found = []
        for label, rle in by_finding.items():
            name = _vocabulary_name(label)
            if name is None:
                continue
            mask = decode_rle(rle)
            if mask.any():
                found.append(Annotation(finding=name, mask=mask))
        annotations[image_id] = found
    return annotations


def attach_annotations(
    records: list[ImageRecord], annotations: dict[str, list[Annotation]]
) -> list[ImageRecord]:
    """Add ``annotations`` to the records with the same id (in place; returns ``records``).

    Ids with annotations but no record are logged, not fatal (a frontal-only list
    has no lateral images).
    """
    by_id = {record.id: record for record in records}
    unmatched = [image_id for image_id in annotations if image_id not in by_id]
    if unmatched:
        logger.warning("%d annotated images have no record (e.g. %s)", len(unmatched),
                       unmatched[0])
    for image_id, found in annotations.items():
        if image_id in by_id:
            by_id[image_id].annotations.extend(found)
    return records


#: CheXlocalize's expert segmentations of the CheXpert validation images.
CHEXLOCALIZE_FILE = "gt_segmentations_val.json"


def read_chexpert_with_localize(
    root: Path, uncertainty: str = "ignore", masks: bool = False
) -> list[ImageRecord]:
    """CheXpert records, with CheXlocalize's expert masks when ``masks`` is asked.

    With ``masks`` (evaluation) the validation split ``valid.csv`` is read and
    ``root/gt_segmentations_val.json`` attached (a warning, and labels only, if the
    file is absent); without, ``train.csv`` (training), or ``valid.csv`` if the folder
    has no training table.
    """
    root = Path(root)
    csv = "valid.csv" if masks or not (root / "train.csv").is_file() else "train.csv"
    records = read_chexpert(root, csv=csv, uncertainty=uncertainty)
    if masks:
        segmentations = root / CHEXLOCALIZE_FILE
        if segmentations.is_file():
            attach_annotations(records, read_chexlocalize(segmentations))
        else:
            logger.warning("%s: no %s, so no masks to score localisation on", root,
                           CHEXLOCALIZE_FILE)
    return records
