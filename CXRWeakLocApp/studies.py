"""The review queue: the studies of a results folder and each one's status, on disk.

A study is one result folder of the engine (``OUT/<stem>/findings.json``). What the
review adds goes to ``OUT/reviewed/<stem>/``, never into the engine's folder (a later
``localize --overwrite`` replaces those whole): ``status.json`` (to review, reviewed or
edited, and the mask threshold the masks were saved at) and the exports with the edits,
``<stem>.seg.nrrd`` and, for DICOM inputs, ``<stem>.SEG.dcm``. Every file is written
under a temporary name and renamed into place, so a restart finds the last whole save.

No Slicer here: the queue is plain files, read with the engine's torch-free core.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from CXRWeakLocLib.core.errors import CXRWeakLocError
from CXRWeakLocLib.core.files import atomic_write_text, ensure_folder, sha256_of
from CXRWeakLocLib.core.results import read_result

__all__ = ["EDITED", "REVIEWED", "REVIEW_FOLDER", "STATUSES", "TO_REVIEW", "ReviewQueue",
           "Study"]

logger = logging.getLogger(__name__)

TO_REVIEW, REVIEWED, EDITED = "to review", "reviewed", "edited"
STATUSES = (TO_REVIEW, REVIEWED, EDITED)
#: The folder of ``OUT`` holding the reviews, one sub-folder per study.
REVIEW_FOLDER = "reviewed"
#: The engine's batch summary in ``OUT`` (``CXRWeakLocLib.batch.SUMMARY_FILE``; that module
#: loads torch, which the app never does).
SUMMARY_FILE = "summary.csv"


@dataclass
class Study:
    """One study of the queue: a result folder, or an input that has none (``error``)."""

    stem: str
    folder: Path | None = None
    status: str = TO_REVIEW
    #: the mask rule's value the saved masks were made with (None: the card's)
    threshold: float | None = None
    #: one line: why this input has no result
    error: str = ""

    @property
    def failed(self) -> bool:
        return self.folder is None


class ReviewQueue:
    """The studies of ``results_dir``, sorted by name, with their saved review status."""

    def __init__(self, results_dir: Path) -> None:
        self.results_dir = Path(results_dir)
        clash = self.results_dir / REVIEW_FOLDER / "findings.json"
        if clash.is_file():
            raise CXRWeakLocError(
                f"{clash.parent} is the result of an input named '{REVIEW_FOLDER}', and the "
                f"app keeps its reviews under that name: rename that input and localise it again")
        self.studies: list[Study] = []

    @staticmethod
    def is_results_folder(path: Path) -> bool:
        """Whether ``path`` holds results of the engine (``<stem>/findings.json``)."""
        return Path(path).is_dir() and any(Path(path).glob("*/findings.json"))

    def refresh(self) -> list[Study]:
        """Read the folder again: its results, each one's saved status, and the inputs the
        engine's summary says failed (those without a result)."""
        studies = {p.parent.name: self._study(p.parent)
                   for p in self.results_dir.glob("*/findings.json")}
        for stem, error in self._failures():
            studies.setdefault(stem, Study(stem, error=error))
        self.studies = [studies[stem] for stem in sorted(studies)]
        return self.studies

    def _study(self, folder: Path) -> Study:
        study = Study(folder.name, folder)
        path = self.status_file(study.stem)
        if path.is_file():
            try:
                saved = json.loads(path.read_text(encoding="utf-8"))
                status, threshold = saved["status"], saved.get("threshold")
                if status not in STATUSES:
                    raise ValueError(f"unknown status {status!r}")
                study.status = status
                study.threshold = None if threshold is None else float(threshold)
            except (OSError, ValueError, KeyError, TypeError) as error:
                logger.warning("%s: ignored (%s); the study is to review", path, error)
        return study

    def _failures(self) -> list[tuple[str, str]]:
        """(stem, error) of the inputs the engine's last run could not localise."""
        path = self.results_dir / SUMMARY_FILE
        try:
            with path.open(newline="", encoding="utf-8") as handle:
                rows = list(csv.DictReader(handle))
        except OSError:
            return []
        return [(Path(row["output"]).name, row["error"] or f"{row['input']}: failed")
                for row in rows if row.get("status") == "failed"]

    # --- files of a review --------------------------------------------------------------

    def review_folder(self, stem: str) -> Path:
        return self.results_dir / REVIEW_FOLDER / stem

    def status_file(self, stem: str) -> Path:
        return self.review_folder(stem) / "status.json"

    def segmentation_file(self, stem: str) -> Path:
        """The reviewed masks (the engine's ``.seg.nrrd`` format, edits included)."""
        return self.review_folder(stem) / f"{stem}.seg.nrrd"

    def dicom_seg_file(self, stem: str) -> Path:
        return self.review_folder(stem) / f"{stem}.SEG.dcm"

    def save_status(self, study: Study) -> None:
        """Write ``study``'s status and threshold (atomically)."""
        ensure_folder(self.review_folder(study.stem))
        record = {"status": study.status, "threshold": study.threshold,
                  "saved": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        atomic_write_text(self.status_file(study.stem), json.dumps(record, indent=2) + "\n")

    # --- reading a study ----------------------------------------------------------------

    def input_file(self, study: Study) -> Path:
        """The radiograph ``study`` was made from, as ``findings.json`` records it (its
        path, relative to where ``localize`` ran, and its checksum); a one-line
        :class:`CXRWeakLocError` when no file with that checksum is found."""
        saved = read_result(study.folder).input
        recorded, checksum = saved.get("path"), saved.get("sha256")
        if not recorded:
            raise CXRWeakLocError(f"{study.stem}: findings.json does not record its input file")
        path = Path(recorded)
        bases = [Path.cwd(), *self.results_dir.resolve().parents]
        candidates = [path] if path.is_absolute() else [base / path for base in bases]
        for candidate in candidates:
            if candidate.is_file() and (not checksum or sha256_of(candidate) == checksum):
                return candidate
        raise CXRWeakLocError(f"{study.stem}: its radiograph {recorded} is not found (or has "
                              f"changed since it was localised)")

    def progress(self) -> tuple[int, int]:
        """(studies reviewed or edited, studies with results)."""
        studies = [s for s in self.studies if not s.failed]
        return sum(s.status != TO_REVIEW for s in studies), len(studies)
