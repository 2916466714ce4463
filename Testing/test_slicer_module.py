"""The Slicer module's logic, for real, in slicer-core: engine in a background process,
import, re-threshold, edit tracking, cancel, export, the Segment Editor, the parameter
node through a scene save and load, terminology, sample, dependencies; plus packaging
checks of the extension (CMake lists and the .ui file). The panel itself is tested in
test_slicer_widget.py."""

from __future__ import annotations

import os
import re
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, shared_path

from CXRWeakLocLib.core.findings import finding_by_name
from CXRWeakLocLib.core.masks import apply_mask_rule

MODULE_DIR = REPO / "CXRWeakLoc"
sys.path.insert(0, str(MODULE_DIR))

FINDINGS = ("Atelectasis", "Effusion", "Pneumothorax")
#: The shipped model the logic runs: on the SIIM radiograph its Atelectasis and
#: Pneumothorax masks do not overlap, so they share a layer of the segmentation.
CAM = REPO / "Resources" / "Models" / "cam"


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


def test_extensions_index_entry_matches_the_extension():
    """ExtensionsIndex/CXRWeakLoc.json, ready for Slicer's ExtensionsIndex: the catalog
    entry schema's keys (v1.0.1), and the extension's own category, dependencies, repository."""
    import json

    entry = json.loads((REPO / "ExtensionsIndex" / "CXRWeakLoc.json").read_text())
    allowed = {"$schema", "category", "scm_url", "scm_revision", "scm_type",
               "build_dependencies", "build_subdirectory", "enabled", "tier"}
    assert {"$schema", "category", "scm_url"} <= set(entry) <= allowed
    assert entry["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.1.json#")
    cmake = (REPO / "CMakeLists.txt").read_text()
    value = {key: re.search(rf'set\(EXTENSION_{key} "([^"]*)"\)', cmake).group(1)
             for key in ("CATEGORY", "DEPENDS", "HOMEPAGE")}
    assert entry["category"] == value["CATEGORY"]
    assert entry["build_dependencies"] == value["DEPENDS"].split(";")
    assert entry["scm_url"].removesuffix(".git") == value["HOMEPAGE"].split("#")[0]
    assert 1 <= entry["tier"] <= 5


def test_ui_has_every_widget_the_code_uses():
    ui = (MODULE_DIR / "Resources" / "UI" / "CXRWeakLoc.ui").read_text()
    defined = set(re.findall(r'<widget class="\w+" name="(\w+)"', ui))
    code = (MODULE_DIR / "CXRWeakLocModuleLib" / "widget.py").read_text()
    used = set(re.findall(r"\bui\.(\w+)", code)) - {"ui"}
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
def finished(scene, logic_module, radiograph_path, engine_dir):
    """One real run: volume from a real radiograph, engine in a child process, import."""
    states, progress, stages = [], [], []
    logic = logic_module.LocalizationLogic(
        python=sys.executable, onState=states.append, onProgress=progress.append,
        onStage=stages.append)
    volume = logic.loadRadiograph(radiograph_path, "siim")
    logic.start(volume, str(CAM), ",".join(FINDINGS), "cpu", outDir=engine_dir)
    assert logic.wait(timeout=300) == logic_module.State.FINISHED, logic.error
    assert [s.value for s in states] == [
        "Initializing", "Running", "Importing", "Finished"]
    assert progress and progress[-1] == 1.0
    assert [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s] == [
        "Loading the model", "Reading", "Localising", "Writing results", "Importing results"]
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
    """Each heatmap volume is the model's grid, its cells tiling the input volume."""
    import slicer
    from CXRWeakLocModuleLib import mrml

    logic, volume = finished
    columns, rows, _ = volume.GetImageData().GetDimensions()
    for row in logic.findings:
        heatmap = slicer.util.arrayFromVolume(row.heatmap)
        assert heatmap.shape == (1, 16, 16)  # the shipped cam's feature grid
        assert np.allclose(_matrix(row.heatmap), mrml.heatmapGeometry((16, 16), volume))
        corner = _matrix(row.heatmap) @ [-0.5, -0.5, 0, 1]  # the grid's outer corner ...
        assert np.allclose(corner, _matrix(volume) @ [-0.5, -0.5, 0, 1])  # ... is the input's
        far = _matrix(row.heatmap) @ [15.5, 15.5, 0, 1]
        assert np.allclose(far, _matrix(volume) @ [columns - 0.5, rows - 0.5, 0, 1])
    display = logic.findings[0].heatmap.GetDisplayNode()
    assert "Heat" in display.GetColorNodeID() or "Inferno" in display.GetColorNodeID()


