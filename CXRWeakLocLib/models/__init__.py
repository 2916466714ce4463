"""Localisation networks. Every one returns ``(logits, maps)`` from ``forward``.

``maps`` are in the frame of the network's input (the resized radiograph): a method
that works in another frame (e.g. an aligned one) maps back inside ``forward``, so
the Localizer stays method-agnostic. :func:`build_model` turns the
``architecture`` section of a model card into a module through :data:`BUILDERS`.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .backbone import BackboneConfig, ResNetFeatures
from .cam import CAMClassifier
from .dm import build_dm
from .gradcam import GradCAMNet
from .ham import build_ham
from .taggan import build_taggan
from .vagan import build_vagan

__all__ = ["BackboneConfig", "ResNetFeatures", "CAMClassifier", "GradCAMNet", "build_model",
           "BUILDERS", "METHODS"]


def _cam(backbone: BackboneConfig, num_classes: int, options: dict) -> nn.Module:
    if options:
        raise ValueError(f"cam takes no options (got {', '.join(options)})")
    return CAMClassifier(backbone, num_classes)


def _gradcam(backbone: BackboneConfig, num_classes: int, options: dict) -> nn.Module:
    unknown = set(options) - {"target_layer"}
    if unknown:
        raise ValueError(f"gradcam options: unknown {', '.join(sorted(unknown))}")
    classifier = CAMClassifier(backbone, num_classes)
    return GradCAMNet(classifier, options.get("target_layer",
                                              f"backbone.{classifier.backbone.cam_layer}"))


#: method name -> builder(backbone config, number of findings, options) -> network
BUILDERS: dict[str, Callable[[BackboneConfig, int, dict], nn.Module]] = {
    "cam": _cam,
    "gradcam": _gradcam,
    "dm": build_dm,
    "ham": build_ham,
    "taggan": build_taggan,
    "vagan": build_vagan,
}
METHODS = tuple(BUILDERS)


def build_model(architecture: dict, num_classes: int) -> nn.Module:
    """Build the network a model card describes.

    Args:
        architecture: ``{"method": ..., "backbone": {...}, "options": {...}}`` as in
            ``model.json``.
        num_classes: number of findings.
    """
    method = architecture.get("method")
    if method not in BUILDERS:
        raise ValueError(f"unknown method {method!r} (known: {', '.join(BUILDERS)})")
    backbone = BackboneConfig(**architecture.get("backbone", {}))
    return BUILDERS[method](backbone, num_classes, dict(architecture.get("options", {})))
