"""Localising many files: read, run, export; one bad file never stops the batch.

The path of every input is the one the CLI and the Slicer module use: files are
decoded by :func:`~CXRWeakLocLib.radiograph.read_radiograph` in DataLoader worker
processes (``workers``), so the model never waits on PNG/DICOM decoding, then
localised in batches by a :class:`~CXRWeakLocLib.localize.Localizer` and written by
:func:`~CXRWeakLocLib.export.export_all`. A file that cannot be read, localised or
written is reported as ``failed`` in the summary with its reason, whatever raised.

Archive scale:

* **Streaming.** Only the current batch's images and results are in memory; each
  input leaves one small :class:`InputOutcome` (a few strings) behind, and its
  summary row is appended to disk as soon as it is known.
* **Resumable.** A re-run over the same output folder skips inputs whose results
  are complete (export renames a result folder into place only when whole) unless
  ``overwrite`` is set, removes the ``.<stem>.partial-*`` folders a killed export
  left behind and redoes those inputs.
* **Many processes or GPUs.** Under ``torchrun`` each rank takes its share of the
  sorted input list (:class:`~CXRWeakLocLib.distributed.Shard`), writes its part of
  the summary, and rank 0 merges the parts into ``OUT/summary.csv`` after a barrier.
  A single process is simply rank 0 of 1 and walks the same path.

The progress bar's description names the stage it is in (:data:`STAGES`: reading,
localising, exporting); the Slicer module shows it as the run's stage.
"""

from __future__ import annotations

import csv
import glob
import logging
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .core.errors import CXRWeakLocError
from .core.files import ensure_folder, partial_path
from .core.layout import OutputLayout
from .core.radiograph import Radiograph, file_stem, read_radiograph
from .distributed import Shard
from .export import export_all, is_complete
from .localize import Localizer

__all__ = [
    "STAGES",
    "SUMMARY_FIELDS",
    "SUMMARY_FILE",
    "InputOutcome",
    "BatchReport",
    "RadiographFiles",
    "unique_stems",
    "localize_files",
]

logger = logging.getLogger(__name__)

SUMMARY_FILE = "summary.csv"
SUMMARY_FIELDS = ("input", "output", "status", "positive_findings", "error")
#: The stages of a run, in order, as the progress bar's description names them.
STAGES = ("reading", "localising", "exporting")


@dataclass
class InputOutcome:
    """What happened to one input file (kept small: a batch keeps one per input)."""

    input: Path
    output: Path
    status: str  # "done", "skipped" (complete results existed) or "failed"
    positive_findings: list[str] = field(default_factory=list)
    error: str = ""

    def row(self) -> dict:
        return {"input": str(self.input), "output": str(self.output), "status": self.status,
                "positive_findings": "|".join(self.positive_findings), "error": self.error}

    @classmethod
    def from_row(cls, row: dict) -> InputOutcome:
        positives = row["positive_findings"].split("|") if row["positive_findings"] else []
        return cls(Path(row["input"]), Path(row["output"]), row["status"], positives,
                   row["error"])


@dataclass
class BatchReport:
    """Outcomes of a batch run in sorted input order: every input on rank 0, the
    rank's own share on the others; ``summary`` is the merged CSV."""

    outcomes: list[InputOutcome]
    summary: Path

    def by_status(self, status: str) -> list[InputOutcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def failed(self) -> list[InputOutcome]:
        return self.by_status("failed")


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


@dataclass
class _Read:
    """One decoded input (or why it could not be decoded), as a worker returns it."""

    position: int
    radiograph: Radiograph | None
    error: str = ""


class RadiographFiles(Dataset):
    """Files decoded by :func:`read_radiograph`; an unreadable file is an item with
    an error, never an exception, so one bad file cannot stop a DataLoader."""

    def __init__(self, files: Sequence[Path]) -> None:
        self.files = list(files)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, position: int) -> _Read:
        path = self.files[position]
        try:
            return _Read(position, read_radiograph(path))
        except CXRWeakLocError as error:
            return _Read(position, None, str(error))
        except Exception as error:  # a decoder bug must not end the whole run
            logger.exception("%s: unexpected error while reading", path)
            return _Read(position, None, f"{path}: cannot be read ({_describe(error)})")


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


def _as_list(items: list[_Read]) -> list[_Read]:
    """DataLoader collate: keep the radiographs as they are (sizes differ)."""
    return items


class _SummaryPart:
    """This rank's summary rows, appended to a hidden CSV as outcomes arrive."""

    def __init__(self, out_dir: Path, shard: Shard) -> None:
        self.path = out_dir / f".summary.part-{shard.rank}-of-{shard.world}.csv"
        self.outcomes: list[InputOutcome] = []
        self._handle: TextIO = self.path.open("w", newline="")
        self._writer = csv.DictWriter(self._handle, fieldnames=SUMMARY_FIELDS)
        self._writer.writeheader()

    def add(self, outcome: InputOutcome) -> None:
        self.outcomes.append(outcome)
        self._writer.writerow(outcome.row())
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def _write_summary(path: Path, outcomes: Sequence[InputOutcome]) -> None:
    """Write the summary CSV through a temporary file and a rename."""
    temporary = partial_path(path)
    with temporary.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SUMMARY_FIELDS)
        writer.writeheader()
        writer.writerows(o.row() for o in outcomes)
    temporary.replace(path)