def test_heatmap_maximum_is_where_the_engine_put_it_in_ras(finished, radiograph_path):
    """The patient point (RAS) of each heatmap's maximum, as Slicer places the grid, is
    the point of the engine's full-resolution maximum (what the files held before they
    were stored on the model's grid), and the grid resampled there is that heatmap."""
    import slicer
    from CXRWeakLocModuleLib import mrml

    from CXRWeakLocLib.core.radiograph import read_radiograph
    from CXRWeakLocLib.localize import Localizer

    logic, volume = finished
    radiograph = read_radiograph(radiograph_path)
    result = Localizer.from_name(str(CAM), "cpu").localize([radiograph], list(FINDINGS))[0]
    spacing = np.array(volume.GetSpacing())
    for row in logic.findings:
        full = result.get(row.name).heatmap
        np.testing.assert_allclose(mrml.heatmapOnInput(row.heatmap, volume), full, atol=1e-5)
        r, c = np.unravel_index(np.argmax(full), full.shape)
        engine_ras = _matrix(volume) @ [c, r, 0, 1]
        grid = slicer.util.arrayFromVolume(row.heatmap)[0]
        j, i = np.unravel_index(np.argmax(grid), grid.shape)
        slicer_ras = _matrix(row.heatmap) @ [i, j, 0, 1]
        # the engine's maximum lies in the grid's maximal cell ...
        to_ijk = np.linalg.inv(_matrix(row.heatmap))
        assert tuple(np.floor(to_ijk @ engine_ras + 0.5)[:2].astype(int)) == (i, j)
        # ... at most half a cell (and half a pixel) from its centre; within one pixel
        # when the maximum is inside the grid (bilinear peaks at a cell centre)
        cell = np.abs(np.diag(_matrix(row.heatmap))[:3])
        assert np.all(np.abs(slicer_ras - engine_ras)[:2] <= (cell / 2 + spacing / 2)[:2] + 1e-6)
        if 0 < i < grid.shape[1] - 1 and 0 < j < grid.shape[0] - 1:
            assert np.linalg.norm((slicer_ras - engine_ras)[:3]) <= np.linalg.norm(spacing[:2])


def test_masks_are_the_mask_rule_of_the_heatmaps(finished):
    from CXRWeakLocModuleLib import mrml

    logic, volume = finished
    for row in logic.findings:
        heatmap = mrml.heatmapOnInput(row.heatmap, volume)
        assert heatmap.shape == tuple(volume.GetImageData().GetDimensions()[1::-1])
        expected = apply_mask_rule(heatmap, logic.maskRule)
        mask = mrml.segmentMask(logic.segmentation, row.segment_id, volume)
        assert np.array_equal(mask, expected)
        assert row.area_px == int(expected.sum())


def test_a_heatmap_that_does_not_lie_over_the_input_is_refused(finished, engine_dir):
    import slicer
    from CXRWeakLocModuleLib import mrml

    logic, volume = finished
    other = mrml.volumeFromRadiograph(mrml.radiographGeometry(volume), "moved")
    other.SetOrigin(np.array(volume.GetOrigin()) + 5.0)
    (path,) = engine_dir.glob(f"*/*.{FINDINGS[0]}.heatmap.nrrd")
    count = slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
    with pytest.raises(RuntimeError, match="does not lie over the input volume"):
        mrml.loadHeatmap(path, "stray", other)
    assert slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == count
    slicer.mrmlScene.RemoveNode(other)


