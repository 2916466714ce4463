"""Classifier whose class activation maps come out of the same forward pass.

``S_c = sum_k w_ck f_k`` is a 1x1 convolution of the last feature map with the
classifier weights; global average pooling of ``S_c`` plus the bias is exactly the
logit of a GAP + linear classifier (Zhou et al. 2016), so one forward pass yields
the probabilities and the maps of every finding. Trained with ChestX-ray8's weighted
binary cross-entropy (:class:`ClassificationObjective`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.errors import ConfigError
from ..losses import WeightedBCELoss
from ..networks.backbone import BackboneConfig, build_backbone
from .base import Method

__all__ = ["CAM", "CAMClassifier", "ClassificationObjective"]


class CAMClassifier(nn.Module):
    """Backbone features, a 1x1 convolutional classifier, and global average pooling.

    Args:
        backbone: feature extractor configuration.
        num_classes: number of findings.

    ``forward(x)`` returns ``(logits, maps)``: ``(B, C)`` and ``(B, C, h, w)`` where
    ``h, w`` are the input size divided by the output stride; maps exclude the bias.
    """

    def __init__(self, backbone: BackboneConfig, num_classes: int) -> None:
        super().__init__()
        self.backbone = build_backbone(backbone)
        self.classifier = nn.Conv2d(self.backbone.out_channels, num_classes, kernel_size=1)
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps = nn.functional.conv2d(self.backbone(x), self.classifier.weight)
        logits = maps.mean(dim=(2, 3)) + self.classifier.bias
        return logits, maps


class ClassificationObjective:
    """Weighted BCE on the logits of a ``(logits, maps)`` network (CAM classifiers)."""

    def __init__(self, options: dict) -> None:
        if options:
            raise ConfigError(f"[loss]: the classification objective takes no settings "
                              f"(got {', '.join(options)})")
        self.criterion = WeightedBCELoss()

    def __call__(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        logits, _ = model(batch["image"])
        loss = self.criterion(logits.float(), batch["label"], batch["known"])
        return loss, {"bce": loss.item()}


def _build(backbone: BackboneConfig, num_classes: int, options: dict) -> CAMClassifier:
    if options:
        raise ValueError(f"cam takes no options (got {', '.join(options)})")
    return CAMClassifier(backbone, num_classes)


CAM = Method("cam", _build, "class activation maps of a GAP classifier, one forward pass",
             objective=ClassificationObjective)