def _merge_parts(out_dir: Path, files: Sequence[Path], stems: Sequence[str],
                 world: int) -> list[InputOutcome]:
    """Every rank's rows in sorted input order; the part files are removed."""
    by_input: dict[str, InputOutcome] = {}
    for rank in range(world):
        with (out_dir / f".summary.part-{rank}-of-{world}.csv").open(newline="") as handle:
            for row in csv.DictReader(handle):
                by_input[row["input"]] = InputOutcome.from_row(row)
    for stale in out_dir.glob(".summary.part-*.csv"):
        stale.unlink()
    return [
        by_input.get(str(path)) or InputOutcome(path, out_dir / stem, "failed",
                                                error=f"{path}: no result reported")
        for path, stem in zip(files, stems, strict=True)
    ]


def _remove_partials(out_dir: Path, stem: str) -> None:
    for partial in out_dir.glob(f".{glob.escape(stem)}.partial-*"):
        logger.info("removing %s left by an interrupted run", partial)
        shutil.rmtree(partial, ignore_errors=True)


def _localize_pending(
    localizer: Localizer,
    files: Sequence[Path],
    layouts: Sequence[OutputLayout],
    findings: str | Sequence[str],
    batch_size: int,
    workers: int,
    stage: Callable[[str], object],
) -> Iterator[InputOutcome]:
    """Outcomes of reading, localising and exporting ``files``, in order; ``stage(name)``
    is told each stage (:data:`STAGES`) as it starts."""
    loader = DataLoader(RadiographFiles(files), batch_size=batch_size, num_workers=workers,
                        collate_fn=_as_list, prefetch_factor=2 if workers else None)
    reading, localising, exporting = STAGES
    stage(reading)
    for chunk in loader:
        readable = []
        for item in chunk:
            if item.radiograph is None:
                yield InputOutcome(files[item.position], layouts[item.position].folder,
                                   "failed", error=item.error)
            else:
                readable.append(item)
        if not readable:
            continue
        stage(localising)
        try:
            results = localizer.localize([item.radiograph for item in readable], findings)
        except Exception as error:  # a model failure fails this batch, not the run
            logger.exception("localisation failed for a batch of %d", len(readable))
            for item in readable:
                yield InputOutcome(files[item.position], layouts[item.position].folder,
                                   "failed", error=f"localisation failed ({_describe(error)})")
            stage(reading)
            continue
        stage(exporting)
        for item, result in zip(readable, results, strict=True):
            yield _export(result, item, files[item.position], layouts[item.position])
        stage(reading)


def _export(result, item: _Read, path: Path, layout: OutputLayout) -> InputOutcome:
    # A folder without findings.json is not a result (it is never left by export_all,
    # whose renames are atomic, but a person may have emptied it): replace it.
    replace = layout.folder.exists()
    try:
        export_all(result, item.radiograph, layout.folder.parent, overwrite=replace,
                   stem=layout.stem)
    except CXRWeakLocError as error:
        return InputOutcome(path, layout.folder, "failed", error=str(error))
    except Exception as error:  # an exporter bug must not end the whole run
        logger.exception("%s: unexpected error while exporting", path)
        return InputOutcome(path, layout.folder, "failed",
                            error=f"{path}: export failed ({_describe(error)})")
    return InputOutcome(path, layout.folder, "done",
                        [f.name for f in result.findings if f.positive])


def localize_files(
    localizer: Localizer,
    files: Sequence[Path],
    out_dir: Path,
    findings: str | Sequence[str] = "positive",
    overwrite: bool = False,
    batch_size: int = 4,
    progress: bool = True,
    workers: int = 0,
    shard: Shard | None = None,
) -> BatchReport:
    """Localise and export this shard's share of ``files``; write ``OUT/summary.csv``.

    Args:
        localizer: the model, on this rank's device.
        files: every input of the run (all ranks pass the same list); sorted and
            de-duplicated here, so the split and the summary order are deterministic.
        out_dir: results go to ``out_dir/<stem>/``, the summary to ``out_dir/summary.csv``.
        findings: ``positive``, ``all`` or finding names (see :meth:`Localizer.localize`).
        overwrite: redo inputs whose results are complete.
        batch_size: radiographs per model call.
        progress: show a progress bar.
        workers: DataLoader worker processes decoding files (0: in this process).
        shard: this process's share (default: from the torchrun environment).
            Under torchrun every rank must call this (it ends with a barrier).

    Returns:
        The outcomes (all inputs on rank 0, the rank's own share elsewhere).
        Failures are recorded there and in the summary, not raised.
    """
    shard = shard or Shard.from_env()
    out_dir = ensure_folder(out_dir)
    files = sorted(dict.fromkeys(Path(f) for f in files), key=str)
    stems = unique_stems(files)
    layouts = [OutputLayout.for_input(out_dir, stem) for stem in stems]
    mine = shard.take(range(len(files)))
    part = _SummaryPart(out_dir, shard)
    try:
        pending = []
        for index in mine:
            _remove_partials(out_dir, stems[index])
            if is_complete(layouts[index]) and not overwrite:
                part.add(InputOutcome(files[index], layouts[index].folder, "skipped"))
            else:
                pending.append(index)
        with tqdm(total=len(mine), initial=len(mine) - len(pending), desc=STAGES[0],
                  unit="image", disable=not progress, dynamic_ncols=True) as bar:

            def stage(name: str) -> None:
                if bar.n < bar.total:  # after the last export there is nothing to read
                    bar.set_description(name)

            for outcome in _localize_pending(
                localizer, [files[i] for i in pending], [layouts[i] for i in pending],
                findings, max(1, batch_size), max(0, workers), stage,
            ):
                part.add(outcome)
                bar.update(1)
    finally:
        part.close()
    shard.barrier()
    summary = out_dir / SUMMARY_FILE
    if not shard.main:
        return BatchReport(sorted(part.outcomes, key=lambda o: str(o.input)), summary)
    outcomes = _merge_parts(out_dir, files, stems, shard.world)
    _write_summary(summary, outcomes)
    return BatchReport(outcomes, summary)