def _shrinking_value(rule) -> float:
    """A value half-way from the rule's own towards the end of its range that shrinks masks."""
    kind = rule.kind
    return (rule.value + (kind.high if kind.larger_value_shrinks_mask else kind.low)) / 2


def test_rethreshold_changes_masks_without_rerunning(finished):
    from CXRWeakLocModuleLib import mrml

    logic, volume = finished
    before = {r.name: mrml.segmentMask(logic.segmentation, r.segment_id, volume).sum()
              for r in logic.findings}
    original = logic.maskRule.value
    try:
        assert logic.setMaskRuleValue(_shrinking_value(logic.maskRule)) == []
        after = {r.name: mrml.segmentMask(logic.segmentation, r.segment_id, volume).sum()
                 for r in logic.findings}
        assert all(after[n] <= before[n] for n in before)
        assert sum(after.values()) < sum(before.values())
        assert {r.name: r.area_px for r in logic.findings} == after
        assert logic.state.value == "Finished"  # no new run
        for row in logic.findings:
            segment = logic.segmentation.GetSegmentation().GetSegment(row.segment_id)
            assert segmentTag(segment, "DICOM.SegmentAlgorithmType") == "AUTOMATIC"
    finally:
        logic.setMaskRuleValue(original)


def _expected_masks(logic) -> dict[str, np.ndarray]:
    """Each finding's mask as the card's rule makes it from its heatmap."""
    from CXRWeakLocModuleLib import mrml

    return {row.name: apply_mask_rule(mrml.heatmapOnInput(row.heatmap, logic.inputVolume),
                                      logic.maskRule) for row in logic.findings}


def test_export_leaves_unedited_segments_automatic(finished, scene, tmp_path):
    """Bug 1: exporting .seg.nrrd marked unedited segments SEMIAUTOMATIC (and then the
    slider skipped them): two findings share a layer, and their masks were read as the
    whole layer."""
    import pydicom
    import slicerio
    from CXRWeakLocModuleLib import mrml

    logic, volume = finished
    content = logic.segmentation.GetSegmentation()
    layers = [content.GetLayerIndex(row.segment_id) for row in logic.findings]
    assert len(set(layers)) < len(layers), "no two findings share a layer: nothing tested"
    logic.setMaskRuleValue(logic.maskRule.value)
    expected = _expected_masks(logic)

    path = logic.exportSegmentation(tmp_path / "export.seg.nrrd")
    for row in logic.findings:
        assert segmentTag(content.GetSegment(row.segment_id),
                          "DICOM.SegmentAlgorithmType") == "AUTOMATIC", row.name
        assert np.array_equal(mrml.segmentMask(logic.segmentation, row.segment_id, volume),
                              expected[row.name]), row.name
    written = slicerio.read_segmentation(str(path))
    for segment in written["segments"]:
        assert segment["tags"]["DICOM.SegmentAlgorithmType"] == "AUTOMATIC"
        voxels = slicerio.extract_segments(written, [(segment["name"], 1)])["voxels"]
        assert np.array_equal(np.asarray(voxels)[..., 0].T > 0, expected[segment["name"]])
    read_back = scene.segment_masks(scene.read_segmentation(path), expected["Effusion"].shape)
    assert all(np.array_equal(read_back[name], mask) for name, mask in expected.items())

    assert logic.setMaskRuleValue(_shrinking_value(logic.maskRule)) == []  # none skipped
    logic.setMaskRuleValue(logic.maskRule.value)
    seg = pydicom.dcmread(logic.exportDicomSeg(tmp_path / "export.SEG.dcm"))
    assert {s.SegmentAlgorithmType for s in seg.SegmentSequence} == {"AUTOMATIC"}
    frames = seg.pixel_array.reshape(len(seg.SegmentSequence), *expected["Effusion"].shape)
    for segment, frame in zip(seg.SegmentSequence, frames, strict=True):
        assert np.array_equal(frame > 0, expected[segment.SegmentLabel]), segment.SegmentLabel


