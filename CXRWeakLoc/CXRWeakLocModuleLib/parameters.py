"""The module's parameter node: the user's choices and the current results, saved with
the scene (Slicer's ``vtkMRMLScriptedModuleNode``, as ``@parameterNodeWrapper`` uses).

Choices (model, findings, device, threshold) are text parameters; the radiograph, the
findings segmentation and the heatmaps are node references, so they follow the nodes
through a scene save and load; ``results`` is what the findings table needs (each
finding's probability and threshold, the model and its mask rule) as JSON.
"""

from __future__ import annotations

import json

import slicer

__all__ = ["MODULE_NAME", "Parameters"]

MODULE_NAME = "CXRWeakLoc"
_HEATMAP_ROLE = "Heatmap"


class _Text:
    """A text parameter (``default`` when unset)."""

    def __init__(self, key: str, default: str = "") -> None:
        self.key, self.default = key, default

    def __get__(self, parameters, owner=None) -> str:
        return parameters.node.GetParameter(self.key) or self.default

    def __set__(self, parameters, value: str) -> None:
        parameters.node.SetParameter(self.key, str(value))


class _Number:
    """A number parameter (None when unset)."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __get__(self, parameters, owner=None) -> float | None:
        value = parameters.node.GetParameter(self.key)
        return float(value) if value else None

    def __set__(self, parameters, value: float | None) -> None:
        parameters.node.SetParameter(self.key, "" if value is None else repr(float(value)))


class _Reference:
    """A node reference (None when unset or when the node is gone)."""

    def __init__(self, role: str) -> None:
        self.role = role

    def __get__(self, parameters, owner=None):
        return parameters.node.GetNodeReference(self.role)

    def __set__(self, parameters, node) -> None:
        parameters.node.SetNodeReferenceID(self.role, node.GetID() if node else None)


class Parameters:
    """Typed access to the module's parameter node."""

    model = _Text("Model")
    findings = _Text("Findings", "positive")
    device = _Text("Device", "auto")
    threshold = _Number("Threshold")
    inputVolume = _Reference("InputVolume")  # noqa: N815 (Slicer's camelCase)
    segmentation = _Reference("Segmentation")

    def __init__(self, node) -> None:
        self.node = node

    @classmethod
    def of(cls, scene) -> Parameters:
        """The scene's CXRWeakLoc parameter node, made when there is none."""
        nodes = scene.GetNodesByClass("vtkMRMLScriptedModuleNode")
        for index in range(nodes.GetNumberOfItems()):
            node = nodes.GetItemAsObject(index)
            if node.GetAttribute("ModuleName") == MODULE_NAME:
                return cls(node)
        node = slicer.vtkMRMLScriptedModuleNode()
        node.SetName(scene.GenerateUniqueName(MODULE_NAME))
        node.SetAttribute("ModuleName", MODULE_NAME)
        node.SetSingletonTag(MODULE_NAME)
        return cls(scene.AddNode(node))

    @property
    def heatmaps(self) -> list:
        """The heatmap volumes, in the order of ``results["findings"]``."""
        count = self.node.GetNumberOfNodeReferences(_HEATMAP_ROLE)
        return [self.node.GetNthNodeReference(_HEATMAP_ROLE, i) for i in range(count)]

    @heatmaps.setter
    def heatmaps(self, nodes) -> None:
        self.node.RemoveNodeReferenceIDs(_HEATMAP_ROLE)
        for node in nodes:
            self.node.AddNodeReferenceID(_HEATMAP_ROLE, node.GetID())

    @property
    def results(self) -> dict | None:
        """What the findings table needs (None when there are no results)."""
        text = self.node.GetParameter("Results")
        return json.loads(text) if text else None

    @results.setter
    def results(self, value: dict | None) -> None:
        self.node.SetParameter("Results", json.dumps(value) if value else "")
