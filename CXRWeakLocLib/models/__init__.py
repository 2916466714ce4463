"""Localisation networks. Every one returns ``(logits, maps)`` from ``forward``.

:func:`build_model` turns the ``architecture`` section of a model card into a module.
"""

from __future__ import annotations

from torch import nn

from .backbone import BackboneConfig, ResNetFeatures
from .cam import CAMClassifier
from .gradcam import GradCAMNet

__all__ = ["BackboneConfig", "ResNetFeatures", "CAMClassifier", "GradCAMNet", "build_model",
           "METHODS"]

METHODS = ("cam", "gradcam")


def build_model(architecture: dict, num_classes: int) -> nn.Module:
    """Build the network a model card describes.

    Args:
        architecture: ``{"method": ..., "backbone": {...}, ...}`` as in ``model.json``.
        num_classes: number of findings.
    """
    method = architecture.get("method")
    backbone = BackboneConfig(**architecture.get("backbone", {}))
    if method == "cam":
        return CAMClassifier(backbone, num_classes)
    if method == "gradcam":
        target = architecture.get("target_layer", "backbone.layer4")
        return GradCAMNet(CAMClassifier(backbone, num_classes), target)
    raise ValueError(f"unknown method {method!r} (known: {', '.join(METHODS)})")