def test_exported_seg_nrrd_has_the_volume_geometry(finished, scene, tmp_path):
    """The panel's .seg.nrrd (the engine's writer) reads back in Slicer on the input's grid."""
    import slicer
    import vtk

    logic, volume = finished
    node = scene.read_segmentation(logic.exportSegmentation(tmp_path / "grid.seg.nrrd"))
    labelmap = node.GetBinaryLabelmapInternalRepresentation(logic.findings[0].name)
    matrix = vtk.vtkMatrix4x4()
    labelmap.GetImageToWorldMatrix(matrix)
    assert np.allclose(slicer.util.arrayFromVTKMatrix(matrix), _matrix(volume))
    assert labelmap.GetExtent() == volume.GetImageData().GetExtent()


def test_export_names_segments_that_are_not_findings(finished, tmp_path):
    """A segment the user added is not one of the model's findings: the export says so."""
    import slicerio

    logic, _ = finished
    lines = []
    logic.onLog = lines.append
    content = logic.segmentation.GetSegmentation()
    added = content.AddEmptySegment("", "my nodule")
    try:
        written = slicerio.read_segmentation(str(logic.exportSegmentation(tmp_path / "s.seg.nrrd")))
    finally:
        content.RemoveSegment(added)
    assert sorted(s["name"] for s in written["segments"]) == sorted(FINDINGS)
    assert lines == ["Not exported (not a finding of the model): my nodule"]


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


def test_a_saved_export_is_imported_with_its_edits(finished, logic_module, radiograph_path,
                                                  engine_dir, tmp_path):
    """importResult from a reviewed .seg.nrrd: its SEMIAUTOMATIC segments as they were
    drawn, the others made again by the card's rule (the web app's reopened study)."""
    from CXRWeakLocModuleLib import mrml
    from slicer_scene import slicer_scene

    logic, volume = finished
    export = logic.exportSegmentation(tmp_path / "review.seg.nrrd")
    edited = {r.name: mrml.segmentMask(logic.segmentation, r.segment_id, volume)
              for r in logic.findings if logic._tracker.edited(r.segment_id)}
    assert edited and len(edited) < len(logic.findings)
    (folder,) = [p.parent for p in engine_dir.glob("*/findings.json")]
    with slicer_scene():
        other = logic_module.LocalizationLogic(python=sys.executable)
        reopened = other.loadRadiograph(radiograph_path, "reopened")
        other.importResult(reopened, folder, export)
        for row in other.findings:
            segment = other.segmentation.GetSegmentation().GetSegment(row.segment_id)
            mask = mrml.segmentMask(other.segmentation, row.segment_id, reopened)
            if row.name in edited:
                assert segmentTag(segment, "DICOM.SegmentAlgorithmType") == "SEMIAUTOMATIC"
                assert np.array_equal(mask, edited[row.name])
            else:
                assert segmentTag(segment, "DICOM.SegmentAlgorithmType") == "AUTOMATIC"
                heatmap = mrml.heatmapOnInput(row.heatmap, reopened)
                assert np.array_equal(mask, apply_mask_rule(heatmap, other.maskRule))
        other.cleanup()


def test_a_failed_export_keeps_the_earlier_file(finished, tmp_path, monkeypatch):
    """Exports are written under a temporary name and renamed: a failure mid-write leaves
    the file of the last export whole, and no partial file."""
    from CXRWeakLocLib.export import seg_nrrd

    logic, _ = finished
    path = logic.exportSegmentation(tmp_path / "kept.seg.nrrd")
    before = path.read_bytes()

    def failing(result, radiograph, target):
        Path(target).write_bytes(b"half a file")
        raise OSError("No space left on device")

    monkeypatch.setattr(seg_nrrd, "write_segmentation", failing)
    with pytest.raises(OSError, match="No space"):
        logic.exportSegmentation(path)
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


