"""MRML helpers: radiograph and heatmap volumes, the findings segmentation, edit tracking,
overlap in the Segment Editor.

Every function takes the nodes it works on; only :class:`EditTracker` and
:class:`OverlapInSegmentEditor` keep state. All run with slicer-core (no Qt), so
pytest drives them.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import numpy as np
import slicer
import vtk
from vtk.util.numpy_support import vtk_to_numpy

__all__ = [
    "ALGORITHM_NAME_TAG",
    "ALGORITHM_TYPE_TAG",
    "HEATMAP_ROLE",
    "FINDINGS_ROLE",
    "ROLE_ATTRIBUTE",
    "SOURCE_FILE_ATTRIBUTE",
    "EditTracker",
    "OverlapInSegmentEditor",
    "heatmapGeometry",
    "heatmapNodeIDs",
    "heatmapOnInput",
    "loadHeatmap",
    "loadSegmentation",
    "parentUnderStudy",
    "radiographGeometry",
    "segmentMask",
    "segmentTag",
    "setSegmentMask",
    "showHeatmap",
    "volumeFromRadiograph",
]

ALGORITHM_TYPE_TAG = "DICOM.SegmentAlgorithmType"
ALGORITHM_NAME_TAG = "DICOM.SegmentAlgorithmName"
#: Volume attribute: the file a volume was read from (the engine reads that file).
SOURCE_FILE_ATTRIBUTE = "CXRWeakLoc.SourceFile"
#: Node attribute marking the module's results (saved with the scene).
ROLE_ATTRIBUTE = "CXRWeakLoc.Role"
HEATMAP_ROLE = "heatmap"
FINDINGS_ROLE = "findings"
#: Segment Editor node attribute: its overwrite mode before it edited findings.
OVERWRITE_MODE_BEFORE_ATTRIBUTE = "CXRWeakLoc.OverwriteModeBefore"
#: Heat colour tables, best first (Inferno is a colour file; PET-Heat is built in).
HEAT_COLOR_NODE_IDS = (
    "vtkMRMLColorTableNodeFileInferno.txt",
    "vtkMRMLPETProceduralColorNodePET-Heat",
)
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def volumeFromRadiograph(radiograph, name: str) -> slicer.vtkMRMLScalarVolumeNode:
    """A scalar volume (1 x rows x columns) of a :class:`~CXRWeakLocLib.core.radiograph.Radiograph`
    with its geometry: i = column, j = row, LPS converted to RAS."""
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    slicer.util.updateVolumeFromArray(node, radiograph.pixels[np.newaxis])
    directions = _LPS_TO_RAS @ np.asarray(radiograph.direction, dtype=float)
    matrix = np.eye(4)
    matrix[:3, :3] = directions @ np.diag([*radiograph.spacing, 1.0])
    matrix[:3, 3] = _LPS_TO_RAS @ np.asarray(radiograph.origin, dtype=float)
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(matrix))
    node.CreateDefaultDisplayNodes()
    if radiograph.source is not None:
        node.SetAttribute(SOURCE_FILE_ATTRIBUTE, str(radiograph.source))
    return node


def radiographGeometry(volume):
    """A :class:`~CXRWeakLocLib.core.radiograph.Radiograph` with ``volume``'s pixels and
    geometry (RAS converted back to LPS), for the engine's writers."""
    from CXRWeakLocLib.core.radiograph import Radiograph

    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    matrix = _LPS_TO_RAS @ slicer.util.arrayFromVTKMatrix(matrix)[:3]
    spacing = np.linalg.norm(matrix[:, :3], axis=0)
    return Radiograph(pixels=slicer.util.arrayFromVolume(volume)[0],
                      spacing=(float(spacing[0]), float(spacing[1])),
                      origin=tuple(float(v) for v in matrix[:, 3]),
                      direction=matrix[:, :3] / spacing)


def _readNode(path: Path, name: str, nodeClass: str, storage, what: str):
    """A new ``nodeClass`` node filled by ``storage`` from ``path`` (removed if reading fails)."""
    node = slicer.mrmlScene.AddNewNodeByClass(nodeClass, name)
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        slicer.mrmlScene.RemoveNode(node)
        raise RuntimeError(f"{path}: cannot be read as {what}")
    return node


