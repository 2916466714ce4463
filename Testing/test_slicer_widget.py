"""The module's real panel, built from its .ui, driven as a user drives it.

Qt is PySide6 offscreen with the stand-ins of ``slicer_app.py`` for what only the Slicer
application provides (CTK/qMRML widgets, PythonQt's ``qt``, ``slicer.app``, dialogs);
the scene is slicer-core's and the engine runs in its own process, as in Slicer. The
logic and the dependency installer are the module's own, given to the widget. The
radiographs are the module's synthetic sample, as PNG and as a DICOM file made here,
so nothing is skipped without ../shared/data.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import slicer_app  # the stand-ins, before the module is imported
from conftest import REPO
from slicer_scene import slicer_scene
from test_radiograph import make_dicom
from test_slicer_module import CAM, FINDINGS, MODULE_DIR, _save_scene, _shrinking_value

from CXRWeakLocLib.core.masks import apply_mask_rule

sys.path.insert(0, str(MODULE_DIR))

#: Set to a path to keep the picture of the panel in review (the README's).
SCREENSHOT_ENV = "CXRWEAKLOC_SCREENSHOT"


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """slicer-core's scene with a slice view's layers, ``slicer.app`` and recorded dialogs."""
    import slicer

    slicer_app.application(tmp_path_factory.mktemp("settings"))
    with slicer_scene() as scene:
        scene.scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
        application, dialogs = slicer_app.start_app(slicer.vtkSlicerTerminologiesModuleLogic())
        try:
            yield scene, application, dialogs
        finally:
            slicer_app.stop_app()


@pytest.fixture(scope="module")
def sample_dicom(tmp_path_factory) -> Path:
    """The synthetic sample as a DX DICOM file with a pixel spacing (for DICOM-SEG)."""
    from CXRWeakLocModuleLib.logic import SAMPLE_FILE
    from PIL import Image
    from pydicom.uid import generate_uid

    return make_dicom(
        tmp_path_factory.mktemp("dicom") / "synthetic.dcm", np.asarray(Image.open(SAMPLE_FILE)),
        SOPInstanceUID=generate_uid(), PixelSpacing=[0.6, 0.6], PatientOrientation=["L", "F"],
        PatientBirthDate="", PatientSex="O", StudyDate="20260101", StudyTime="120000",
        AccessionNumber="", ReferringPhysicianName="", StudyID="1", SeriesNumber=1,
        InstanceNumber=1)


@pytest.fixture
def build(session):
    """``build(dependencies=None)``: the module's widget, scripted-style (no parent), with
    the module's logic running the engine with this Python; cleaned up after the test."""
    from CXRWeakLocModuleLib.dependencies import Dependencies

    import CXRWeakLoc

    widgets = []

    def make(dependencies=None):
        widget = CXRWeakLoc.CXRWeakLocWidget(
            logic=CXRWeakLoc.CXRWeakLocLogic(python=sys.executable),
            dependencies=dependencies or Dependencies())
        widgets.append(widget)
        return widget

    yield make
    for widget in widgets:
        widget.cleanup()
        widget.parent.close()


def wait_for(condition, timeout: float = 300.0) -> None:
    """Let Qt run (the panel's timer polls the engine) until ``condition()`` holds."""
    from qtpy.QtWidgets import QApplication

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        QApplication.processEvents()
        time.sleep(0.02)


def rows(table) -> list[list[str]]:
    return [[table.item(r, c).text() for c in range(table.columnCount)]
            for r in range(table.rowCount)]


def segment_masks(logic) -> dict[str, np.ndarray]:
    from CXRWeakLocModuleLib import mrml

    return {r.name: mrml.segmentMask(logic.segmentation, r.segment_id, logic.inputVolume)
            for r in logic.findings}


def test_widget_without_a_parent_builds_its_own(build):
    """Bug 7: ``CXRWeakLocWidget()`` (scripted use) raised AttributeError 'timer'."""
    widget = build()
    assert widget.parent.isVisible()
    assert widget.panel.ui.applyButton.text == "Apply"


