"""The COVID-19 image data collection (Cohen et al., ieee8023/covid-chestxray-dataset).

``root/metadata.csv`` has one row per image (columns used: ``patientid``,
``finding``, ``view``, ``modality``, ``folder``, ``filename``; the image is
``root/folder/filename``). ``finding`` is hierarchical, ``/``-separated
(``Pneumonia/Viral/COVID-19``, ``Pneumonia/Bacterial/Streptococcus``,
``Tuberculosis``, ``No Finding``).

Only frontal X-rays are kept (``modality`` ``X-ray``, ``view`` ``PA``, ``AP``,
``AP Supine`` or ``AP semi erect``); rows whose finding is not yet known (``todo``,
``Unknown``, blank) are dropped. Each record is labelled, 0 or 1, for
:data:`LABELLED_FINDINGS` (a finding is present when a level of ``finding`` names
it); the collection says nothing of the other findings, which stay unknown.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path, PurePosixPath

from ..core.errors import ConfigError
from ..core.findings import UnknownFindingError, finding_by_name
from .records import ImageRecord

__all__ = ["FRONTAL_VIEWS", "LABELLED_FINDINGS", "read_covid19"]

logger = logging.getLogger(__name__)

METADATA_FILE = "metadata.csv"
FRONTAL_VIEWS = {"PA", "AP", "AP Supine", "AP semi erect"}
LABELLED_FINDINGS = ("COVID-19", "Pneumonia", "Tuberculosis")
_UNKNOWN_FINDINGS = {"", "todo", "unknown"}


def _named_findings(finding: str) -> set[str]:
    """Vocabulary names of the levels of a hierarchical ``finding``."""
    names = set()
    for level in finding.split("/"):
        try:
            names.add(finding_by_name(level.strip()).name)
        except UnknownFindingError:
            continue
    return names


def read_covid19(root: Path) -> list[ImageRecord]:
    """Records of the frontal X-rays of ``root/metadata.csv`` with known findings."""
    root = Path(root)
    table = root / METADATA_FILE
    if not table.is_file():
        raise ConfigError(f"{root}: no {METADATA_FILE} (not a COVID-19 image data collection)")
    records = []
    with table.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["modality"] != "X-ray" or row["view"] not in FRONTAL_VIEWS:
                continue
            if row["finding"].strip().lower() in _UNKNOWN_FINDINGS:
                continue
            present = _named_findings(row["finding"])
            records.append(ImageRecord(
                id=PurePosixPath(row["filename"]).stem,
                image=root / row["folder"] / row["filename"],
                labels={name: float(name in present) for name in LABELLED_FINDINGS},
                meta={"patient": row["patientid"], "view": row["view"],
                      "finding": row["finding"]},
            ))
    logger.info("%s: %d frontal X-rays", table, len(records))
    return records
