"""Grad-CAM on a trained classifier, through captum's ``LayerGradCam``.

Grad-CAM needs one backward pass per finding; it is the baseline the in-model CAM
is measured against (same network, same input). On a GAP + linear head Grad-CAM
equals ReLU(CAM) up to scale at the last stage, so the shipped ``gradcam`` model
targets that stage by default and is kept to show the cost difference and as a
method that works on any classifier. :func:`gradcam_from_cam` turns a trained ``cam``
model into a ``gradcam`` one (same weights), as the shipped ``gradcam`` was made.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from ..core.card import ModelCard
from ..core.errors import refuse_unknown
from ..networks.backbone import BackboneConfig
from .base import Method
from .cam import CAMClassifier

__all__ = ["GRADCAM", "GradCAMNet", "default_target_layer", "gradcam_from_cam"]


class GradCAMNet(nn.Module):
    """Wraps a ``(logits, maps)`` classifier so that ``maps`` are Grad-CAM maps.

    Args:
        classifier: a module whose forward returns ``(logits, maps)``.
        target_layer: dotted name of the layer whose activations are attributed.
    """

    def __init__(self, classifier: nn.Module, target_layer: str) -> None:
        super().__init__()
        self.classifier = classifier
        self.target_layer = target_layer
        self.num_classes = classifier.num_classes
        from captum.attr import LayerGradCam  # here: localising with other methods skips captum

        self._gradcam = LayerGradCam(self._logits, classifier.get_submodule(target_layer))

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x)[0]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            logits = self._logits(x)
        with torch.enable_grad():
            inputs = x.detach().requires_grad_(True)
            maps = [
                self._gradcam.attribute(inputs, target=c, relu_attributions=True).detach()
                for c in range(self.num_classes)
            ]
        return logits, torch.cat(maps, dim=1)


def default_target_layer(classifier: CAMClassifier) -> str:
    """The layer Grad-CAM attributes by default: the backbone's last feature map."""
    return f"backbone.{classifier.backbone.cam_layer}"


def _build(backbone: BackboneConfig, num_classes: int, options: dict) -> GradCAMNet:
    refuse_unknown(options, {"target_layer"}, "gradcam options: unknown", ValueError)
    classifier = CAMClassifier(backbone, num_classes)
    return GradCAMNet(classifier,
                      options.get("target_layer") or default_target_layer(classifier))


def gradcam_from_cam(card: ModelCard, network: CAMClassifier,
                     name: str) -> tuple[ModelCard, GradCAMNet]:
    """A ``gradcam`` card and network with a trained ``cam`` model's weights.

    Args:
        card: the cam model's card (its metrics are not carried over).
        network: the cam model's trained classifier.
        name: the new model's name.
    """
    target = default_target_layer(network)
    gradcam_card = replace(
        card, name=name, method="gradcam", metrics={},
        architecture={**card.architecture, "options": {"target_layer": target}},
        description="Grad-CAM (captum LayerGradCam, one backward pass per finding) on the "
                    f"{card.name} model's network and weights.")
    wrapped = _build(BackboneConfig(**card.architecture.get("backbone", {})), len(card.findings),
                     {"target_layer": target})
    wrapped.classifier.load_state_dict(network.state_dict())
    return gradcam_card, wrapped


GRADCAM = Method("gradcam", _build,
                 "Grad-CAM of a trained cam classifier (one backward pass per finding)",
                 training=None, gradients_at_inference=True)