def test_user_run_through(session, build, sample_dicom, tmp_path):
    """Load -> Apply -> the timer sees the run through -> table -> slider -> Measured ->
    opacity -> both exports -> Cancel keeps the results -> batch with its guards -> scene
    close -> the saved scene loads back into the panel."""
    import pydicom
    import slicer
    import slicerio
    from CXRWeakLocModuleLib import mrml
    from CXRWeakLocModuleLib.logic import SAMPLE_FILE, State
    from slicer_app import FileDialog

    scene, application, dialogs = session
    started = time.monotonic()
    widget = build()
    panel, logic = widget.panel, widget.logic
    ui = panel.ui
    assert not ui.applyButton.enabled and not ui.batchRunButton.enabled

    # load: the sample button, then a DICOM radiograph as a user opens one
    ui.loadSampleButton.click()
    assert ui.inputVolumeSelector.currentNode().GetAttribute("CXRWeakLoc.SourceFile") == str(
        SAMPLE_FILE)
    volume = logic.loadRadiograph(sample_dicom)
    ui.inputVolumeSelector.choose(volume)
    ui.modelComboBox.currentIndex = ui.modelComboBox.findText("cam")
    ui.findingsComboBox.setCurrentText(",".join(FINDINGS))
    ui.deviceComboBox.currentIndex = ui.deviceComboBox.findData("cpu")
    assert ui.applyButton.enabled

    # Apply: a single image runs with a busy bar and the engine's stages as its text
    stages = []
    showStage = logic.onStage
    logic.onStage = lambda text: (stages.append(text), showStage(text))
    ui.applyButton.click()
    assert ui.applyButton.text == "Cancel" and logic.state == State.RUNNING
    assert (ui.progressBar.minimum, ui.progressBar.maximum) == (0, 0)
    assert ui.progressBar.format == "Loading the model"
    wait_for(lambda: not logic.state.busy)
    assert logic.state == State.FINISHED, logic.error
    assert [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s] == [
        "Loading the model", "Reading", "Localising", "Writing results", "Importing results"]
    assert (ui.progressBar.maximum, ui.progressBar.value, ui.progressBar.format) == (
        100, 100, "Finished")
    assert ui.applyButton.text == "Apply" and ui.exportDicomSegButton.enabled

    # table filled, first finding shown, heatmaps kept out of the Radiograph selector
    table = rows(ui.findingsTable)
    assert [r[0] for r in table] == [r.name for r in logic.findings] == list(FINDINGS)
    assert [r[1] for r in table] == [f"{r.probability:.3f}" for r in logic.findings]
    assert all(r[2].startswith(f"{f.area_px} px (") for r, f in zip(table, logic.findings,
                                                                       strict=True))
    layers = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSliceCompositeNode")
    assert layers.GetForegroundVolumeID() == logic.findings[0].heatmap.GetID()
    listed = [ui.inputVolumeSelector.itemText(i) for i in range(ui.inputVolumeSelector.count)]
    assert listed == ["Synthetic chest (sample)", "synthetic"]

    # the slider re-thresholds every finding; Measured puts the card's value back
    rule = logic.maskRule
    assert (ui.thresholdSlider.minimum, ui.thresholdSlider.maximum) == (
        rule.kind.low, rule.kind.high)
    measured = {r.name: r.area_px for r in logic.findings}
    ui.thresholdSlider.value = _shrinking_value(rule)
    shrunk = segment_masks(logic)
    for row in logic.findings:
        heatmap = mrml.heatmapOnInput(row.heatmap, logic.inputVolume)
        assert np.array_equal(shrunk[row.name], apply_mask_rule(
            heatmap, rule.with_value(ui.thresholdSlider.value)))
    assert sum(m.sum() for m in shrunk.values()) < sum(measured.values())
    assert [r[2] for r in rows(ui.findingsTable)] != [r[2] for r in table]
    ui.resetThresholdButton.click()
    assert ui.thresholdSlider.value == rule.value
    assert {r.name: r.area_px for r in logic.findings} == measured
    assert rows(ui.findingsTable) == table

    # opacity of the heatmap layer
    ui.opacitySlider.value = 0.7
    assert layers.GetForegroundOpacity() == pytest.approx(0.7)

    # both exports, read back by Slicer's storage node, slicerio and pydicom
    FileDialog.answers = [tmp_path / "review.seg.nrrd", tmp_path / "review.SEG.dcm"]
    ui.exportSegButton.click()
    ui.exportDicomSegButton.click()
    masks = segment_masks(logic)
    shape = masks[FINDINGS[0]].shape
    read = scene.segment_masks(scene.read_segmentation(tmp_path / "review.seg.nrrd"), shape)
    assert all(np.array_equal(read[name], mask) for name, mask in masks.items())
    assert {s["tags"]["DICOM.SegmentAlgorithmType"] for s in slicerio.read_segmentation(
        str(tmp_path / "review.seg.nrrd"))["segments"]} == {"AUTOMATIC"}
    seg = pydicom.dcmread(tmp_path / "review.SEG.dcm")
    assert [s.SegmentLabel for s in seg.SegmentSequence] == list(FINDINGS)
    assert f"Wrote {tmp_path / 'review.SEG.dcm'}" in ui.logTextEdit.toPlainText()

    # the picture of the panel in review (README)
    widget.parent.resize(420, 980)
    picture = widget.parent.grab()
    picture.save(str(tmp_path / "panel.png"))
    assert picture.width() == 420 and len(set(_pixels(tmp_path / "panel.png"))) > 50
    if os.environ.get(SCREENSHOT_ENV):
        picture.save(os.environ[SCREENSHOT_ENV])

    # Cancel mid-run keeps the previous results
    segmentation = logic.segmentation
    ui.applyButton.click()
    wait_for(lambda: logic._run is not None and logic._run.process.running, 30)
    ui.applyButton.click()
    assert logic.state == State.CANCELLED and ui.progressBar.format == "Cancelled"
    assert logic.segmentation is segmentation and rows(ui.findingsTable) == table
    assert all(np.array_equal(m, masks[n]) for n, m in segment_masks(logic).items())

    # batch: both folders chosen, output not inside input, the count confirmed
    inputs = tmp_path / "batch"
    inputs.mkdir()
    for image in (SAMPLE_FILE, sample_dicom):
        (inputs / image.name).symlink_to(image)
    ui.batchInputDirectory.choose(inputs)
    assert not ui.batchRunButton.enabled  # no output folder chosen yet
    ui.batchOutputDirectory.choose(inputs / "results")
    ui.batchRunButton.click()
    assert "inside the input folder" in dialogs.texts("error")[-1]
    ui.batchOutputDirectory.choose(tmp_path / "results")
    dialogs.answers = [False]
    ui.batchRunButton.click()
    assert dialogs.texts("confirm")[-1].startswith("Localise 2 radiographs found in")
    assert logic.state == State.CANCELLED  # not started
    dialogs.answers = [True]
    ui.batchRunButton.click()
    assert logic.state == State.RUNNING and ui.progressBar.maximum == 100
    assert not ui.batchRunButton.enabled and ui.applyButton.text == "Cancel"
    wait_for(lambda: not logic.state.busy)
    assert logic.state == State.FINISHED, logic.error
    assert len(list((tmp_path / "results").glob("*/findings.json"))) == 2
    assert logic.segmentation is segmentation  # a batch imports nothing

    # scene close empties the panel; loading the saved scene brings the review back
    path = _save_scene(slicer.mrmlScene, tmp_path)
    slicer.mrmlScene.Clear(0)
    assert ui.findingsTable.rowCount == 0 and logic.segmentation is None
    assert not ui.exportSegButton.enabled and not ui.thresholdSlider.enabled
    slicer.mrmlScene.SetURL(str(path))
    assert slicer.mrmlScene.Import()
    assert rows(ui.findingsTable) == table
    assert ui.inputVolumeSelector.currentNode().GetName() == "synthetic"
    assert ui.modelComboBox.itemData(ui.modelComboBox.currentIndex) == str(CAM)
    assert ui.findingsComboBox.currentText == ",".join(FINDINGS)
    assert ui.exportDicomSegButton.enabled and ui.thresholdSlider.value == rule.value
    assert [ui.inputVolumeSelector.itemText(i) for i in range(ui.inputVolumeSelector.count)
            ] == listed
    assert not dialogs.answers and not dialogs.texts("yes/no")
    print(f"run-through: {time.monotonic() - started:.1f} s")


