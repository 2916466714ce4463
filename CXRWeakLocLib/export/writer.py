"""Write every export of one radiograph, atomically, into ``OUT/<stem>/``.

Files are written into a hidden sibling ``OUT/.<stem>.partial-<random>/`` and the
folder is renamed into place once complete, so ``OUT/<stem>`` is either absent or
complete (``findings.json``, written last, marks it). Replacing an earlier result
moves it aside to ``OUT/.<stem>.old-<random>/`` first and deletes it only after the
new folder is in place; if the swap fails the old folder is moved back.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import tempfile
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..core.errors import CXRWeakLocError
from ..core.layout import OutputLayout
from ..core.radiograph import Radiograph
from ..core.results import LocalizationResult
from .dicom_seg import write_dicom_seg
from .findings_json import write_findings_json
from .healed import write_healed
from .heatmap_nrrd import write_heatmaps
from .overview_png import write_overview
from .seg_nrrd import write_segmentation

__all__ = ["EXPORT_THREADS", "FORMATS", "export_all", "is_complete"]

logger = logging.getLogger(__name__)

#: Optional formats; ``findings.json`` is always written. ``dicom-seg`` is written
#: for DICOM input only, ``healed`` (NRRD + PNG) for generative methods only.
FORMATS = ("seg-nrrd", "heatmap-nrrd", "dicom-seg", "png", "healed")
#: Writers run side by side: gzip, numpy and Pillow let go of the GIL for most of
#: their work, so two cores write one study's files in about the time of the longest.
EXPORT_THREADS = 2


def is_complete(layout: OutputLayout) -> bool:
    """True when ``layout.folder`` holds a finished result (a batch run may skip it)."""
    return layout.findings_json.is_file()


def _write_files(
    result: LocalizationResult, radiograph: Radiograph, layout: OutputLayout,
    formats: Collection[str],
) -> None:
    """Each chosen format's writer, :data:`EXPORT_THREADS` at a time, then ``findings.json``
    (which lists what they wrote, in this order)."""

    def written_if(path: Path, write: Callable[..., bool | None]) -> Callable[[], list[Path]]:
        """A job running ``write(result, radiograph, path)``: ``[path]`` unless it says False."""
        return lambda: [] if write(result, radiograph, path) is False else [path]

    jobs: list[Callable[[], list[Path]]] = []
    if "seg-nrrd" in formats:
        jobs.append(written_if(layout.segmentation, write_segmentation))
    if "heatmap-nrrd" in formats:
        jobs.append(lambda: write_heatmaps(result, radiograph, layout))
    if "dicom-seg" in formats:
        jobs.append(written_if(layout.dicom_seg, write_dicom_seg))
    if "png" in formats:
        jobs.append(written_if(layout.overview, write_overview))
    if "healed" in formats:
        jobs.append(lambda: write_healed(result, radiograph, layout))
    with ThreadPoolExecutor(max_workers=EXPORT_THREADS) as pool:
        futures = [pool.submit(job) for job in jobs]
    written = [path for future in futures for path in future.result()]
    names = [path.name for path in written] + [layout.findings_json.name]
    write_findings_json(result, radiograph, layout.findings_json, names)


def _replace(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``; an existing ``target`` survives any failure."""
    if not target.exists():
        staging.rename(target)
        return
    old = target.with_name(f".{target.name}.old-{secrets.token_hex(4)}")
    target.rename(old)
    try:
        staging.rename(target)
    except OSError:
        old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def export_all(
    result: LocalizationResult,
    radiograph: Radiograph,
    out_dir: Path,
    overwrite: bool = False,
    formats: Collection[str] = FORMATS,
    stem: str | None = None,
) -> OutputLayout:
    """Write the chosen formats and ``findings.json`` of one radiograph to ``out_dir/<stem>``.

    ``stem`` defaults to the radiograph's file stem; a batch passes its own to keep
    inputs of the same name (``a/1.dcm``, ``b/1.dcm``) apart.

    Raises:
        CXRWeakLocError: the result folder exists and ``overwrite`` is False, a format
            is unknown, or the output folder cannot be written; nothing is left
            half-written and an earlier result is kept.
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise CXRWeakLocError(
            f"unknown export format {', '.join(unknown)} (known: {', '.join(FORMATS)})"
        )
    out_dir = Path(out_dir)
    layout = OutputLayout.for_input(out_dir, stem or radiograph.stem)
    if layout.folder.exists() and not overwrite:
        raise CXRWeakLocError(f"{layout.folder}: result exists (use --overwrite)")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{layout.stem}.partial-", dir=out_dir))
    except OSError as error:
        raise CXRWeakLocError(
            f"{out_dir}: cannot write results there ({error.strerror or error})"
        ) from None
    try:
        _write_files(result, radiograph, OutputLayout(staging, layout.stem), formats)
        _replace(staging, layout.folder)
    except OSError as error:
        raise CXRWeakLocError(
            f"{layout.folder}: cannot write results ({error.strerror or error})"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("wrote %s", layout.folder)
    return layout