def _paint(logic, row, square: tuple[slice, slice]):
    """One Segment Editor stroke adding ``square`` to ``row``'s segment, through Slicer's
    own Segment Editor logic and an editor node as the Segment Editor module makes it."""
    import slicer
    import vtk
    from CXRWeakLocModuleLib import mrml
    from vtk.util.numpy_support import vtk_to_numpy

    editor = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
    editorLogic = slicer.vtkSlicerSegmentEditorLogic()
    editorLogic.SetMRMLScene(slicer.mrmlScene)
    editorLogic.SetSegmentEditorNode(editor)
    editor.SetAndObserveSourceVolumeNode(logic.inputVolume)
    editor.SetAndObserveSegmentationNode(logic.segmentation)
    editor.SetSelectedSegmentID(row.segment_id)
    stroke = np.zeros(logic.inputVolume.GetImageData().GetDimensions()[1::-1], np.uint8)
    stroke[square] = 1
    modifier = mrml._referenceImage(logic.inputVolume)
    modifier.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    vtk_to_numpy(modifier.GetPointData().GetScalars())[:] = stroke.ravel()
    editorLogic.ModifySegmentByLabelmap(logic.segmentation, row.segment_id, modifier,
                                        editorLogic.ModificationModeAdd, False, False)
    return editor


