"""The module's logic, usable without the widget: run the engine, import, re-threshold, export.

One run walks Initializing -> Running -> Importing -> Finished / Cancelled / Failed.
The engine runs in a child process (its CLI); :meth:`LocalizationLogic.poll`
advances the run and is called from a timer in Slicer, or by :meth:`wait` in
scripts and tests. Importing happens on the caller's (main) thread.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import slicer

from . import mrml
from .process import EngineProcess, State, engineCommand, engineEnvironment

__all__ = ["FindingRow", "LocalizationLogic", "State", "ENGINE_ROOT"]

logger = logging.getLogger(__name__)

#: The folder holding ``CXRWeakLocLib``: the scripted-modules folder in an installed
#: extension, the repository root in a source tree.
ENGINE_ROOT = next(
    (p for p in Path(__file__).resolve().parents[1:3] if (p / "CXRWeakLocLib").is_dir()),
    Path(__file__).resolve().parents[2],
)


def startupEnvironment() -> dict[str, str] | None:
    """Slicer's startup environment in the application (PythonSlicer sets up its own on
    top of it, as ``slicer.util.launchConsoleProcess`` does); None outside it."""
    return slicer.util.startupEnvironment() if hasattr(slicer, "app") else None


def pythonExecutable() -> str:
    """Slicer's ``PythonSlicer`` when present (same packages as Slicer), else this Python."""
    return shutil.which("PythonSlicer") or sys.executable


@dataclass
class FindingRow:
    """One localised finding as the findings table shows it."""

    name: str
    probability: float
    threshold: float
    positive: bool
    segment_id: str
    heatmap: object  # vtkMRMLScalarVolumeNode
    area_px: int = 0
    area_mm2: float | None = None


@dataclass
class Run:
    """What one run needs to import its results."""

    input_volume: object | None  # None for a batch run (nothing to import)
    results_dir: Path
    process: EngineProcess
    work_dir: Path | None  # a temporary folder removed when the run ends
    start_time: float = field(default_factory=time.monotonic)


