"""Classifier whose class activation maps come out of the same forward pass.

``S_c = sum_k w_ck f_k`` is a 1x1 convolution of the last feature map with the
classifier weights; global average pooling of ``S_c`` plus the bias is exactly the
logit of a GAP + linear classifier (Zhou et al. 2016), so one forward pass yields
the probabilities and the maps of every finding.
"""

from __future__ import annotations

import torch
from torch import nn

from .backbone import BackboneConfig, build_backbone

__all__ = ["CAMClassifier"]


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
