"""The panel: the .ui's widgets wired to an injected logic and dependency installer.

Written for PythonQt (Qt properties as attributes, as in every Slicer module). The
panel keeps no results of its own: the logic holds them and the parameter node
keeps them with the scene, so a loaded scene shows its results again.
"""

from __future__ import annotations

from pathlib import Path

import qt
import slicer
from slicer.util import VTKObservationMixin

from . import catalog, mrml
from .dependencies import Dependencies
from .i18n import tr as _
from .logic import LocalizationLogic, State

__all__ = ["MODEL_FOLDERS_SETTING", "Panel"]

MODEL_FOLDERS_SETTING = "CXRWeakLoc/ModelFolders"
POLL_INTERVAL_MS = 200


class Panel(VTKObservationMixin):
    """Drives the widgets of ``CXRWeakLoc.ui`` (``uiWidget``) with ``logic``."""

    def __init__(self, uiWidget, logic: LocalizationLogic, dependencies: Dependencies) -> None:
        VTKObservationMixin.__init__(self)
        self.widget = uiWidget
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        self.logic = logic
        self.dependencies = dependencies
        self.batchFolders: dict[str, str] = {}  # the folders the user chose, by role
        logic.onLog, logic.onProgress = self.log, self.onProgress
        logic.onState, logic.onStage = self.onState, self.onStage
        self.timer = qt.QTimer()
        self.timer.setInterval(POLL_INTERVAL_MS)
        self.timer.timeout.connect(self.logic.poll)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        ui = self.ui
        ui.inputVolumeSelector.currentNodeChanged.connect(self.updateButtons)
        ui.inputVolumeSelector.nodeActivated.connect(self.onInputChosen)
        ui.loadSampleButton.clicked.connect(self.onLoadSample)
        ui.modelComboBox.currentIndexChanged.connect(self.onChoiceChanged)
        ui.findingsComboBox.currentTextChanged.connect(self.onChoiceChanged)
        ui.deviceComboBox.currentIndexChanged.connect(self.onChoiceChanged)
        ui.addModelButton.clicked.connect(self.onAddModel)
        ui.applyButton.clicked.connect(self.onApply)
        ui.findingsTable.itemSelectionChanged.connect(self.onFindingSelected)
        ui.thresholdSlider.valueChanged.connect(self.onThreshold)
        ui.resetThresholdButton.clicked.connect(self.onResetThreshold)
        ui.opacitySlider.valueChanged.connect(self.logic.setHeatmapOpacity)
        ui.exportSegButton.clicked.connect(self.onExportSeg)
        ui.exportDicomSegButton.clicked.connect(self.onExportDicomSeg)
        ui.batchInputDirectory.directorySelected.connect(
            lambda folder: self.onBatchFolder("input", folder))
        ui.batchOutputDirectory.directorySelected.connect(
            lambda folder: self.onBatchFolder("output", folder))
        ui.batchRunButton.clicked.connect(self.onBatch)
        ui.installButton.clicked.connect(self.onInstall)
        scene = slicer.mrmlScene
        self.addObserver(scene, scene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(scene, scene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(scene, scene.EndImportEvent, self.onSceneEndImport)

        self.fillModels()
        self.fillDevices()
        self.fillDependencies()
        self.onSceneEndImport()

    def cleanup(self) -> None:
        self.timer.stop()
        self.logic.cleanup()
        self.removeObservers()

    # --- scene --------------------------------------------------------------------

    def onSceneStartClose(self, caller=None, event=None) -> None:
        self.logic.cancel()
        self.logic.clearResults()
        self.fillTable()

    def onSceneEndClose(self, caller=None, event=None) -> None:
        self.restoreChoices()
        self.updateButtons()

    def onSceneEndImport(self, caller=None, event=None) -> None:
        """A scene was loaded (or the panel opened): its choices and results, if any."""
        self.restoreChoices()
        if self.logic.restoreResults():
            self.showResults()
        self.hideHeatmapsFromSelector()
        self.updateButtons()

    def hideHeatmapsFromSelector(self) -> None:
        proxy = self.ui.inputVolumeSelector.sortFilterProxyModel()
        proxy.hiddenNodeIDs = mrml.heatmapNodeIDs(slicer.mrmlScene)

    # --- choices ------------------------------------------------------------------

    def restoreChoices(self) -> None:
        """The parameter node's choices into the widgets (theirs are kept where unset)."""
        parameters = self.logic.parameters  # read all first: setting one writes them back
        volume, findings = parameters.inputVolume, parameters.findings
        choices = ((self.ui.modelComboBox, parameters.model),
                   (self.ui.deviceComboBox, parameters.device))
        if volume is not None:
            self.ui.inputVolumeSelector.setCurrentNode(volume)
        for combo, value in choices:
            index = combo.findData(value)
            if index >= 0:
                combo.currentIndex = index
        self.ui.findingsComboBox.setCurrentText(findings)

    def onInputChosen(self, node) -> None:
        """The user picked a radiograph (the selector's own choices, e.g. the first volume
        of a scene being loaded, are not recorded)."""
        self.logic.parameters.inputVolume = node

    def onChoiceChanged(self, *args) -> None:
        model, findings, device = self.engineArguments()
        parameters = self.logic.parameters
        parameters.findings = findings
        if model:
            parameters.model = model
        if device:
            parameters.device = device
        self.updateButtons()

    def modelFolders(self) -> list[str]:
        folders = qt.QSettings().value(MODEL_FOLDERS_SETTING) or []
        return [folders] if isinstance(folders, str) else list(folders)

    def fillModels(self) -> None:
        combo = self.ui.modelComboBox
        combo.blockSignals(True)
        combo.clear()
        for entry in catalog.findModels(map(Path, self.modelFolders())):
            combo.addItem(entry.name, str(entry.folder))
            combo.setItemData(combo.count - 1, entry.tooltip, qt.Qt.ToolTipRole)
        combo.blockSignals(False)

    def onAddModel(self) -> None:
        folder = qt.QFileDialog.getExistingDirectory(self.widget, _("Model folder"))
        if not folder:
            return
        try:
            entry = catalog.readModelEntry(Path(folder))
        except ValueError as error:
            slicer.util.errorDisplay(str(error))
            return
        qt.QSettings().setValue(MODEL_FOLDERS_SETTING, [folder, *self.modelFolders()])
        self.fillModels()
        self.ui.modelComboBox.currentIndex = self.ui.modelComboBox.findText(entry.name)

    def fillDevices(self) -> None:
        devices, note = catalog.availableDevices()
        self.ui.deviceComboBox.blockSignals(True)
        self.ui.deviceComboBox.clear()
        for device in devices:
            self.ui.deviceComboBox.addItem(device.label, device.value)
        self.ui.deviceComboBox.blockSignals(False)
        self.ui.deviceNoteLabel.text = note

    def engineArguments(self) -> tuple[str, str, str]:
        """Model folder, findings and device as chosen."""
        return (self.ui.modelComboBox.currentData or "", self.ui.findingsComboBox.currentText,
                self.ui.deviceComboBox.currentData or "")

    # --- dependencies -------------------------------------------------------------

    def fillDependencies(self) -> None:
        status = self.dependencies.status()
        table = self.ui.dependenciesTable
        table.setRowCount(len(status))
        for row, package in enumerate(status):
            installed = package.installed or _("not installed")
            for column, text in enumerate((package.requirement.name,
                                           str(package.requirement.specifier), installed)):
                table.setItem(row, column, qt.QTableWidgetItem(text))
        missing = [s.requirement.name for s in status if not s.satisfied]
        self.ui.dependenciesNoteLabel.text = self.dependencies.pythonProblem() or (
            _("Missing or too old: {names}. Install now, or on the first Apply.").format(
                names=", ".join(missing)) if missing else _("Everything the engine needs is "
                                                           "installed."))

    def ensureReady(self) -> bool:
        """Dependencies installed (after asking); False if not, or if Slicer must restart."""
        try:
            restart = self.dependencies.ensure(slicer.util.confirmOkCancelDisplay)
        except Exception as error:
            slicer.util.errorDisplay(_("Dependencies are missing: {error}").format(error=error))
            return False
        finally:
            self.fillDependencies()
        if restart:
            if slicer.util.confirmYesNoDisplay(_(
                    "Packages already in use were replaced: Slicer must restart before the "
                    "model can run. Restart now?")):
                slicer.util.restart()
            return False
        return True

    def onInstall(self) -> None:
        if self.ensureReady():
            self.log(_("Everything the engine needs is installed."))

    # --- running ------------------------------------------------------------------

    def log(self, line: str) -> None:
        self.ui.logTextEdit.appendPlainText(line)

    def onProgress(self, fraction: float) -> None:
        self.ui.progressBar.value = int(round(fraction * 100))

    def onStage(self, text: str) -> None:
        self.ui.progressBar.format = f"{text} %p%" if self.logic.batch else text

    def updateButtons(self, *args) -> None:
        ui, busy = self.ui, self.logic.state.busy
        ui.applyButton.text = _("Cancel") if busy else _("Apply")
        ui.applyButton.enabled = busy or (
            ui.inputVolumeSelector.currentNode() is not None and ui.modelComboBox.count > 0)
        ui.loadSampleButton.enabled = not busy
        ui.installButton.enabled = not busy
        ui.batchRunButton.enabled = not busy and len(self.batchFolders) == 2
        hasResults = self.logic.segmentation is not None
        ui.exportSegButton.enabled = hasResults
        ui.exportDicomSegButton.enabled = hasResults and self.logic.canExportDicomSeg()
        ui.thresholdSlider.enabled = hasResults and self.logic.maskRule.kind.adjustable
        ui.resetThresholdButton.enabled = ui.thresholdSlider.enabled

    def onState(self, state: State) -> None:
        self.log(state.value)
        bar = self.ui.progressBar
        if state == State.RUNNING:
            bar.setRange(0, 100 if self.logic.batch else 0)  # 0 to 0: busy, no percentage
            bar.value = 0
            self.timer.start()
        elif not state.busy:
            self.timer.stop()
            bar.setRange(0, 100)
            bar.value = 100 if state == State.FINISHED else 0
            bar.format = {State.FINISHED: _("Finished"), State.CANCELLED: _("Cancelled"),
                          State.FAILED: _("Failed")}.get(state, "")
        if state == State.FAILED:
            slicer.util.errorDisplay(_("CXRWeakLoc failed: {error}").format(error=self.logic.error))
        if state == State.FINISHED:
            self.showResults()
        self.updateButtons()

    def onApply(self) -> None:
        if self.logic.state.busy:
            self.logic.cancel()
            return
        if not self.ensureReady():
            return
        self.ui.logTextEdit.clear()
        with slicer.util.tryWithErrorDisplay(_("Could not start the model."), waitCursor=True):
            self.logic.start(self.ui.inputVolumeSelector.currentNode(), *self.engineArguments())

    def onLoadSample(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not load the sample."), waitCursor=True):
            volume = self.logic.loadSample()
            self.ui.inputVolumeSelector.setCurrentNode(volume)
            slicer.util.setSliceViewerLayers(background=volume, foreground=None, fit=True)

    def onBatchFolder(self, role: str, folder: str) -> None:
        self.batchFolders[role] = folder
        self.updateButtons()

    def onBatch(self) -> None:
        """Run the batch after checking the folders and confirming the count."""
        inputFolder, outputFolder = (self.batchFolders.get(r) for r in ("input", "output"))
        try:
            files = self.logic.batchInputs(inputFolder, outputFolder)
        except ValueError as error:
            slicer.util.errorDisplay(str(error))
            return
        if not slicer.util.confirmOkCancelDisplay(
                _("Localise {count} radiographs found in {input} and write the results to "
                  "{output}?").format(count=len(files), input=inputFolder, output=outputFolder)):
            return
        if not self.ensureReady():
            return
        with slicer.util.tryWithErrorDisplay(_("Could not start the batch."), waitCursor=True):
            self.logic.startBatch(Path(inputFolder), Path(outputFolder), *self.engineArguments())

    # --- reviewing ----------------------------------------------------------------

    def showResults(self) -> None:
        """Slider at the rule's range and current value, the table, the first finding."""
        rule, slider = self.logic.maskRule, self.ui.thresholdSlider
        threshold = self.logic.parameters.threshold
        if rule is not None:
            slider.blockSignals(True)
            slider.minimum, slider.maximum = rule.kind.low, rule.kind.high
            slider.value = rule.value if threshold is None else threshold
            slider.blockSignals(False)
        self.fillTable()
        self.hideHeatmapsFromSelector()
        if self.logic.findings:
            self.ui.findingsTable.selectRow(0)

    def fillTable(self) -> None:
        table = self.ui.findingsTable
        table.setRowCount(len(self.logic.findings))
        for index, row in enumerate(self.logic.findings):
            for column, text in enumerate((row.name, f"{row.probability:.3f}", row.areaText)):
                table.setItem(index, column, qt.QTableWidgetItem(text))

    def onFindingSelected(self) -> None:
        rows = self.ui.findingsTable.selectionModel().selectedRows()
        if rows:
            name = self.logic.findings[rows[0].row()].name
            self.logic.showFinding(name, self.ui.opacitySlider.value)

    def onResetThreshold(self) -> None:
        """The slider back to the card's value (re-thresholds through onThreshold)."""
        if self.logic.maskRule is not None:
            self.ui.thresholdSlider.value = self.logic.maskRule.value

    def onThreshold(self, value: float) -> None:
        kept = self.logic.setMaskRuleValue(value)
        if kept:
            self.log(_("Kept the hand-edited masks of {names}.").format(names=", ".join(kept)))
        self.fillTable()

    def onExportSeg(self) -> None:
        self.exportTo(_("Export segmentation"), _("Segmentation (*.seg.nrrd)"),
                      self.logic.exportSegmentation)

    def onExportDicomSeg(self) -> None:
        self.exportTo(_("Export DICOM-SEG"), _("DICOM (*.dcm)"), self.logic.exportDicomSeg)

    def exportTo(self, title: str, fileFilter: str, write) -> None:
        """Ask for a file name, then ``write(path)`` it and log where it went."""
        path = qt.QFileDialog.getSaveFileName(self.widget, title, "", fileFilter)
        if path:
            with slicer.util.tryWithErrorDisplay(_("Export failed."), waitCursor=True):
                self.log(_("Wrote {path}").format(path=write(Path(path))))
