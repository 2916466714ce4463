"""The module's logic, usable without the widget: run the engine, import, re-threshold, export.

One run walks Initializing -> Running -> Importing -> Finished / Cancelled / Failed.
The engine runs in a child process (its CLI); :meth:`LocalizationLogic.poll`
advances the run and is called from a timer in Slicer, or by :meth:`wait` in
scripts and tests. Importing happens on the caller's (main) thread, with the
engine's torch-free core (``CXRWeakLocLib.core``) and exporters: the panel never
loads torch.

Results are recorded in the module's parameter node, so they survive a scene save
and load (:meth:`LocalizationLogic.restoreResults`).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import slicer

from . import ENGINE_ROOT, mrml
from .i18n import tr as _
from .parameters import Parameters
from .process import EngineProcess, Progress, State, engineCommand, engineEnvironment

__all__ = ["FindingRow", "LocalizationLogic", "State", "ENGINE_ROOT", "SAMPLE_FILE"]

logger = logging.getLogger(__name__)

#: The sample radiograph: SYNTHETIC, made by ``cxrweakloc sample`` (no patient's image).
SAMPLE_FILE = Path(__file__).resolve().parents[1] / "Resources" / "Samples" / "SyntheticChest.png"


def startupEnvironment() -> dict[str, str] | None:
    """Slicer's startup environment in the application (PythonSlicer sets up its own on
    top of it, as ``slicer.util.launchConsoleProcess`` does); None outside it."""
    return slicer.util.startupEnvironment() if hasattr(slicer, "app") else None


def pythonExecutable() -> str:
    """Slicer's ``PythonSlicer`` when present (same packages as Slicer), else this Python."""
    return shutil.which("PythonSlicer") or sys.executable


