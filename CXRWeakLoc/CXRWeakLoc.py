"""CXRWeakLoc: weakly-supervised localisation of chest X-ray findings in 3D Slicer.

The module file stays thin: the logic lives in ``CXRWeakLocModuleLib`` (runs without
Qt, tested with slicer-core) and the engine in ``CXRWeakLocLib`` (no Slicer at all).
"""

from __future__ import annotations

import unittest
from pathlib import Path

import qt
import slicer
from CXRWeakLocModuleLib import catalog
from CXRWeakLocModuleLib.dependencies import ensureDependencies
from CXRWeakLocModuleLib.logic import ENGINE_ROOT, LocalizationLogic, State
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

SHIPPED_MODELS = ENGINE_ROOT / "Resources" / "Models"
MODEL_FOLDERS_SETTING = "CXRWeakLoc/ModelFolders"
POLL_INTERVAL_MS = 200


class CXRWeakLoc(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "CXR Weak Localization"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["CXRWeakLoc developers"]
        self.parent.helpText = """
Localises findings on a chest radiograph with a weakly-supervised model (CAM, Grad-CAM):
a heatmap and an editable mask per finding, exported as .seg.nrrd or DICOM-SEG.
Research use only; not for diagnosis.
"""
        self.parent.acknowledgementText = """
Built on PyTorch, MONAI, highdicom and slicerio. Models trained on NIH ChestX-ray14.
"""


class CXRWeakLocLogic(ScriptedLoadableModuleLogic, LocalizationLogic):
    """The module logic (see ``CXRWeakLocModuleLib.logic``); usable without the widget."""

    def __init__(self, **callbacks):
        ScriptedLoadableModuleLogic.__init__(self)
        LocalizationLogic.__init__(self, **callbacks)


class CXRWeakLocWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.timer = qt.QTimer()
        self.timer.setInterval(POLL_INTERVAL_MS)

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/CXRWeakLoc.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = CXRWeakLocLogic(onLog=self.log, onProgress=self.onProgress,
                                     onState=self.onState)
        self.timer.timeout.connect(self.logic.poll)

        self.ui.inputVolumeSelector.currentNodeChanged.connect(self.updateButtons)
        self.ui.addModelButton.clicked.connect(self.onAddModel)
        self.ui.applyButton.clicked.connect(self.onApply)
        self.ui.findingsTable.itemSelectionChanged.connect(self.onFindingSelected)
        self.ui.thresholdSlider.valueChanged.connect(self.onThreshold)
        self.ui.resetThresholdButton.clicked.connect(self.onResetThreshold)
        self.ui.opacitySlider.valueChanged.connect(self.logic.setHeatmapOpacity)
        self.ui.exportSegButton.clicked.connect(self.onExportSeg)
        self.ui.exportDicomSegButton.clicked.connect(self.onExportDicomSeg)
        self.ui.batchRunButton.clicked.connect(self.onBatch)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneClose)

        self.fillModels()
        self.fillDevices()
        self.updateButtons()

    def cleanup(self):
        self.logic.cancel()
        self.timer.stop()
        self.removeObservers()

    def onSceneClose(self, caller=None, event=None):
        self.logic.cancel()
        self.logic.clearResults()
        self.fillTable()

    # --- choices ------------------------------------------------------------------

    def modelFolders(self) -> list[str]:
        folders = qt.QSettings().value(MODEL_FOLDERS_SETTING) or []
        return [folders] if isinstance(folders, str) else list(folders)

    def fillModels(self):
        self.ui.modelComboBox.clear()
        for entry in catalog.findModels([*map(Path, self.modelFolders()), SHIPPED_MODELS]):
            self.ui.modelComboBox.addItem(entry.name, str(entry.folder))
            index = self.ui.modelComboBox.count - 1
            self.ui.modelComboBox.setItemData(index, entry.tooltip, qt.Qt.ToolTipRole)

    def onAddModel(self):
        folder = qt.QFileDialog.getExistingDirectory(self.parent, "Model folder")
        if not folder:
            return
        try:
            catalog.readModelEntry(Path(folder))
        except ValueError as error:
            slicer.util.errorDisplay(str(error))
            return
        qt.QSettings().setValue(MODEL_FOLDERS_SETTING, [folder, *self.modelFolders()])
        self.fillModels()

    def fillDevices(self):
        devices, note = catalog.availableDevices()
        self.ui.deviceComboBox.clear()
        for device in devices:
            self.ui.deviceComboBox.addItem(device.label, device.value)
        self.ui.deviceNoteLabel.text = note

    # --- running ------------------------------------------------------------------

    def log(self, line: str):
        self.ui.logTextEdit.appendPlainText(line)

    def onProgress(self, fraction: float):
        self.ui.progressBar.value = int(round(fraction * 100))

    def updateButtons(self, *args):
        busy = self.logic.state.busy
        self.ui.applyButton.text = "Cancel" if busy else "Apply"
        self.ui.applyButton.enabled = busy or (
            self.ui.inputVolumeSelector.currentNode() is not None
            and self.ui.modelComboBox.count > 0)
        self.ui.batchRunButton.enabled = not busy
        hasResults = self.logic.segmentation is not None
        self.ui.exportSegButton.enabled = hasResults
        self.ui.exportDicomSegButton.enabled = hasResults and self.logic.canExportDicomSeg()
        self.ui.thresholdSlider.enabled = hasResults and self.logic.maskRule.name != "otsu"
        self.ui.resetThresholdButton.enabled = self.ui.thresholdSlider.enabled

    def onState(self, state: State):
        self.log(f"{state.value}")
        if state.busy:
            self.timer.start()
        else:
            self.timer.stop()
            self.ui.progressBar.value = 100 if state == State.FINISHED else 0
        if state == State.FAILED:
            slicer.util.errorDisplay(f"CXRWeakLoc failed: {self.logic.error}")
        if state == State.FINISHED:
            self.showResults()
        self.updateButtons()

    def engineArguments(self) -> tuple[str, str, str]:
        return (self.ui.modelComboBox.currentData, self.ui.findingsComboBox.currentText,
                self.ui.deviceComboBox.currentData)

    def ensureReady(self) -> bool:
        try:
            with slicer.util.WaitCursor():
                ensureDependencies(slicer.util.confirmOkCancelDisplay)
        except Exception as error:
            slicer.util.errorDisplay(f"Dependencies are missing: {error}")
            return False
        return True

    def onApply(self):
        if self.logic.state.busy:
            self.logic.cancel()
            return
        if not self.ensureReady():
            return
        self.ui.logTextEdit.clear()
        with slicer.util.tryWithErrorDisplay("Could not start the model.", waitCursor=True):
            self.logic.start(self.ui.inputVolumeSelector.currentNode(), *self.engineArguments())

    def onBatch(self):
        if not self.ensureReady():
            return
        with slicer.util.tryWithErrorDisplay("Could not start the batch.", waitCursor=True):
            self.logic.startBatch(Path(self.ui.batchInputDirectory.directory),
                                  Path(self.ui.batchOutputDirectory.directory),
                                  *self.engineArguments())

    # --- reviewing ----------------------------------------------------------------

    def showResults(self):
        rule = self.logic.maskRule
        if rule is not None:
            self.ui.thresholdSlider.blockSignals(True)
            self.ui.thresholdSlider.maximum = 5.0 if rule.name == "mean_plus_k_std" else 1.0
            self.ui.thresholdSlider.value = rule.value
            self.ui.thresholdSlider.blockSignals(False)
        self.fillTable()
        if self.logic.findings:
            self.ui.findingsTable.selectRow(0)

    def fillTable(self):
        table = self.ui.findingsTable
        table.setRowCount(len(self.logic.findings))
        for index, row in enumerate(self.logic.findings):
            area = f"{row.area_px} px"
            if row.area_mm2 is not None:
                area += f" ({row.area_mm2 / 100:.1f} cm²)"
            for column, text in enumerate((row.name, f"{row.probability:.3f}", area)):
                table.setItem(index, column, qt.QTableWidgetItem(text))

    def onFindingSelected(self):
        rows = self.ui.findingsTable.selectionModel().selectedRows()
        if rows:
            name = self.logic.findings[rows[0].row()].name
            self.logic.showFinding(name, self.ui.opacitySlider.value)

    def onResetThreshold(self):
        """The slider back to the card's value (re-thresholds through onThreshold)."""
        if self.logic.maskRule is not None:
            self.ui.thresholdSlider.value = self.logic.maskRule.value

    def onThreshold(self, value: float):
        kept = self.logic.setMaskRuleValue(value)
        if kept:
            self.log(f"Kept the hand-edited masks of {', '.join(kept)}.")
        self.fillTable()

    def onExportSeg(self):
        self.exportTo("Export segmentation", "Segmentation (*.seg.nrrd)",
                      self.logic.exportSegmentation)

    def onExportDicomSeg(self):
        self.exportTo("Export DICOM-SEG", "DICOM (*.dcm)", self.logic.exportDicomSeg)

    def exportTo(self, title: str, fileFilter: str, write) -> None:
        """Ask for a file name, then ``write(path)`` it and log where it went."""
        path = qt.QFileDialog.getSaveFileName(self.parent, title, "", fileFilter)
        if path:
            with slicer.util.tryWithErrorDisplay("Export failed.", waitCursor=True):
                self.log(f"Wrote {write(Path(path))}")


class CXRWeakLocTest(ScriptedLoadableModuleTest):
    """Self-test in the Slicer application: a synthetic radiograph through a shipped model."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_localize_and_rethreshold()

    def test_localize_and_rethreshold(self):
        import numpy as np

        models = catalog.findModels([SHIPPED_MODELS])
        if not models:
            raise unittest.SkipTest("no shipped model in Resources/Models")
        ensureDependencies(lambda question: True)
        volume = slicer.util.addVolumeFromArray(
            np.random.default_rng(0).random((1, 256, 256), dtype=np.float32), name="cxr")
        logic = CXRWeakLocLogic()
        logic.start(volume, str(models[0].folder), "all", "cpu")
        self.assertEqual(logic.wait(timeout=600), State.FINISHED, logic.error)
        self.assertEqual(len(logic.findings),
                         logic.segmentation.GetSegmentation().GetNumberOfSegments())
        before = sum(row.area_px for row in logic.findings)
        logic.setMaskRuleValue(0.95)
        self.assertLessEqual(sum(row.area_px for row in logic.findings), before)
        self.delayDisplay("Test passed")