def test_panel_never_imports_torch(tiny_model, sample_dicom, tmp_path):
    """Bug 3: the panel loaded torch (devices, the exporters' package), freezing Slicer for
    seconds. In a fresh Python the real widget starts, runs a model through its timer
    (the engine in its own process), imports, re-thresholds and exports: no torch."""
    script = tmp_path / "panel.py"
    script.write_text(f"""
import sys, time
sys.path[:0] = [{str(REPO / "Testing")!r}, {str(MODULE_DIR)!r}]
from pathlib import Path
import slicer_app
from slicer_scene import slicer_scene
import slicer
from qtpy.QtWidgets import QApplication

slicer_app.application(Path({str(tmp_path)!r}))
with slicer_scene():
    slicer_app.start_app(slicer.vtkSlicerTerminologiesModuleLogic())
    import CXRWeakLoc
    widget = CXRWeakLoc.CXRWeakLocWidget(logic=CXRWeakLoc.CXRWeakLocLogic(python=sys.executable))
    ui, logic = widget.panel.ui, widget.logic
    ui.inputVolumeSelector.choose(logic.loadRadiograph(Path({str(sample_dicom)!r})))
    slicer_app.FileDialog.answers = [{str(tiny_model)!r}]
    ui.addModelButton.click()  # "Add model folder...": the tiny model, chosen
    assert ui.modelComboBox.currentText == {tiny_model.name!r}
    ui.findingsComboBox.setCurrentText("Effusion,Atelectasis")
    ui.applyButton.click()
    while logic.state.busy:
        QApplication.processEvents()
        time.sleep(0.05)
    assert logic.state.value == "Finished", logic.error
    ui.thresholdSlider.value = 0.5
    logic.exportSegmentation(Path({str(tmp_path / "a.seg.nrrd")!r}))
    logic.exportDicomSeg(Path({str(tmp_path / "a.SEG.dcm")!r}))
    widget.cleanup()
print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "monai", "captum")))
""")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "a.seg.nrrd").is_file() and (tmp_path / "a.SEG.dcm").is_file()


