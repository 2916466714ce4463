"""A real Slicer MRML scene for tests, from PyPI's ``slicer-core`` (no Qt, no application).

Sets up the application logic and the module logics Slicer's segmentation and
volume code needs (see /work/shared/docs/SLICER.md, "Testing without the Slicer
application"), and reads files with Slicer's own storage nodes. Tests using it
skip when ``slicer-core`` is not installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest


@dataclass
class SlicerScene:
    """A scene with its application logic and the module logics registered in it."""

    slicer: object  # the ``slicer`` module, with ``slicer.mrmlScene`` set
    scene: object
    app_logic: object
    segmentations_logic: object
    volumes_logic: object

    def read_segmentation(self, path: Path):
        """A segmentation node read by ``vtkMRMLSegmentationStorageNode``."""
        slicer = self.slicer
        node = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", path.name)
        storage = self.scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
        storage.SetFileName(str(path))
        if not storage.ReadData(node):
            raise OSError(f"Slicer could not read {path}")
        node.SetAndObserveStorageNodeID(storage.GetID())
        assert slicer.mrmlScene is self.scene
        return node

    def segment_masks(self, node, shape: tuple[int, int]) -> dict[str, np.ndarray]:
        """Each segment's mask by name, as a bool image of ``shape`` (rows, columns).

        A 2-D image is a ``W H 1`` volume, so the k = 0 slice is returned; voxel
        (i, j) of a segment's labelmap extent goes to ``[j, i]``.
        """
        from vtk.util.numpy_support import vtk_to_numpy

        segmentation = node.GetSegmentation()
        masks = {}
        for index in range(segmentation.GetNumberOfSegments()):
            segment_id = segmentation.GetNthSegmentID(index)
            segment = segmentation.GetSegment(segment_id)
            # The layer's labelmap as Slicer holds it; the segment is its label value.
            labelmap = node.GetBinaryLabelmapInternalRepresentation(segment_id)
            full = np.zeros(shape, dtype=bool)
            i0, i1, j0, j1, _, _ = labelmap.GetExtent()
            if i0 <= i1 and j0 <= j1:
                values = vtk_to_numpy(labelmap.GetPointData().GetScalars())
                layer = values.reshape(j1 - j0 + 1, i1 - i0 + 1)
                full[j0:j1 + 1, i0:i1 + 1] = layer == segment.GetLabelValue()
            masks[segment.GetName()] = full
        return masks


@contextmanager
def slicer_scene() -> Iterator[SlicerScene]:
    """A fresh scene with the logics registered; ``slicer.mrmlScene`` points at it."""
    slicer = pytest.importorskip("slicer", reason="slicer-core is not installed")
    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    logics = {}
    for module, cls in (
        ("Colors", slicer.vtkSlicerColorLogic),
        ("Segmentations", slicer.vtkSlicerSegmentationsModuleLogic),
        ("Volumes", slicer.vtkSlicerVolumesLogic),
    ):
        logic = cls()
        logic.SetMRMLApplicationLogic(app_logic)
        logic.SetMRMLScene(scene)
        app_logic.SetModuleLogic(module, logic)
        logics[module] = logic
    previous = getattr(slicer, "mrmlScene", None)
    slicer.mrmlScene = scene
    try:
        yield SlicerScene(
            slicer, scene, app_logic, logics["Segmentations"], logics["Volumes"]
        )
    finally:
        slicer.mrmlScene = previous
        scene.Clear(True)