def test_painting_one_finding_leaves_the_others(finished):
    """Bug 6: the Segment Editor's default "overwrite all" carved the other findings."""
    import slicer
    from CXRWeakLocModuleLib import mrml

    logic, volume = finished
    masks = {r.name: mrml.segmentMask(logic.segmentation, r.segment_id, volume)
             for r in logic.findings}
    painted, under = logic.findings[1], logic.findings[2]
    rows, columns = np.nonzero(masks[under.name] & ~masks[painted.name])
    square = (slice(rows[0], rows[0] + 20), slice(columns[0], columns[0] + 20))
    editor = _paint(logic, painted, square)
    assert editor.GetOverwriteMode() == slicer.vtkMRMLSegmentEditorNode.OverwriteNone
    for row in logic.findings:
        mask = mrml.segmentMask(logic.segmentation, row.segment_id, volume)
        if row is painted:
            assert mask[square].all() and (mask | ~masks[row.name]).all()
        else:
            assert np.array_equal(mask, masks[row.name]), f"painting changed {row.name}"
    content = logic.segmentation.GetSegmentation()
    assert segmentTag(content.GetSegment(painted.segment_id),
                      "DICOM.SegmentAlgorithmType") == "SEMIAUTOMATIC"
    assert segmentTag(content.GetSegment(under.segment_id),
                      "DICOM.SegmentAlgorithmType") == "AUTOMATIC"
    # another segmentation in the editor gets the mode the editor had before
    editor.SetAndObserveSegmentationNode(
        slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode"))
    assert editor.GetOverwriteMode() == slicer.vtkMRMLSegmentEditorNode.OverwriteAllSegments


def test_an_undone_edit_is_tracked_again(finished):
    """Undo brings back the model's mask and its AUTOMATIC tag; the tracker had stopped
    watching the segment after its first edit, so the next edit stayed AUTOMATIC."""
    import slicer
    from CXRWeakLocModuleLib import mrml

    logic, volume = finished
    row = logic.findings[2]

    def algorithm() -> str:
        segment = logic.segmentation.GetSegmentation().GetSegment(row.segment_id)
        return segmentTag(segment, "DICOM.SegmentAlgorithmType")

    assert algorithm() == "AUTOMATIC"
    before = mrml.segmentMask(logic.segmentation, row.segment_id, volume)
    rows, columns = np.nonzero(~before)
    square = (slice(rows[0], rows[0] + 10), slice(columns[0], columns[0] + 10))
    history = slicer.vtkSegmentationHistory()  # what the Segment Editor's undo uses
    history.SetSegmentation(logic.segmentation.GetSegmentation())
    history.SaveState()
    _paint(logic, row, square)
    assert algorithm() == "SEMIAUTOMATIC"
    assert history.RestorePreviousState()
    assert algorithm() == "AUTOMATIC"
    assert np.array_equal(mrml.segmentMask(logic.segmentation, row.segment_id, volume), before)
    _paint(logic, row, square)
    assert algorithm() == "SEMIAUTOMATIC"


def _save_scene(scene, folder: Path) -> Path:
    """Save every storable node to a file and the scene to ``folder/scene.mrml``, as
    Slicer's Save dialog does."""
    for index in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(index)
        if node.IsA("vtkMRMLStorableNode") and node.GetID().startswith(
                ("vtkMRMLScalarVolumeNode", "vtkMRMLSegmentationNode")):
            node.AddDefaultStorageNode()
            storage = node.GetStorageNode()
            suffix = ".seg.nrrd" if node.IsA("vtkMRMLSegmentationNode") else ".nrrd"
            storage.SetFileName(str(folder / f"{node.GetID()}{suffix}"))
            assert storage.WriteData(node), node.GetName()
    scene.SetRootDirectory(str(folder))
    scene.SetURL(str(folder / "scene.mrml"))
    assert scene.Commit()
    return folder / "scene.mrml"


def test_results_survive_scene_save_and_load(finished, logic_module, tmp_path):
    """The parameter node keeps the choices and the results: a loaded scene shows the same
    findings, masks and areas, edits included, and the slider still works on them."""
    from CXRWeakLocModuleLib import mrml
    from slicer_scene import slicer_scene

    logic, volume = finished
    saved = {r.name: (r.probability, mrml.segmentMask(logic.segmentation, r.segment_id, volume))
             for r in logic.findings}
    edited = [r.name for r in logic.findings if logic._tracker.edited(r.segment_id)]
    assert edited, "the edit tests above should have left an edited segment"
    path = _save_scene(volume.GetScene(), tmp_path)
    assert not set(edited) ^ {r.name for r in logic.findings
                              if logic._tracker.edited(r.segment_id)}, "saving is no edit"

    with slicer_scene() as loaded:
        loaded.scene.SetURL(str(path))
        assert loaded.scene.Connect()
        restored = logic_module.LocalizationLogic(python=sys.executable)
        assert restored.restoreResults()
        parameters = restored.parameters
        assert (parameters.model, parameters.findings, parameters.device) == (
            str(CAM), ",".join(FINDINGS), "cpu")
        assert parameters.inputVolume.GetName() == "siim"
        assert restored.maskRule == logic.maskRule and restored.model == logic.model
        for row in restored.findings:
            probability, mask = saved[row.name]
            assert row.probability == probability and row.area_px == mask.sum()
            assert np.array_equal(mrml.segmentMask(restored.segmentation, row.segment_id,
                                                   restored.inputVolume), mask)
            assert row.heatmap.GetAttribute(mrml.ROLE_ATTRIBUTE) == mrml.HEATMAP_ROLE
        assert restored.setMaskRuleValue(_shrinking_value(restored.maskRule)) == edited
        restored.cleanup()


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
    grid = row.heatmap.GetImageData().GetDimensions()[1::-1]
    assert np.allclose(_matrix(row.heatmap), mrml.heatmapGeometry(grid, volume))
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


def test_batch_folders_are_checked_before_anything_runs(scene, logic_module, tiny_model,
                                                        tmp_path):
    """Bug 5: a batch ran on whatever folders the buttons showed, output inside input too."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for image in sorted(shared_path("nih-mini/images").glob("*.png"))[:2]:
        (inputs / image.name).symlink_to(image)
    (tmp_path / "empty").mkdir()
    Logic = logic_module.LocalizationLogic
    for folders, reason in (((None, tmp_path / "out"), "both"),
                            ((inputs, None), "both"),
                            ((inputs, inputs / "out"), "inside"),
                            ((inputs, inputs), "inside"),
                            ((tmp_path / "empty", tmp_path / "out"), "No radiographs"),
                            ((tmp_path / "absent", tmp_path / "out"), "not a folder")):
        with pytest.raises(ValueError, match=reason) as refused:
            Logic.batchInputs(*folders)
        assert "\n" not in str(refused.value)
    assert [p.name for p in Logic.batchInputs(inputs, tmp_path / "out")] == sorted(
        p.name for p in inputs.iterdir())
    logic = Logic(python=sys.executable)
    with pytest.raises(ValueError, match="inside"):
        logic.startBatch(inputs, inputs / "out", str(tiny_model), "Effusion", "cpu")
    assert logic.state == logic_module.State.IDLE and logic._run is None
    assert not (inputs / "out").exists()
    logic.cleanup()


def _requirements(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "requirements.txt"
    path.write_text("# test requirements\n" + "\n".join(lines) + "\n")
    return path


@pytest.fixture
def installs(monkeypatch) -> list:
    """What Slicer is asked to install: ``slicer.util.pip_install`` (which would run pip)
    records its arguments instead."""
    import slicer

    calls = []
    monkeypatch.setattr(slicer.util, "pip_install", lambda args: calls.append(("pip", args)))
    return calls


def test_dependencies_report_installed_versions(tmp_path):
    from CXRWeakLocModuleLib.dependencies import Dependencies

    status = Dependencies(_requirements(tmp_path, "numpy>=1.0", "scipy>=999",
                                        "cxrweakloc-absent-package")).status()
    assert [s.requirement.name for s in status] == ["numpy", "scipy", "cxrweakloc-absent-package"]
    assert status[0].installed == np.__version__ and status[0].satisfied
    assert status[1].installed and not status[1].satisfied
    assert status[2].installed is None and not status[2].satisfied


def test_dependencies_use_pip_ensure_on_slicer_5_12(tmp_path, monkeypatch, installs):
    """Bug 4: ``slicer.packaging`` (5.12+) was looked up before it was imported, so
    pip_ensure (progress dialog, restart prompt) was never used."""
    import slicer
    from CXRWeakLocModuleLib.dependencies import Dependencies

    packaging = types.ModuleType("slicer.packaging")  # Slicer's module, not imported yet
    packaging.pip_ensure = lambda requirements, **options: installs.append(
        ("pip_ensure", [str(r) for r in requirements], Path(options["constraints"]).read_text(),
         options["prompt_install"], options["requester"]))
    monkeypatch.setitem(sys.modules, "slicer.packaging", packaging)
    monkeypatch.delattr(slicer, "packaging", raising=False)
    questions = []
    assert not Dependencies(_requirements(tmp_path, "numpy", "cxrweakloc-absent>=1.0")).ensure(
        lambda question: questions.append(question) or True)
    assert len(questions) == 1 and "cxrweakloc-absent>=1.0" in questions[0]
    ((how, requirements, constraints, prompt, requester),) = installs
    assert (how, requirements, prompt, requester) == (
        "pip_ensure", ["cxrweakloc-absent>=1.0"], False, "CXRWeakLoc")
    assert f"numpy=={np.__version__}" in constraints.split()


def test_dependencies_before_5_12_pip_install_and_ask_for_a_restart(tmp_path, monkeypatch,
                                                                    installs):
    from CXRWeakLocModuleLib.dependencies import Dependencies

    monkeypatch.setitem(sys.modules, "slicer.packaging", None)  # Slicer 5.8 to 5.10
    assert not Dependencies(_requirements(tmp_path, "cxrweakloc-absent")).ensure(lambda q: True)
    ((how, args),) = installs
    assert how == "pip" and args[:2] == ["cxrweakloc-absent", "--constraint"]
    # pytest is imported here: replacing it needs a restart
    assert Dependencies(_requirements(tmp_path, "pytest>=999")).ensure(lambda q: True)
    with pytest.raises(RuntimeError, match="not installed: pytest>=999"):
        Dependencies(_requirements(tmp_path, "pytest>=999")).ensure(lambda q: False)


def test_slicer_with_python_older_than_3_10_is_told_plainly(tmp_path, monkeypatch, installs):
    """Slicer 5.8 has Python 3.9: the engine's packages (pydicom 3, ...) cannot install."""
    from CXRWeakLocModuleLib import dependencies

    monkeypatch.setattr(dependencies, "PYTHON_VERSION", (3, 9, 10))
    checked = dependencies.Dependencies(_requirements(tmp_path, "cxrweakloc-absent"))
    assert checked.pythonProblem() == (
        "CXRWeakLoc needs Slicer 5.10 or later: its engine needs Python 3.10+, this Slicer "
        "has Python 3.9.10.")
    with pytest.raises(RuntimeError, match="Slicer 5.10 or later"):
        checked.ensure(lambda question: True)
    assert installs == []


def test_terminology_registers_the_findings(scene):
    import slicer
    import vtk
    from CXRWeakLocModuleLib.registration import registerTerminology

    from CXRWeakLocLib.export.seg_nrrd import TERMINOLOGY_CONTEXT

    terminologies = slicer.vtkSlicerTerminologiesModuleLogic()
    assert registerTerminology(terminologies) == TERMINOLOGY_CONTEXT
    names = vtk.vtkStringArray()
    terminologies.GetLoadedTerminologyNames(names)
    assert TERMINOLOGY_CONTEXT in [names.GetValue(i) for i in range(names.GetNumberOfValues())]
    for finding in FINDINGS:
        entry = slicer.vtkSlicerTerminologyEntry()
        assert terminologies.FindTypeInTerminologyBy3dSlicerLabel(
            TERMINOLOGY_CONTEXT, finding, entry), finding
        assert entry.GetTypeObject().GetCodeValue() == finding_by_name(finding).code.value
    with pytest.raises(RuntimeError, match="could not load"):
        registerTerminology(terminologies, MODULE_DIR / "Resources" / "requirements.txt")


def test_sample_is_the_engines_synthetic_radiograph(scene, logic_module, tmp_path):
    """The shipped sample is what ``cxrweakloc sample`` draws (no patient's image), and
    it is registered for the Sample Data module with its checksum."""
    import hashlib

    from CXRWeakLocModuleLib.registration import SAMPLE_CATEGORY, registerSampleData

    from CXRWeakLocLib.cli import main
    from CXRWeakLocLib.core.radiograph import read_radiograph

    assert main(["sample", str(tmp_path / "sample.png")]) == 0
    sample = logic_module.SAMPLE_FILE
    assert np.array_equal(read_radiograph(sample).pixels,
                          read_radiograph(tmp_path / "sample.png").pixels)
    logic = logic_module.LocalizationLogic(python=sys.executable)
    volume = logic.loadSample()
    assert logic.sourceFile(volume) == sample
    assert logic.parameters.inputVolume is volume
    logic.cleanup()

    registered = []

    # Slicer's SampleData module's registration, before 5.10 (no categories with titles)
    registerSampleData(types.SimpleNamespace(
        registerCustomSampleDataSource=lambda **source: registered.append(source)))
    (source,) = registered
    assert source["category"] == SAMPLE_CATEGORY
    assert source["uris"] == sample.as_uri() and source["fileNames"] == sample.name
    assert source["checksums"] == f"SHA256:{hashlib.sha256(sample.read_bytes()).hexdigest()}"


def test_devices_come_from_the_driver_without_torch(monkeypatch, tmp_path):
    from CXRWeakLocModuleLib import catalog

    monkeypatch.setenv("PATH", str(tmp_path))
    devices, note = catalog.availableDevices()
    assert [d.value for d in devices] == ["auto", "cpu"] and "No NVIDIA GPU" in note
    fake = tmp_path / "nvidia-smi"  # the driver's tool, as it answers on a two-GPU machine
    fake.write_text("#!/bin/sh\necho 'NVIDIA H200'\necho 'NVIDIA L4'\n")
    fake.chmod(0o755)
    devices, note = catalog.availableDevices()
    assert [(d.value, d.label) for d in devices[2:]] == [
        ("cuda", "GPU 0: NVIDIA H200"), ("cuda:1", "GPU 1: NVIDIA L4")]
    assert note == "Auto uses GPU 0 (NVIDIA H200)."


def test_heatmaps_are_marked_for_the_radiograph_selector(finished):
    import slicer
    from CXRWeakLocModuleLib import mrml

    logic, volume = finished
    hidden = mrml.heatmapNodeIDs(slicer.mrmlScene)  # this run's and the other runs' here
    assert {row.heatmap.GetID() for row in logic.findings} <= set(hidden)
    assert all(slicer.mrmlScene.GetNodeByID(i).GetName().endswith(" heatmap") for i in hidden)
    assert volume.GetID() not in hidden
