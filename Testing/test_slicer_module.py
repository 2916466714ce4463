"""The Slicer module's logic, for real, in slicer-core: engine in a background process,
import, re-threshold, edit tracking, cancel, export; plus packaging checks of the
extension (CMake lists and the .ui file)."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, shared_path

from CXRWeakLocLib.core.findings import finding_by_name
from CXRWeakLocLib.core.masks import apply_mask_rule

MODULE_DIR = REPO / "CXRWeakLoc"
sys.path.insert(0, str(MODULE_DIR))

FINDINGS = ("Atelectasis", "Effusion", "Pneumothorax")


# --- packaging ---------------------------------------------------------------------


def _cmake_lists(cmake: Path) -> dict[str, set[str]]:
    """The file lists (``set(NAME ...)``) of a CMakeLists.txt, ``${MODULE_NAME}`` expanded."""
    text = cmake.read_text()
    name = re.search(r"set\(MODULE_NAME (\w+)\)", text)
    if name:
        text = text.replace("${MODULE_NAME}", name.group(1))
    return {
        var: set(body.split())
        for var, body in re.findall(r"^set\((\w+)\n(.*?)^\s*\)", text, re.MULTILINE | re.DOTALL)
    }


def _files(root: Path, base: Path, suffixes: tuple[str, ...] | None = None) -> set[str]:
    return {
        p.relative_to(base).as_posix() for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".")
        and (suffixes is None or p.suffix in suffixes)
    }


def test_cmake_lists_every_module_file():
    lists = _cmake_lists(MODULE_DIR / "CMakeLists.txt")
    assert _files(MODULE_DIR, MODULE_DIR, (".py",)) == lists["MODULE_PYTHON_SCRIPTS"]
    assert _files(MODULE_DIR / "Resources", MODULE_DIR) == lists["MODULE_PYTHON_RESOURCES"]


def test_cmake_lists_every_engine_file_and_resource():
    lists = _cmake_lists(MODULE_DIR / "CMakeLists.txt")
    engine = REPO / "CXRWeakLocLib"
    assert _files(engine, REPO, (".py",)) == lists["ENGINE_PYTHON_SCRIPTS"]
    resources = (_files(engine, REPO, (".json",)) | _files(REPO / "Resources" / "Models", REPO)
                 | _files(REPO / "Resources" / "Terminology", REPO))
    assert resources == lists["ENGINE_PYTHON_RESOURCES"]


def test_extension_cmake_follows_the_template():
    text = (REPO / "CMakeLists.txt").read_text()
    for key in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL",
                "SCREENSHOTURLS", "DEPENDS"):
        assert re.search(rf"set\(EXTENSION_{key} \S", text), key
    assert "add_subdirectory(CXRWeakLoc)" in text
    assert "include(${Slicer_EXTENSION_CPACK})" in text
    module = (MODULE_DIR / "CMakeLists.txt").read_text()
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in module


def test_ui_has_every_widget_the_code_uses():
    ui = (MODULE_DIR / "Resources" / "UI" / "CXRWeakLoc.ui").read_text()
    defined = set(re.findall(r'<widget class="\w+" name="(\w+)"', ui))
    used = set(re.findall(r"self\.ui\.(\w+)", (MODULE_DIR / "CXRWeakLoc.py").read_text()))
    assert used, "the widget uses no .ui names?"
    assert used - defined == set()


# --- logic -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scene():
    pytest.importorskip("slicer", reason="slicer-core is not installed")
    from slicer_scene import slicer_scene

    with slicer_scene() as context:
        yield context


@pytest.fixture(scope="module")
def logic_module():
    from CXRWeakLocModuleLib import logic

    return logic


@pytest.fixture(scope="module")
def radiograph_path() -> Path:
    return shared_path("fixtures/dicom/siim_cxr.dcm")


@pytest.fixture(scope="module")
def engine_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("engine")


@pytest.fixture(scope="module")
def finished(scene, logic_module, radiograph_path, tiny_model, engine_dir):
    """One real run: volume from a real radiograph, engine in a child process, import."""
    states, progress = [], []
    logic = logic_module.LocalizationLogic(
        python=sys.executable, onState=states.append, onProgress=progress.append)
    volume = logic.loadRadiograph(radiograph_path, "siim")
    logic.start(volume, str(tiny_model), ",".join(FINDINGS), "cpu", outDir=engine_dir)
    assert logic.wait(timeout=300) == logic_module.State.FINISHED, logic.error
    assert [s.value for s in states] == [
        "Initializing", "Running", "Importing", "Finished"]
    assert progress and progress[-1] == 1.0
    return logic, volume


def test_slicer_masks_equal_the_engines_seg_nrrd(finished, engine_dir):
    """The engine's .seg.nrrd and Slicer's segments agree pixel for pixel (geometry too)."""
    import slicerio
    from CXRWeakLocModuleLib import mrml

    logic, volume = finished
    (path,) = engine_dir.glob("*/*.seg.nrrd")
    segmentation = slicerio.read_segmentation(str(path))
    for row in logic.findings:
        voxels = np.asarray(slicerio.extract_segments(segmentation, [(row.name, 1)])["voxels"])
        mask = mrml.segmentMask(logic.segmentation, row.segment_id, volume)
        assert np.array_equal(voxels[..., 0].T > 0, mask)


def segmentTag(segment, key: str) -> str:
    from CXRWeakLocModuleLib.mrml import segmentTag

    return segmentTag(segment, key)


def _matrix(node) -> np.ndarray:
    import slicer
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def test_volume_has_the_radiograph_geometry(scene, logic_module, radiograph_path):
    from CXRWeakLocLib.core.radiograph import read_radiograph

    radiograph = read_radiograph(radiograph_path)
    volume = logic_module.LocalizationLogic.loadRadiograph(radiograph_path)
    assert volume.GetImageData().GetDimensions() == (*radiograph.size[::-1], 1)
    assert np.allclose(np.diag(_matrix(volume))[:2], [-radiograph.spacing[0],
                                                      -radiograph.spacing[1]])
    assert logic_module.LocalizationLogic.sourceFile(volume) == radiograph_path


def test_segments_carry_names_colours_terminology_and_tags(finished):
    logic, volume = finished
    content = logic.segmentation.GetSegmentation()
    names = [content.GetNthSegment(i).GetName() for i in range(content.GetNumberOfSegments())]
    assert sorted(names) == sorted(FINDINGS)
    for row in logic.findings:
        segment = content.GetSegment(row.segment_id)
        finding = finding_by_name(row.name)
        assert np.allclose(segment.GetColor(), finding.color_float, atol=1e-3)
        terminology = segmentTag(segment, segment.GetTerminologyEntryTagName())
        assert f"SCT^{finding.code.value}^" in terminology
        assert "SCT^49755003^" in terminology
        assert segmentTag(segment, "DICOM.SegmentAlgorithmType") == "AUTOMATIC"
        assert segmentTag(segment, "DICOM.SegmentAlgorithmName") == "cam"
    assert logic.segmentation.GetSegmentation().GetConversionParameter(
        "Reference image geometry"), "no reference image geometry"
    assert logic.segmentation.GetNodeReference(
        logic.segmentation.GetReferenceImageGeometryReferenceRole()).GetID() == volume.GetID()


def test_results_are_under_the_inputs_parent(finished, scene):
    logic, volume = finished
    hierarchy = scene.scene.GetSubjectHierarchyNode()
    parent = hierarchy.GetItemParent(hierarchy.GetItemByDataNode(volume))
    for node in [logic.segmentation] + [row.heatmap for row in logic.findings]:
        assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(node)) == parent


def test_heatmaps_line_up_with_the_input(finished):
    import slicer

    logic, volume = finished
    for row in logic.findings:
        assert np.allclose(_matrix(row.heatmap), _matrix(volume))
        heatmap = slicer.util.arrayFromVolume(row.heatmap)
        assert heatmap.shape == slicer.util.arrayFromVolume(volume).shape
        assert heatmap.min() >= 0.0 and heatmap.max() <= 1.0
    display = logic.findings[0].heatmap.GetDisplayNode()
    assert "Heat" in display.GetColorNodeID() or "Inferno" in display.GetColorNodeID()


def test_masks_are_the_mask_rule_of_the_heatmaps(finished):
    import slicer
    from CXRWeakLocModuleLib import mrml

    logic, volume = finished
    for row in logic.findings:
        heatmap = slicer.util.arrayFromVolume(row.heatmap)[0]
        expected = apply_mask_rule(heatmap, logic.maskRule)
        mask = mrml.segmentMask(logic.segmentation, row.segment_id, volume)
        assert np.array_equal(mask, expected)
        assert row.area_px == int(expected.sum())


def test_rethreshold_changes_masks_without_rerunning(finished):
    from CXRWeakLocModuleLib import mrml

    logic, volume = finished
    before = {r.name: mrml.segmentMask(logic.segmentation, r.segment_id, volume).sum()
              for r in logic.findings}
    original = logic.maskRule.value
    try:
        assert logic.setMaskRuleValue(0.9) == []
        after = {r.name: mrml.segmentMask(logic.segmentation, r.segment_id, volume).sum()
                 for r in logic.findings}
        assert all(after[n] <= before[n] for n in before)
        assert sum(after.values()) < sum(before.values())
        assert logic.state.value == "Finished"  # no new run
        for row in logic.findings:
            segment = logic.segmentation.GetSegmentation().GetSegment(row.segment_id)
            assert segmentTag(segment, "DICOM.SegmentAlgorithmType") == "AUTOMATIC"
    finally:
        logic.setMaskRuleValue(original)


def test_exported_seg_nrrd_reads_back_with_slicerio(finished, tmp_path):
    import slicerio
    from CXRWeakLocModuleLib import mrml

    logic, volume = finished
    path = logic.exportSegmentation(tmp_path / "out.seg.nrrd")
    segmentation = slicerio.read_segmentation(str(path))
    by_name = {s["name"]: s for s in segmentation["segments"]}
    assert sorted(by_name) == sorted(FINDINGS)
    for row in logic.findings:
        mask = mrml.segmentMask(logic.segmentation, row.segment_id, volume)
        extracted = slicerio.extract_segments(segmentation, [(row.name, 1)])
        voxels = np.asarray(extracted["voxels"])  # (i, j, k) as slicerio reads it
        assert np.array_equal(voxels[..., 0].T > 0, mask)
        segment = by_name[row.name]
        assert segment["tags"]["DICOM.SegmentAlgorithmType"] == "AUTOMATIC"
        assert segment["terminology"]["type"][1] == finding_by_name(row.name).code.value
        assert np.allclose(segment["color"], finding_by_name(row.name).color_float, atol=1e-3)


def test_dicom_seg_export(finished, tmp_path):
    pydicom = pytest.importorskip("pydicom")
    logic, _ = finished
    assert logic.canExportDicomSeg()
    path = logic.exportDicomSeg(tmp_path / "out.SEG.dcm")
    seg = pydicom.dcmread(path)
    assert seg.Modality == "SEG"
    labels = sorted(s.SegmentLabel for s in seg.SegmentSequence)
    assert labels == sorted(FINDINGS)


def test_an_edit_flips_automatic_to_semiautomatic(finished, tmp_path):
    import pydicom
    from CXRWeakLocModuleLib import mrml

    logic, volume = finished
    row = logic.findings[0]
    other = logic.findings[1]
    mask = mrml.segmentMask(logic.segmentation, row.segment_id, volume)
    mask[:20, :20] = ~mask[:20, :20]  # a paint/erase stroke
    mrml.setSegmentMask(logic.segmentation, row.segment_id, mask, volume)
    content = logic.segmentation.GetSegmentation()
    assert segmentTag(content.GetSegment(row.segment_id),
                      "DICOM.SegmentAlgorithmType") == "SEMIAUTOMATIC"
    assert segmentTag(content.GetSegment(other.segment_id),
                      "DICOM.SegmentAlgorithmType") == "AUTOMATIC"
    # re-thresholding keeps the user's edit
    assert logic.setMaskRuleValue(0.8) == [row.name]
    assert np.array_equal(mrml.segmentMask(logic.segmentation, row.segment_id, volume), mask)
    # and the DICOM-SEG export says which masks a person edited
    seg = pydicom.dcmread(logic.exportDicomSeg(tmp_path / "edited.SEG.dcm"))
    types = {s.SegmentLabel: s.SegmentAlgorithmType for s in seg.SegmentSequence}
    assert types[row.name] == "SEMIAUTOMATIC" and types[other.name] == "AUTOMATIC"


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_cancel_kills_the_engine_process(scene, logic_module, radiograph_path, tiny_model):
    states = []
    logic = logic_module.LocalizationLogic(python=sys.executable, onState=states.append)
    volume = logic.loadRadiograph(radiograph_path, "cancelled")
    logic.start(volume, str(tiny_model), "all", "cpu")
    process = logic._run.process
    time.sleep(0.5)
    logic.cancel()
    assert logic.state == logic_module.State.CANCELLED
    assert not process.running
    assert _gone(process.pid)
    assert states[-1] == logic_module.State.CANCELLED
    assert logic.poll() == logic_module.State.CANCELLED


def test_volume_without_a_source_file_runs_through_nrrd(scene, logic_module, tiny_model):
    """A volume made in Slicer (no file behind it) goes to the engine as NRRD."""
    from CXRWeakLocModuleLib import mrml

    from CXRWeakLocLib.core.radiograph import read_radiograph

    image = sorted(shared_path("nih-mini/images").glob("*.png"))[0]
    radiograph = read_radiograph(image)
    radiograph.source = None
    radiograph.spacing = (0.143, 0.143)  # the engine reads it back from the NRRD
    volume = mrml.volumeFromRadiograph(radiograph, "nih")
    logic = logic_module.LocalizationLogic(python=sys.executable)
    assert logic.sourceFile(volume) is None
    logic.start(volume, str(tiny_model), "Cardiomegaly", "cpu")
    assert logic.wait(timeout=300) == logic_module.State.FINISHED, logic.error
    (row,) = logic.findings
    assert np.allclose(_matrix(row.heatmap), _matrix(volume))
    assert row.area_mm2 == pytest.approx(row.area_px * 0.143 * 0.143)
    assert not logic.canExportDicomSeg()


def test_engine_failure_is_reported(scene, logic_module, radiograph_path, tmp_path):
    logic = logic_module.LocalizationLogic(python=sys.executable)
    volume = logic.loadRadiograph(radiograph_path, "failing")
    logic.start(volume, str(tmp_path / "no-such-model"), "all", "cpu")
    assert logic.wait(timeout=120) == logic_module.State.FAILED
    assert "not found" in logic.error


def test_batch_runs_a_folder(scene, logic_module, tiny_model, tmp_path):
    source = shared_path("nih-mini/images")
    inputs = tmp_path / "in"
    inputs.mkdir()
    for image in sorted(source.glob("*.png"))[:2]:
        (inputs / image.name).symlink_to(image)
    logic = logic_module.LocalizationLogic(python=sys.executable)
    logic.startBatch(inputs, tmp_path / "out", str(tiny_model), "Effusion", "cpu")
    assert logic.wait(timeout=300) == logic_module.State.FINISHED, logic.error
    assert len(list((tmp_path / "out").glob("*/findings.json"))) == 2


def test_model_catalog_and_devices(tiny_model, tmp_path):
    from CXRWeakLocModuleLib import catalog

    entries = catalog.findModels([tiny_model.parent, REPO / "Resources" / "Models"])
    assert tiny_model.name in [e.name for e in entries]
    entry = next(e for e in entries if e.name == tiny_model.name)
    assert "method: cam" in entry.tooltip
    with pytest.raises(ValueError):
        catalog.readModelEntry(tmp_path)
    devices, note = catalog.availableDevices()
    assert [d.value for d in devices[:2]] == ["auto", "cpu"]
    assert note