class LocalizationLogic:
    """Runs a model on a radiograph volume and turns the results into MRML nodes.

    Callbacks (all optional): ``onLog(line)``, ``onProgress(fraction)``,
    ``onState(state)``.
    """

    def __init__(
        self,
        python: str | None = None,
        onLog: Callable[[str], None] | None = None,
        onProgress: Callable[[float], None] | None = None,
        onState: Callable[[State], None] | None = None,
    ) -> None:
        self.python = python or pythonExecutable()
        self.onLog = onLog or logger.info
        self.onProgress = onProgress or (lambda fraction: None)
        self.onState = onState or (lambda state: None)
        self.state = State.IDLE
        self.error = ""
        self.inputVolume = None
        self.segmentation = None
        self.findings: list[FindingRow] = []
        self.maskRule = None
        self.model: dict = {}
        self.spacingKnown = False
        self._run: Run | None = None
        self._tracker: mrml.EditTracker | None = None

    # --- input --------------------------------------------------------------------

    @staticmethod
    def loadRadiograph(path: Path, name: str | None = None):
        """Read a radiograph with the engine's reader into a volume with its geometry."""
        from CXRWeakLocLib.core.radiograph import read_radiograph

        radiograph = read_radiograph(path)
        return mrml.volumeFromRadiograph(radiograph, name or radiograph.stem)

    @staticmethod
    def sourceFile(volume) -> Path | None:
        """The file a volume came from: the engine's reader, or the DICOM database."""
        recorded = volume.GetAttribute(mrml.SOURCE_FILE_ATTRIBUTE)
        if recorded and Path(recorded).is_file():
            return Path(recorded)
        uids = (volume.GetAttribute("DICOM.instanceUIDs") or "").split()
        database = getattr(slicer, "dicomDatabase", None)
        if len(uids) == 1 and database is not None:
            found = database.fileForInstance(uids[0])
            if found:
                return Path(found)
        return None

    def _inputFile(self, volume, workDir: Path) -> Path:
        source = self.sourceFile(volume)
        if source is not None:
            return source
        path = workDir / "input.nrrd"
        storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
        storage.SetFileName(str(path))
        if not storage.WriteData(volume):
            raise RuntimeError(f"cannot write the input volume to {path}")
        return path

    # --- running --------------------------------------------------------------------

    def _setState(self, state: State) -> None:
        self.state = state
        self.onState(state)

    def start(self, inputVolume, model: str, findings: str = "positive",
              device: str = "auto", outDir: Path | None = None) -> None:
        """Start localising ``inputVolume`` with ``model`` (a name or a folder).

        The engine's files are kept in ``outDir`` when given, else in a temporary
        folder removed when the run ends.
        """
        if self.state.busy:
            raise RuntimeError("a run is already in progress")
        self.error = ""
        self._setState(State.INITIALIZING)
        workDir = Path(tempfile.mkdtemp(prefix="CXRWeakLoc-"))
        try:
            inputFile = self._inputFile(inputVolume, workDir)
        except Exception as error:
            shutil.rmtree(workDir, ignore_errors=True)
            self._fail(str(error))
            raise
        self._launch(inputVolume, [inputFile], Path(outDir or workDir / "results"), model,
                     findings, device, workDir=workDir)

    def startBatch(self, inputFolder: Path, outputFolder: Path, model: str,
                   findings: str = "positive", device: str = "auto") -> None:
        """Localise every radiograph under ``inputFolder`` into ``outputFolder`` (no import)."""
        if self.state.busy:
            raise RuntimeError("a run is already in progress")
        self.error = ""
        self._setState(State.INITIALIZING)
        self._launch(None, [Path(inputFolder)], Path(outputFolder), model, findings, device)

    def _launch(self, inputVolume, inputs, outDir, model, findings, device,
                workDir: Path | None = None) -> None:
        args = engineCommand(self.python, inputs, outDir, model, findings, device)
        process = EngineProcess(args, engineEnvironment(ENGINE_ROOT, startupEnvironment()))
        self.onLog("Running: " + " ".join(args[1:]))
        process.start()
        self._run = Run(inputVolume, outDir, process, workDir)
        self._setState(State.RUNNING)

    def poll(self) -> State:
        """Advance the run: collect output and progress, import when the engine is done."""
        run = self._run
        if run is None or self.state != State.RUNNING:
            return self.state
        code, lines = run.process.poll()
        for line in lines:
            self.onLog(line)
        if run.process.progress is not None:
            self.onProgress(run.process.progress)
        if code is None:
            return self.state
        if code != 0:
            self._fail(run.process.lastMessage or f"the engine exited with code {code}")
        elif run.input_volume is None:
            self._finish(f"Batch finished: results in {run.results_dir}")
        else:
            self._setState(State.IMPORTING)
            try:
                self.importResults(run.input_volume, run.results_dir)
            except Exception as error:
                logger.exception("import failed")
                self._fail(f"importing the results failed: {error}")
            else:
                self._finish(f"Finished in {time.monotonic() - run.start_time:.1f} s")
        return self.state

    def wait(self, timeout: float = 600.0, interval: float = 0.1) -> State:
        """Poll until the run ends (scripts and tests); cancel it after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while self.poll() == State.RUNNING:
            if time.monotonic() > deadline:
                self.cancel()
                break
            time.sleep(interval)
        return self.state

    def cancel(self) -> None:
        """Kill the engine process (and its children) of the current run."""
        if self._run is None or self.state != State.RUNNING:
            return
        self._run.process.cancel()
        self.onLog("Cancelled.")
        self._end(State.CANCELLED)

    def _fail(self, message: str) -> None:
        self.error = message
        self.onLog(f"Failed: {message}")
        self._end(State.FAILED)

    def _finish(self, message: str) -> None:
        self.onLog(message)
        self._end(State.FINISHED)

    def _end(self, state: State) -> None:
        if self._run is not None and self._run.work_dir is not None:
            shutil.rmtree(self._run.work_dir, ignore_errors=True)
        self._run = None
        self._setState(state)

    # --- importing ------------------------------------------------------------------

    def importResults(self, inputVolume, resultsDir: Path) -> None:
        """Heatmap volumes and the findings segmentation of the run in ``resultsDir``."""
        from CXRWeakLocLib.core.layout import OutputLayout
        from CXRWeakLocLib.core.masks import MaskRule

        records = sorted(Path(resultsDir).glob("*/findings.json"))
        if len(records) != 1:
            raise RuntimeError(f"{resultsDir}: expected one result folder, found {len(records)}")
        layout = OutputLayout(records[0].parent, records[0].parent.name)
        record = json.loads(layout.findings_json.read_text())
        self.clearResults()
        self.inputVolume = inputVolume
        self.maskRule = MaskRule(**record["mask_rule"])
        self.model = record["model"]
        self.spacingKnown = bool(record["input"]["spacing_known"])
        exported = [f for f in record["findings"] if f.get("exported")]
        if not exported:
            self.onLog("No finding above its threshold: nothing to show.")
            return
        baseName = inputVolume.GetName()
        self.segmentation = mrml.loadSegmentation(
            layout.segmentation, inputVolume, f"{baseName} findings")
        content = self.segmentation.GetSegmentation()
        self._tracker = mrml.EditTracker(self.segmentation, inputVolume)
        for entry in exported:
            heatmap = mrml.loadHeatmap(layout.heatmap(entry["name"]),
                                       f"{baseName} {entry['name']} heatmap", inputVolume)
            self.findings.append(FindingRow(
                name=entry["name"], probability=float(entry["probability"]),
                threshold=float(entry["threshold"]), positive=bool(entry["positive"]),
                segment_id=content.GetSegmentIdBySegmentName(entry["name"]), heatmap=heatmap))
        mrml.parentUnderStudy([self.segmentation] + [r.heatmap for r in self.findings],
                              inputVolume)
        self.setMaskRuleValue(self.maskRule.value)
        self.showFinding(self.findings[0].name)

    def clearResults(self) -> None:
        """Forget the current results (their nodes stay in the scene)."""
        if self._tracker is not None:
            self._tracker.stop()
        self._tracker = None
        self.segmentation = None
        self.findings = []

    # --- reviewing ------------------------------------------------------------------

    def finding(self, name: str) -> FindingRow:
        return next(row for row in self.findings if row.name == name)

    def setMaskRuleValue(self, value: float) -> list[str]:
        """Re-threshold every heatmap with the mask rule at ``value``, without the model.

        Segments edited by hand are kept as the user left them; returns their names.
        """
        from CXRWeakLocLib.core.masks import apply_mask_rule

        if self.segmentation is None or self._tracker is None:
            return []
        rule = self.maskRule.with_value(value)
        spacing = self.inputVolume.GetSpacing()
        kept = []
        for row in self.findings:
            if self._tracker.edited(row.segment_id):
                kept.append(row.name)
                mask = mrml.segmentMask(self.segmentation, row.segment_id, self.inputVolume)
            else:
                mask = apply_mask_rule(slicer.util.arrayFromVolume(row.heatmap)[0], rule)
                with self._tracker.writing():
                    mrml.setSegmentMask(self.segmentation, row.segment_id, mask, self.inputVolume)
                self._tracker.expect(row.segment_id, mask)
            row.area_px = int(mask.sum())
            row.area_mm2 = row.area_px * spacing[0] * spacing[1] if self.spacingKnown else None
        return kept

    def showFinding(self, name: str, opacity: float = 0.4) -> None:
        """Show one finding's heatmap (foreground) and mask; hide the other masks."""
        row = self.finding(name)
        mrml.showHeatmap(row.heatmap, self.inputVolume, opacity)
        display = self.segmentation.GetDisplayNode()
        for other in self.findings:
            display.SetSegmentVisibility(other.segment_id, other.name == name)

    def setHeatmapOpacity(self, opacity: float) -> None:
        slicer.util.setSliceViewerLayers(foregroundOpacity=opacity)

    # --- exporting ------------------------------------------------------------------

    def exportSegmentation(self, path: Path) -> Path:
        """Write the (possibly edited) segmentation as ``.seg.nrrd`` via Slicer's storage node."""
        if self.segmentation is None:
            raise RuntimeError("no segmentation to export")
        return mrml.writeSegmentation(self.segmentation, Path(path))

    def canExportDicomSeg(self) -> bool:
        return self.segmentation is not None and self._dicomSource() is not None

    def _dicomSource(self) -> Path | None:
        source = self.sourceFile(self.inputVolume) if self.inputVolume is not None else None
        if source is None:
            return None
        with source.open("rb") as handle:
            return source if handle.read(132)[128:132] == b"DICM" else None

    def exportDicomSeg(self, path: Path) -> Path:
        """Write the current masks as DICOM-SEG with the engine's highdicom writer."""
        source = self._dicomSource()
        if self.segmentation is None or source is None:
            raise RuntimeError("DICOM-SEG needs results of an input from a DICOM file")
        writeDicomSeg(self._localizationResult(), source, Path(path))
        return Path(path)

    def _localizationResult(self):
        """The current masks (edits included) as the engine's LocalizationResult."""
        from CXRWeakLocLib.core.findings import finding_by_name
        from CXRWeakLocLib.core.masks import mask_boxes
        from CXRWeakLocLib.core.results import FindingResult, LocalizationResult

        results = []
        for row in self.findings:
            mask = mrml.segmentMask(self.segmentation, row.segment_id, self.inputVolume)
            segment = self.segmentation.GetSegmentation().GetSegment(row.segment_id)
            results.append(FindingResult(
                finding_by_name(row.name), row.probability, row.threshold,
                heatmap=np.asarray(slicer.util.arrayFromVolume(row.heatmap)[0]),
                mask=mask, boxes=mask_boxes(mask),
                algorithm_type=mrml.segmentTag(segment, mrml.ALGORITHM_TYPE_TAG)))
        return LocalizationResult(self.model["name"], self.model["version"],
                                  self.model["method"], self.maskRule, results)


def writeDicomSeg(result, source: Path, path: Path) -> None:
    """The engine's DICOM-SEG writer on a LocalizationResult and its source DICOM."""
    from CXRWeakLocLib.core.radiograph import read_radiograph
    from CXRWeakLocLib.export.dicom_seg import write_dicom_seg

    if not write_dicom_seg(result, read_radiograph(source), path):
        raise RuntimeError(f"{source}: no DICOM-SEG written (no localised finding)")
