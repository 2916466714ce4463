"""MRML helpers: radiograph and heatmap volumes, the findings segmentation, edit tracking.

Every function takes the nodes it works on; none keeps state except
:class:`EditTracker`. All run with slicer-core (no Qt), so pytest drives them.
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
    "SOURCE_FILE_ATTRIBUTE",
    "EditTracker",
    "loadHeatmap",
    "loadSegmentation",
    "parentUnderStudy",
    "segmentMask",
    "segmentTag",
    "setSegmentMask",
    "showHeatmap",
    "volumeFromRadiograph",
    "writeSegmentation",
]

ALGORITHM_TYPE_TAG = "DICOM.SegmentAlgorithmType"
ALGORITHM_NAME_TAG = "DICOM.SegmentAlgorithmName"
#: Volume attribute: the file a volume was read from (the engine reads that file).
SOURCE_FILE_ATTRIBUTE = "CXRWeakLoc.SourceFile"
#: Heat colour tables, best first (Inferno is a colour file; PET-Heat is built in).
HEAT_COLOR_NODE_IDS = (
    "vtkMRMLColorTableNodeFileInferno.txt",
    "vtkMRMLPETProceduralColorNodePET-Heat",
)
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def volumeFromRadiograph(radiograph, name: str) -> slicer.vtkMRMLScalarVolumeNode:
    """A scalar volume (1 x rows x columns) of a :class:`~CXRWeakLocLib.radiograph.Radiograph`
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


def _readNode(path: Path, name: str, nodeClass: str, storage, what: str):
    """A new ``nodeClass`` node filled by ``storage`` from ``path`` (removed if reading fails)."""
    node = slicer.mrmlScene.AddNewNodeByClass(nodeClass, name)
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        slicer.mrmlScene.RemoveNode(node)
        raise RuntimeError(f"{path}: cannot be read as {what}")
    return node


def loadHeatmap(path: Path, name: str, referenceVolume) -> slicer.vtkMRMLScalarVolumeNode:
    """Read a heatmap NRRD into a scalar volume on ``referenceVolume``'s grid.

    The engine computes each heatmap on the input's own pixel grid, so the volume
    takes the input's IJK-to-RAS (the sizes must agree).
    """
    node = _readNode(path, name, "vtkMRMLScalarVolumeNode",
                     slicer.vtkMRMLVolumeArchetypeStorageNode(), "a heatmap volume")
    size = node.GetImageData().GetDimensions()
    expected = referenceVolume.GetImageData().GetDimensions()
    if size != expected:
        slicer.mrmlScene.RemoveNode(node)
        raise RuntimeError(f"{path}: heatmap is {size}, the input volume is {expected}")
    node.CopyOrientation(referenceVolume)
    return node


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
    """A segment's labelmap as a 2-D bool mask (rows x columns) on ``referenceVolume``'s grid."""
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
    return vtk_to_numpy(scalars).reshape(rows, columns) > 0


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


def writeSegmentation(segmentation, path: Path) -> Path:
    """Write ``.seg.nrrd`` with Slicer's own storage node (overlapping segments kept)."""
    storage = slicer.vtkMRMLSegmentationStorageNode()
    storage.SetFileName(str(path))
    if not storage.WriteData(segmentation):
        raise RuntimeError(f"{path}: Slicer could not write the segmentation")
    return Path(path)


def _digest(mask: np.ndarray) -> str:
    return hashlib.sha1(np.packbits(mask).tobytes()).hexdigest()


class EditTracker:
    """Turns ``DICOM.SegmentAlgorithmType`` from AUTOMATIC to SEMIAUTOMATIC once a
    segment's labelmap differs from what the model wrote (an edit in Segment Editor)."""

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
        """Changes made inside this block are the model's, not the user's."""
        self._paused = True
        try:
            yield
        finally:
            self._paused = False

    def expect(self, segmentId: str, mask: np.ndarray) -> None:
        """Record the model's mask of a segment."""
        self._expected[segmentId] = _digest(np.asarray(mask, dtype=bool))

    def edited(self, segmentId: str) -> bool:
        """Whether the user has changed this segment since the model wrote it."""
        segment = self.segmentation.GetSegmentation().GetSegment(segmentId)
        return segment is not None and segmentTag(segment, ALGORITHM_TYPE_TAG) == "SEMIAUTOMATIC"

    def _onModified(self, caller, event) -> None:
        if self._paused:
            return
        for segmentId, expected in list(self._expected.items()):
            segment = caller.GetSegment(segmentId)
            if segment is None:
                del self._expected[segmentId]
                continue
            mask = segmentMask(self.segmentation, segmentId, self.referenceVolume)
            if _digest(mask) != expected:
                del self._expected[segmentId]
                segment.SetTag(ALGORITHM_TYPE_TAG, "SEMIAUTOMATIC")

    def stop(self) -> None:
        content = self.segmentation.GetSegmentation()
        for observer in self._observers:
            content.RemoveObserver(observer)
        self._observers = []