def heatmapNodeIDs(scene) -> list[str]:
    """IDs of the heatmap volumes in ``scene`` (kept out of the Radiograph selector)."""
    found = scene.GetNodesByClass("vtkMRMLScalarVolumeNode")
    volumes = [found.GetItemAsObject(i) for i in range(found.GetNumberOfItems())]
    return [v.GetID() for v in volumes if v.GetAttribute(ROLE_ATTRIBUTE) == HEATMAP_ROLE]


def heatmapGeometry(shape: tuple[int, int], referenceVolume) -> np.ndarray:
    """The IJK-to-RAS matrix of a heatmap grid of ``shape`` (rows, columns) whose cells
    tile ``referenceVolume`` (:func:`CXRWeakLocLib.core.heatmaps.grid_matrix`)."""
    from CXRWeakLocLib.core.heatmaps import grid_matrix

    matrix = vtk.vtkMatrix4x4()
    referenceVolume.GetIJKToRASMatrix(matrix)
    columns, rows, _ = referenceVolume.GetImageData().GetDimensions()
    return grid_matrix(slicer.util.arrayFromVTKMatrix(matrix), (rows, columns), shape)


def loadHeatmap(path: Path, name: str, referenceVolume) -> slicer.vtkMRMLScalarVolumeNode:
    """Read a heatmap NRRD into a scalar volume over ``referenceVolume``.

    The engine writes a heatmap at the model's resolution, a grid of cells tiling the
    input (or at the input's own grid); the file's geometry must be that placement
    (within a micrometre), and the volume takes it exactly from the input's. Only the
    in-plane axes and the origin are compared: of a single slice, Slicer's reader may
    turn the third axis to make the frame right-handed.
    """
    node = _readNode(path, name, "vtkMRMLScalarVolumeNode",
                     slicer.vtkMRMLVolumeArchetypeStorageNode(), "a heatmap volume")
    columns, rows, slices = node.GetImageData().GetDimensions()
    expected = heatmapGeometry((rows, columns), referenceVolume)
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    inPlane = [0, 1, 3]
    if slices != 1 or not np.allclose(slicer.util.arrayFromVTKMatrix(matrix)[:, inPlane],
                                      expected[:, inPlane], rtol=0.0, atol=1e-3):
        slicer.mrmlScene.RemoveNode(node)
        raise RuntimeError(f"{path}: the heatmap does not lie over the input volume")
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(expected))
    node.SetAttribute(ROLE_ATTRIBUTE, HEATMAP_ROLE)
    return node


def heatmapOnInput(heatmap, referenceVolume) -> np.ndarray:
    """A heatmap volume on ``referenceVolume``'s pixel grid (rows x columns), resampled
    by the engine's :func:`CXRWeakLocLib.core.heatmaps.resample_heatmap`: masks are
    drawn at the input's resolution, as the engine draws them."""
    from CXRWeakLocLib.core.heatmaps import resample_heatmap

    columns, rows, _ = referenceVolume.GetImageData().GetDimensions()
    return resample_heatmap(slicer.util.arrayFromVolume(heatmap)[0], (rows, columns))


def showHeatmap(heatmap, background, opacity: float = 0.4) -> None:
    """Heatmap as the foreground layer over ``background``, with a heat colour table."""
    display = heatmap.GetDisplayNode()
    if display is None:
        heatmap.CreateDefaultDisplayNodes()
        display = heatmap.GetDisplayNode()
    colorId = next((i for i in HEAT_COLOR_NODE_IDS if slicer.mrmlScene.GetNodeByID(i)), None)
    if colorId:
        display.SetAndObserveColorNodeID(colorId)
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, 1.0)
    slicer.util.setSliceViewerLayers(
        background=background, foreground=heatmap, foregroundOpacity=opacity)


def loadSegmentation(path: Path, referenceVolume, name: str) -> slicer.vtkMRMLSegmentationNode:
    """Read a ``.seg.nrrd`` with Slicer's storage node (segment names, colours and tags
    as the engine wrote them), its reference geometry the input volume."""
    node = _readNode(path, name, "vtkMRMLSegmentationNode",
                     slicer.vtkMRMLSegmentationStorageNode(), "a segmentation")
    node.SetReferenceImageGeometryParameterFromVolumeNode(referenceVolume)
    node.CreateDefaultDisplayNodes()
    node.SetAttribute(ROLE_ATTRIBUTE, FINDINGS_ROLE)
    return node