def _pixels(path: Path) -> list:
    from PIL import Image

    return list(Image.open(path).convert("RGB").get_flattened_data())


def test_install_prompt_answered_cancel_then_ok(session, build, tmp_path, monkeypatch):
    """Apply with a package missing asks first: Cancel installs nothing and runs nothing;
    OK installs it (Slicer's pip_install, Slicer's own packages pinned) and runs."""
    import slicer
    from CXRWeakLocModuleLib.dependencies import Dependencies
    from CXRWeakLocModuleLib.logic import State

    _, _, dialogs = session
    installs = []
    monkeypatch.setattr(slicer.util, "pip_install", lambda args: installs.append(
        (args, Path(args[-1]).read_text())))
    monkeypatch.setitem(sys.modules, "slicer.packaging", None)  # Slicer 5.8 to 5.10
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy\ncxrweakloc-absent-package>=1.0\n")
    widget = build(Dependencies(requirements))
    ui, logic = widget.panel.ui, widget.logic
    assert rows(ui.dependenciesTable)[1] == ["cxrweakloc-absent-package", ">=1.0",
                                             "not installed"]
    assert "cxrweakloc-absent-package" in ui.dependenciesNoteLabel.text
    ui.inputVolumeSelector.choose(logic.loadSample())
    ui.modelComboBox.currentIndex = ui.modelComboBox.findText("cam")

    dialogs.answers = [False]
    ui.applyButton.click()
    assert "cxrweakloc-absent-package>=1.0" in dialogs.texts("confirm")[-1]
    assert dialogs.texts("error")[-1].startswith("Dependencies are missing")
    assert logic.state == State.IDLE and installs == []

    dialogs.answers = [True]
    ui.applyButton.click()
    ((args, constraints),) = installs
    assert args[:2] == ["cxrweakloc-absent-package>=1.0", "--constraint"]
    assert f"numpy=={np.__version__}" in constraints.split()
    assert logic.state == State.RUNNING
    ui.applyButton.click()  # Cancel
    assert logic.state == State.CANCELLED


