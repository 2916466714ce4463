"""Grad-CAM on a trained classifier, through captum's ``LayerGradCam``.

Grad-CAM needs one backward pass per finding; it is the baseline the in-model CAM
is measured against (same network, same input). On a GAP + linear head Grad-CAM
equals ReLU(CAM) up to scale at the last stage, so the shipped ``gradcam`` model
targets that stage by default and is kept to show the cost difference and as a
method that works on any classifier.
"""

from __future__ import annotations

import torch
from captum.attr import LayerGradCam
from torch import nn

__all__ = ["GradCAMNet"]


class GradCAMNet(nn.Module):
    """Wraps a ``(logits, maps)`` classifier so that ``maps`` are Grad-CAM maps.

    Args:
        classifier: a module whose forward returns ``(logits, maps)``.
        target_layer: dotted name of the layer whose activations are attributed.
    """

    #: Grad-CAM backpropagates at inference: the Localizer must not disable autograd.
    needs_gradients = True

    def __init__(self, classifier: nn.Module, target_layer: str) -> None:
        super().__init__()
        self.classifier = classifier
        self.target_layer = target_layer
        self.num_classes = classifier.num_classes
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