@contextlib.contextmanager
def _replacedWhole(path: Path):
    """Yields a hidden sibling of ``path`` to write; renamed over ``path`` once written, so
    ``path`` is never half-written (removed if writing fails)."""
    from CXRWeakLocLib.core.files import partial_path

    partial = partial_path(path)
    try:
        yield partial
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def stageText(stage: str) -> str:
    """What the panel shows for one of the engine's stages (``CXRWeakLocLib.batch.STAGES``)."""
    texts = {"reading": _("Reading"), "localising": _("Localising"),
             "exporting": _("Writing results")}
    return texts.get(stage, stage)


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

    @property
    def areaText(self) -> str:
        """The mask area as the findings table shows it: pixels, and cm² when known."""
        text = _("{pixels} px").format(pixels=self.area_px)
        return text if self.area_mm2 is None else f"{text} ({self.area_mm2 / 100:.1f} cm²)"

    def record(self) -> dict:
        """What the parameter node keeps of this row (nodes are references there)."""
        return {"name": self.name, "probability": self.probability,
                "threshold": self.threshold, "positive": self.positive,
                "segment_id": self.segment_id}


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
    ``onStage(text)`` (loading the model, reading, localising, ..., importing) and
    ``onState(state)``.
    """

    def __init__(
        self,
        python: str | None = None,
        onLog: Callable[[str], None] | None = None,
        onProgress: Callable[[float], None] | None = None,
        onState: Callable[[State], None] | None = None,
        onStage: Callable[[str], None] | None = None,
    ) -> None:
        self.python = python or pythonExecutable()
        self.onLog = onLog or logger.info
        self.onProgress = onProgress or (lambda fraction: None)
        self.onState = onState or (lambda state: None)
        self.onStage = onStage or (lambda text: None)
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
        self._overlap = mrml.OverlapInSegmentEditor(slicer.mrmlScene)

    @property
    def parameters(self) -> Parameters:
        """The scene's parameter node (made when the scene has none)."""
        return Parameters.of(slicer.mrmlScene)

    @property
    def batch(self) -> bool:
        """Whether the run in progress is a batch (files to files, nothing imported)."""
        return self._run is not None and self._run.input_volume is None

    def cleanup(self) -> None:
        """Cancel a run and stop observing the scene (the widget is going away)."""
        self.cancel()
        self.clearResults()
        self._overlap.stop()

    # --- input --------------------------------------------------------------------

    @staticmethod
    def loadRadiograph(path: Path, name: str | None = None):
        """Read a radiograph with the engine's reader into a volume with its geometry."""
        from CXRWeakLocLib.core.radiograph import read_radiograph

        radiograph = read_radiograph(path)
        return mrml.volumeFromRadiograph(radiograph, name or radiograph.stem)

    def loadSample(self):
        """The sample radiograph (synthetic) as a volume, chosen as the run's input."""
        volume = self.loadRadiograph(SAMPLE_FILE, _("Synthetic chest (sample)"))
        self.parameters.inputVolume = volume
        return volume

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
            raise RuntimeError(_("cannot write the input volume to {path}").format(path=path))
        return path

    @staticmethod
    def batchInputs(inputFolder: Path | None, outputFolder: Path | None) -> list[Path]:
        """The radiographs a batch from ``inputFolder`` into ``outputFolder`` would run on
        (the engine's own search); ValueError (one line) for folders that cannot be used."""
        from CXRWeakLocLib.core.radiograph import find_radiographs

        if not inputFolder or not outputFolder:
            raise ValueError(_("Choose both an input and an output folder."))
        inputFolder, outputFolder = Path(inputFolder).resolve(), Path(outputFolder).resolve()
        if not inputFolder.is_dir():
            raise ValueError(_("{folder} is not a folder.").format(folder=inputFolder))
        if outputFolder == inputFolder or inputFolder in outputFolder.parents:
            raise ValueError(_("The output folder {output} is inside the input folder "
                               "{input}: choose one outside it.").format(
                                   output=outputFolder, input=inputFolder))
        files = find_radiographs([inputFolder])
        if not files:
            raise ValueError(_("No radiographs found in {folder}.").format(folder=inputFolder))
        return files

    # --- running --------------------------------------------------------------------

    def _setState(self, state: State) -> None:
        self.state = state
        self.onState(state)

    def start(self, inputVolume, model: str, findings: str = "positive",
              device: str = "auto", outDir: Path | None = None) -> None:
        """Start localising ``inputVolume`` with ``model`` (a name or a folder).

        The engine's files are kept in ``outDir`` when given, else in a temporary
        folder removed when the run ends. The choices go to the parameter node.
        """
        if self.state.busy:
            raise RuntimeError(_("a run is already in progress"))
        if inputVolume is None:
            raise ValueError(_("Choose a radiograph first."))
        parameters = self.parameters
        parameters.inputVolume = inputVolume
        parameters.model, parameters.findings, parameters.device = model, findings, device
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
        """Localise every radiograph under ``inputFolder`` into ``outputFolder`` (no import).

        Refuses (ValueError) what :meth:`batchInputs` refuses.
        """
        if self.state.busy:
            raise RuntimeError(_("a run is already in progress"))
        files = self.batchInputs(inputFolder, outputFolder)
        self.error = ""
        self._setState(State.INITIALIZING)
        self.onLog(_("Batch of {count} radiographs.").format(count=len(files)))
        self._launch(None, [Path(inputFolder)], Path(outputFolder), model, findings, device)

    def _launch(self, inputVolume, inputs, outDir, model, findings, device,
                workDir: Path | None = None) -> None:
        args = engineCommand(self.python, inputs, outDir, model, findings, device)
        process = EngineProcess(args, engineEnvironment(ENGINE_ROOT, startupEnvironment()))
        self.onLog(_("Running: {command}").format(command=" ".join(args[1:])))
        process.start()
        self._run = Run(inputVolume, outDir, process, workDir)
        self._setState(State.RUNNING)
        self.onStage(_("Loading the model"))

    def poll(self) -> State:
        """Advance the run: collect output and progress, import when the engine is done."""
        run = self._run
        if run is None or self.state != State.RUNNING:
            return self.state
        code, output = run.process.poll()
        for item in output:
            if isinstance(item, Progress):
                self.onStage(stageText(item.stage))
                self.onProgress(item.fraction)
            else:
                self.onLog(item)
        if code is None:
            return self.state
        if code != 0:
            self._fail(run.process.lastMessage
                       or _("the engine exited with code {code}").format(code=code))
        elif run.input_volume is None:
            self._finish(_("Batch finished: results in {folder}").format(folder=run.results_dir))
        else:
            self._setState(State.IMPORTING)
            self.onStage(_("Importing results"))
            try:
                self.importResults(run.input_volume, run.results_dir)
            except Exception as error:
                logger.exception("import failed")
                self._fail(_("importing the results failed: {error}").format(error=error))
            else:
                self._finish(_("Finished in {seconds:.1f} s").format(
                    seconds=time.monotonic() - run.start_time))
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
        self.onLog(_("Cancelled."))
        self._end(State.CANCELLED)

    def _fail(self, message: str) -> None:
        self.error = message
        self.onLog(_("Failed: {message}").format(message=message))
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
        folders = sorted(p.parent for p in Path(resultsDir).glob("*/findings.json"))
        if len(folders) != 1:
            raise RuntimeError(_("{folder}: expected one result folder, found {count}").format(
                folder=resultsDir, count=len(folders)))
        self.importResult(inputVolume, folders[0])

    def importResult(self, inputVolume, folder: Path, segmentationFile: Path | None = None) -> None:
        """Heatmap volumes and the findings segmentation of one result folder (the engine's
        ``OUT/<stem>``). ``segmentationFile``: a ``.seg.nrrd`` of these findings to start
        from instead of the engine's (an earlier export with edits): its SEMIAUTOMATIC
        segments are kept as they are, the others re-thresholded."""
        from CXRWeakLocLib.core.results import read_result

        saved = read_result(folder)
        self.clearResults()
        self.inputVolume = inputVolume
        self.maskRule = saved.mask_rule
        self.model = saved.model
        self.spacingKnown = saved.spacing_known
        parameters = self.parameters
        parameters.threshold = self.maskRule.value
        if not saved.exported:
            parameters.results = parameters.segmentation = None
            parameters.heatmaps = []
            self.onLog(_("No finding above its threshold: nothing to show."))
            return
        baseName = inputVolume.GetName()
        self.segmentation = mrml.loadSegmentation(
            segmentationFile or saved.layout.segmentation, inputVolume,
            _("{name} findings").format(name=baseName))
        content = self.segmentation.GetSegmentation()
        for entry in saved.exported:
            heatmap = mrml.loadHeatmap(saved.layout.heatmap(entry.name),
                                       _("{name} {finding} heatmap").format(
                                           name=baseName, finding=entry.name), inputVolume)
            self.findings.append(FindingRow(
                name=entry.name, probability=entry.probability, threshold=entry.threshold,
                positive=entry.positive,
                segment_id=content.GetSegmentIdBySegmentName(entry.name), heatmap=heatmap))
        mrml.parentUnderStudy([self.segmentation] + [r.heatmap for r in self.findings],
                              inputVolume)
        self._tracker = mrml.EditTracker(self.segmentation, inputVolume)
        parameters.segmentation = self.segmentation
        parameters.heatmaps = [row.heatmap for row in self.findings]
        parameters.results = {"model": self.model, "mask_rule": self.maskRule.to_dict(),
                              "spacing_known": self.spacingKnown,
                              "findings": [row.record() for row in self.findings]}
        if segmentationFile is None:  # the engine's masks, as its .seg.nrrd holds them
            self._tracker.expectCurrent()
            self.measure()
        else:
            self.setMaskRuleValue(self.maskRule.value)
        self.showFinding(self.findings[0].name)

    def restoreResults(self) -> bool:
        """Take up the results recorded in the parameter node (a scene loaded from a
        file); False when there are none, or their nodes are gone."""
        from CXRWeakLocLib.core.masks import MaskRule

        parameters = self.parameters
        results, segmentation = parameters.results, parameters.segmentation
        inputVolume, heatmaps = parameters.inputVolume, parameters.heatmaps
        if (not results or segmentation is None or inputVolume is None
                or None in heatmaps or len(heatmaps) != len(results["findings"])):
            return False
        self.clearResults()
        self.inputVolume, self.segmentation = inputVolume, segmentation
        self.model = results["model"]
        self.spacingKnown = results["spacing_known"]
        self.maskRule = MaskRule(**results["mask_rule"])
        self.findings = [FindingRow(**entry, heatmap=heatmap)
                         for entry, heatmap in zip(results["findings"], heatmaps, strict=True)]
        self._tracker = mrml.EditTracker(segmentation, inputVolume)
        self._tracker.expectCurrent()
        self.measure()
        return True

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
        self.parameters.threshold = rule.value
        kept = []
        for row in self.findings:
            if self._tracker.edited(row.segment_id):
                kept.append(row.name)
                continue
            mask = apply_mask_rule(mrml.heatmapOnInput(row.heatmap, self.inputVolume), rule)
            with self._tracker.writing():
                mrml.setSegmentMask(self.segmentation, row.segment_id, mask, self.inputVolume)
            self._tracker.expect(row.segment_id, mask)
        self.measure()
        return kept

    def measure(self) -> None:
        """Each row's mask area, from the segment as it is now (edits included)."""
        spacing = self.inputVolume.GetSpacing()
        for row in self.findings:
            mask = mrml.segmentMask(self.segmentation, row.segment_id, self.inputVolume)
            row.area_px = int(mask.sum())
            row.area_mm2 = row.area_px * spacing[0] * spacing[1] if self.spacingKnown else None

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
        """Write the current masks (edits included) as ``.seg.nrrd`` with the engine's
        writer, in the input volume's geometry; the scene is not modified."""
        from CXRWeakLocLib.export.seg_nrrd import write_segmentation

        if self.segmentation is None:
            raise RuntimeError(_("no segmentation to export"))
        result, geometry = self._localizationResult(), mrml.radiographGeometry(self.inputVolume)
        with _replacedWhole(Path(path)) as partial:
            write_segmentation(result, geometry, partial)
        return Path(path)

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
        from CXRWeakLocLib.core.radiograph import read_radiograph
        from CXRWeakLocLib.export.dicom_seg import write_dicom_seg

        source = self._dicomSource()
        if self.segmentation is None or source is None:
            raise RuntimeError(_("DICOM-SEG needs results of an input from a DICOM file"))
        result, radiograph = self._localizationResult(), read_radiograph(source)
        with _replacedWhole(Path(path)) as partial:
            write_dicom_seg(result, radiograph, partial)
        return Path(path)

    def _localizationResult(self):
        """The current masks (edits included) as the engine's LocalizationResult; segments
        that are not the model's findings (added by hand) are named in the log."""
        from CXRWeakLocLib.core.findings import finding_by_name
        from CXRWeakLocLib.core.masks import mask_boxes
        from CXRWeakLocLib.core.results import FindingResult, LocalizationResult

        content = self.segmentation.GetSegmentation()
        ours = {row.segment_id for row in self.findings}
        others = [content.GetNthSegment(i).GetName() for i in range(content.GetNumberOfSegments())
                  if content.GetNthSegmentID(i) not in ours]
        if others:
            self.onLog(_("Not exported (not a finding of the model): {names}").format(
                names=", ".join(others)))
        results = []
        for row in self.findings:
            mask = mrml.segmentMask(self.segmentation, row.segment_id, self.inputVolume)
            results.append(FindingResult(
                finding_by_name(row.name), row.probability, row.threshold,
                heatmap=mrml.heatmapOnInput(row.heatmap, self.inputVolume),
                mask=mask, boxes=mask_boxes(mask),
                algorithm_type=mrml.segmentTag(content.GetSegment(row.segment_id),
                                               mrml.ALGORITHM_TYPE_TAG)))
        return LocalizationResult(self.model["name"], self.model["version"],
                                  self.model["method"], self.maskRule, results)