def test_replacing_a_package_in_use_asks_for_a_restart(session, build, tmp_path, monkeypatch):
    """Install now, replacing a package already imported: Slicer must restart first."""
    import slicer
    from CXRWeakLocModuleLib.dependencies import Dependencies

    _, application, dialogs = session
    monkeypatch.setattr(slicer.util, "pip_install", lambda args: None)
    monkeypatch.setitem(sys.modules, "slicer.packaging", None)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pytest>=999\n")  # pytest is imported here
    ui = build(Dependencies(requirements)).panel.ui
    restarts = application.restarts
    dialogs.answers = [True, False]
    ui.installButton.click()
    assert "restart" in dialogs.texts("yes/no")[-1] and application.restarts == restarts
    dialogs.answers = [True, True]
    ui.installButton.click()
    assert application.restarts == restarts + 1


def test_user_facing_strings_go_through_slicers_translation(session, build, monkeypatch):
    import CXRWeakLoc

    _, application, dialogs = session
    monkeypatch.setattr(slicer_app.translator, "language", lambda text: f"«{text}»")
    panel = build().panel
    ui = panel.ui
    assert ui.applyButton.text == "«Apply»"
    assert ui.deviceNoteLabel.text.startswith("«") and ui.deviceNoteLabel.text.endswith("»")
    assert ui.dependenciesNoteLabel.text.startswith("«")
    assert panel.logic.loadSample().GetName() == "«Synthetic chest (sample)»"
    ui.batchInputDirectory.choose(REPO)
    ui.batchOutputDirectory.choose(REPO / "results")
    ui.batchRunButton.click()
    assert dialogs.texts("error")[-1].startswith("«The output folder")
    module = CXRWeakLoc.CXRWeakLoc(types.SimpleNamespace())
    assert module.parent.title == "«CXR Weak Localization»"
    assert module.parent.categories == ["«Segmentation»"]


def test_startup_registers_terminology_and_sample(session):
    """At start-up the Segment Editor gets the findings' terminology and the Sample Data
    module the sample radiograph."""
    import slicer
    import vtk
    from CXRWeakLocModuleLib.logic import SAMPLE_FILE

    import CXRWeakLoc
    from CXRWeakLocLib.export.seg_nrrd import TERMINOLOGY_CONTEXT

    _, application, _ = session
    CXRWeakLoc.CXRWeakLoc(types.SimpleNamespace())
    application.startupCompleted.emit()
    names = vtk.vtkStringArray()
    slicer.modules.terminologies.logic().GetLoadedTerminologyNames(names)
    assert TERMINOLOGY_CONTEXT in [names.GetValue(i) for i in range(names.GetNumberOfValues())]
    (source,) = slicer.modules.sampleDataSources["CXRWeakLoc"]
    assert source.uris == SAMPLE_FILE.as_uri()
    assert slicer.modules.sampleDataSourceCategories["CXRWeakLoc"]["title"] == "CXRWeakLoc"


def test_the_modules_self_test_passes(session):
    """Bug 2: the self-test asked a lower threshold of ``cam``'s mean_plus_k_std rule to
    shrink the masks. It runs here as Slicer's "Reload and Test" runs it."""
    import CXRWeakLoc

    CXRWeakLoc.CXRWeakLocTest().runTest()
    assert session[2].texts("delay")[-1] == "Test passed"