def _referenceImage(volume) -> slicer.vtkOrientedImageData:
    """An empty oriented image with ``volume``'s extent and IJK-to-RAS."""
    image = slicer.vtkOrientedImageData()
    image.SetExtent(volume.GetImageData().GetExtent())
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    image.SetImageToWorldMatrix(matrix)
    return image


def setSegmentMask(segmentation, segmentId: str, mask: np.ndarray, referenceVolume) -> None:
    """Replace a segment's labelmap with a 2-D mask on ``referenceVolume``'s grid."""
    image = _referenceImage(referenceVolume)
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    vtk_to_numpy(image.GetPointData().GetScalars())[:] = np.asarray(mask, dtype=np.uint8).ravel()
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    if not logic.SetBinaryLabelmapToSegment(image, segmentation, segmentId, logic.MODE_REPLACE):
        raise RuntimeError(f"cannot set the labelmap of segment {segmentId}")


def segmentMask(segmentation, segmentId: str, referenceVolume) -> np.ndarray:
    """A segment's labelmap as a 2-D bool mask (rows x columns) on ``referenceVolume``'s grid.

    Segments that do not overlap share a layer, each with its own label value; the
    layer is resampled as it is and the segment is the voxels of its label value.
    """
    labelValue = segmentation.GetSegmentation().GetSegment(segmentId).GetLabelValue()
    labelmap = slicer.vtkOrientedImageData()
    slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(
        segmentation, segmentId, labelmap)
    resampled = _referenceImage(referenceVolume)
    columns, rows, _ = resampled.GetDimensions()
    scalars = None
    if labelmap.GetPointData().GetScalars() is not None:
        slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
            labelmap, resampled, resampled)
        scalars = resampled.GetPointData().GetScalars()
    if scalars is None:  # an empty segment
        return np.zeros((rows, columns), dtype=bool)
    return vtk_to_numpy(scalars).reshape(rows, columns) == labelValue


def segmentTag(segment, key: str) -> str:
    """A segment's tag value ('' when absent)."""
    value = vtk.reference("")
    return str(value) if segment.GetTag(key, value) else ""


def _hierarchyItem(hierarchy, node) -> int:
    item = hierarchy.GetItemByDataNode(node)
    return item or hierarchy.CreateItem(hierarchy.GetSceneItemID(), node)


def parentUnderStudy(nodes, referenceVolume) -> None:
    """Put ``nodes`` in the subject hierarchy beside the input (under its study)."""
    hierarchy = slicer.mrmlScene.GetSubjectHierarchyNode()
    parent = hierarchy.GetItemParent(_hierarchyItem(hierarchy, referenceVolume))
    for node in nodes:
        hierarchy.SetItemParent(_hierarchyItem(hierarchy, node), parent)


def _digest(mask: np.ndarray) -> str:
    return hashlib.sha1(np.packbits(mask).tobytes()).hexdigest()


