"""Localising many files: read, run, export, one bad file never stopping the batch.

Re-running over the same output folder skips inputs whose results are complete
(their folder exists; results are renamed into place only when whole) unless
``overwrite`` is set, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import csv
import logging
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from .errors import CXRWeakLocError
from .export import export_all, is_complete
from .export.layout import OutputLayout
from .files import ensure_folder, partial_path
from .localize import Localizer
from .radiograph import Radiograph, file_stem, read_radiograph

__all__ = ["InputOutcome", "BatchReport", "unique_stems", "localize_files"]

logger = logging.getLogger(__name__)

SUMMARY_FIELDS = ("input", "output", "status", "positive_findings", "error")


@dataclass
class InputOutcome:
    """What happened to one input file."""

    input: Path
    output: Path
    status: str  # "done", "skipped" (complete results existed) or "failed"
    positive_findings: list[str] = field(default_factory=list)
    error: str = ""

    def row(self) -> dict:
        return {"input": str(self.input), "output": str(self.output), "status": self.status,
                "positive_findings": "|".join(self.positive_findings), "error": self.error}


@dataclass
class BatchReport:
    """Outcomes of a batch run, in input order."""

    outcomes: list[InputOutcome]

    def by_status(self, status: str) -> list[InputOutcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def failed(self) -> list[InputOutcome]:
        return self.by_status("failed")

    def write_summary(self, path: Path) -> None:
        """CSV of every input (atomically replaced)."""
        write_summary_rows(path, [o.row() for o in self.outcomes])


def write_summary_rows(path: Path, rows: list[dict]) -> None:
    """Write summary rows as CSV through a temporary file and a rename."""
    temporary = partial_path(path)
    with temporary.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SUMMARY_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    temporary.replace(path)


def unique_stems(files: Sequence[Path]) -> list[str]:
    """Output names for ``files``: the file stem, prefixed with parent folder names
    where two inputs share a stem (CheXpert's ``view1_frontal.jpg`` in every study)."""
    stems = [file_stem(Path(f)) for f in files]
    depth = 0
    while len(set(stems)) < len(stems) and depth < 8:
        depth += 1
        counts = {s: stems.count(s) for s in stems}
        stems = [
            "_".join([*Path(f).resolve().parent.parts[-depth:], s]) if counts[s] > 1 else s
            for f, s in zip(files, stems, strict=True)
        ]
    return stems


def _remove_partials(out_dir: Path, stem: str) -> None:
    for partial in out_dir.glob(f".{stem}.partial-*"):
        shutil.rmtree(partial, ignore_errors=True)


def _batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def localize_files(
    localizer: Localizer,
    files: Sequence[Path],
    out_dir: Path,
    findings: str | Sequence[str] = "positive",
    overwrite: bool = False,
    batch_size: int = 4,
    progress: bool = True,
    stems: Sequence[str] | None = None,
) -> BatchReport:
    """Localise and export every file; failures are recorded, not raised."""
    out_dir = ensure_folder(out_dir)
    stems = list(stems) if stems is not None else unique_stems(files)
    outcomes: dict[int, InputOutcome] = {}
    pending: list[int] = []
    for index, (path, stem) in enumerate(zip(files, stems, strict=True)):
        layout = OutputLayout.for_input(out_dir, stem)
        _remove_partials(out_dir, stem)
        if is_complete(layout) and not overwrite:
            outcomes[index] = InputOutcome(path, layout.folder, "skipped")
        else:
            pending.append(index)

    bar = tqdm(total=len(files), desc="localize", unit="image", disable=not progress,
               initial=len(outcomes), dynamic_ncols=True)
    for chunk in _batches(pending, batch_size):
        readable: list[tuple[int, Radiograph]] = []
        for index in chunk:
            try:
                readable.append((index, read_radiograph(files[index])))
            except CXRWeakLocError as error:
                outcomes[index] = InputOutcome(files[index], out_dir / stems[index], "failed",
                                               error=str(error))
                bar.update(1)
        if not readable:
            continue
        results = localizer.localize([r for _, r in readable], findings)
        for (index, radiograph), result in zip(readable, results, strict=True):
            layout = OutputLayout.for_input(out_dir, stems[index])
            try:
                export_all(result, radiograph, out_dir, overwrite=overwrite, stem=stems[index])
                positives = [f.name for f in result.findings if f.positive]
                outcomes[index] = InputOutcome(files[index], layout.folder, "done", positives)
            except CXRWeakLocError as error:
                outcomes[index] = InputOutcome(files[index], layout.folder, "failed",
                                               error=str(error))
            bar.update(1)
    bar.close()
    return BatchReport([outcomes[i] for i in range(len(files))])