class EditTracker:
    """Turns ``DICOM.SegmentAlgorithmType`` from AUTOMATIC to SEMIAUTOMATIC once a
    segment's labelmap differs from what the model wrote (an edit in Segment Editor).

    The tracker's own tag changes, and the module's writes made inside
    :meth:`writing`, are not edits.
    """

    def __init__(self, segmentation, referenceVolume) -> None:
        self.segmentation = segmentation
        self.referenceVolume = referenceVolume
        self._expected: dict[str, str] = {}
        self._paused = False
        content = segmentation.GetSegmentation()
        self._observers = [
            content.AddObserver(event, self._onModified)
            for event in (slicer.vtkSegmentation.SegmentModified,
                          slicer.vtkSegmentation.SourceRepresentationModified)
        ]

    @contextlib.contextmanager
    def writing(self):
        """Changes made inside this block are the module's, not the user's."""
        paused, self._paused = self._paused, True
        try:
            yield
        finally:
            self._paused = paused

    def expect(self, segmentId: str, mask: np.ndarray) -> None:
        """Record the model's mask of a segment."""
        self._expected[segmentId] = _digest(np.asarray(mask, dtype=bool))

    def expectCurrent(self) -> None:
        """Take every segment not edited yet as the model left it (a restored scene)."""
        content = self.segmentation.GetSegmentation()
        for index in range(content.GetNumberOfSegments()):
            segmentId = content.GetNthSegmentID(index)
            if not self.edited(segmentId):
                self.expect(segmentId,
                            segmentMask(self.segmentation, segmentId, self.referenceVolume))

    def edited(self, segmentId: str) -> bool:
        """Whether the user has changed this segment since the model wrote it."""
        segment = self.segmentation.GetSegmentation().GetSegment(segmentId)
        return segment is not None and segmentTag(segment, ALGORITHM_TYPE_TAG) == "SEMIAUTOMATIC"

    def _onModified(self, caller, event) -> None:
        # Segments stay expected once edited: an undo brings back the model's mask with
        # its AUTOMATIC tag (or a removed segment), and the next edit must flip it again.
        if self._paused:
            return
        with self.writing():  # the tags set below modify the segments again
            for segmentId, expected in self._expected.items():
                segment = caller.GetSegment(segmentId)
                if (segment is not None and not self.edited(segmentId)
                        and _digest(segmentMask(self.segmentation, segmentId,
                                                self.referenceVolume)) != expected):
                    segment.SetTag(ALGORITHM_TYPE_TAG, "SEMIAUTOMATIC")

    def stop(self) -> None:
        content = self.segmentation.GetSegmentation()
        for observer in self._observers:
            content.RemoveObserver(observer)
        self._observers = []


class OverlapInSegmentEditor:
    """Lets findings overlap while the Segment Editor edits a findings segmentation.

    Findings overlap by nature (an effusion under atelectasis), but the editor's
    default "overwrite all" carves every other segment when one is painted. While an
    editor node (``vtkMRMLSegmentEditorNode``) edits a segmentation with the findings
    role, its overwrite mode is "allow overlap"; when it moves to another segmentation,
    the mode it had before comes back. The mode to restore is kept on the editor node
    itself, so several observers agree and it survives a scene save; a mode the user
    picks while editing findings is left alone.
    """

    def __init__(self, scene) -> None:
        self.scene = scene
        self._editors: dict[str, tuple[object, int, str | None]] = {}
        self._sceneObserver = scene.AddObserver(slicer.vtkMRMLScene.NodeAddedEvent,
                                                self._watchEditors)
        self._watchEditors()

    def _watchEditors(self, caller=None, event=None) -> None:
        editors = self.scene.GetNodesByClass("vtkMRMLSegmentEditorNode")
        for index in range(editors.GetNumberOfItems()):
            editor = editors.GetItemAsObject(index)
            if editor.GetID() not in self._editors:
                observer = editor.AddObserver(vtk.vtkCommand.ModifiedEvent,
                                              self._onEditorModified)
                self._editors[editor.GetID()] = (editor, observer, None)
                self._onEditorModified(editor)

    def _onEditorModified(self, editor, event=None) -> None:
        _, observer, editedId = self._editors[editor.GetID()]
        segmentation = editor.GetSegmentationNode()
        segmentationId = segmentation.GetID() if segmentation is not None else None
        if segmentationId == editedId:
            return
        self._editors[editor.GetID()] = (editor, observer, segmentationId)
        ours = (segmentation is not None
                and segmentation.GetAttribute(ROLE_ATTRIBUTE) == FINDINGS_ROLE)
        before = editor.GetAttribute(OVERWRITE_MODE_BEFORE_ATTRIBUTE)
        if ours and before is None:
            editor.SetAttribute(OVERWRITE_MODE_BEFORE_ATTRIBUTE, str(editor.GetOverwriteMode()))
            editor.SetOverwriteMode(slicer.vtkMRMLSegmentEditorNode.OverwriteNone)
        elif not ours and before is not None:
            editor.RemoveAttribute(OVERWRITE_MODE_BEFORE_ATTRIBUTE)
            editor.SetOverwriteMode(int(before))

    def stop(self) -> None:
        self.scene.RemoveObserver(self._sceneObserver)
        for editor, observer, _ in self._editors.values():
            editor.RemoveObserver(observer)
        self._editors = {}
