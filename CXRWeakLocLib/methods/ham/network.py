"""HAM: hierarchical attention mining (Ouyang et al. 2021; public code oyxhust/HAM).

A dilated ResNet (output stride 8) feeds a foreground-attention (FA) block; the
features and their FA-refined copy are fused by a 3x3 convolution, pooled by
log-sum-exp, and read by two bias-free linear heads: **anomaly** (one output, "any
finding") and **class** (one per finding). Each head's class activation map is a 1x1
convolution of the fused features with that head's (detached) weights, so the
attention losses of :mod:`~CXRWeakLocLib.methods.ham.objective` shape the features and not
the classifiers. The map a user sees (``options.heatmap``) is the class CAM upsampled
to the input and min-max normalised per image and finding (``"cam"``), or the paper's
*refined* map ``sigmoid(100 (x - 0.4))`` of it (``"refined"``, the default of older
cards). The paper's binary map is refined >= 0.999, i.e. min-max map >= ~0.469: the
same mask from either heatmap, but the refined map saturates into plateaus of 1.0,
which leave a radiologist no gradation to read and the mask rules and the pointing
game nothing to rank.

The paper uses ResNet-50 at 512 px; ours is the same half-width ResNet-18 as the
shipped ``cam`` model (1,000 training images and a CPU make it the right size), so a
HAM run can start from the ``cam`` model's backbone (``[model] init_from``). Head
widths as in the public code: FA inner width = features / 4; the fused width is the
public code's fixed 512, which equals its ResNet-18's features, so ours defaults to
the backbone's features (256 for the half-width ResNet-18).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from ...core.errors import refuse_unknown
from ...networks.backbone import BackboneConfig, build_backbone

__all__ = ["HAMOptions", "HAMOutput", "HAMNet", "FABlock", "FAModule", "build_ham",
           "HEATMAPS", "lse_pool", "minmax_cams", "refine_cams"]


@dataclass(frozen=True)
class HAMOptions:
    """Architecture options of :class:`HAMNet` (``[model] options`` in a run config)."""

    #: log-sum-exp pooling sharpness r (large: max pooling, small: average pooling)
    lse_r: float = 6.0
    #: channels of the fused head; 0 = the backbone's output channels
    head_channels: int = 0
    #: channel-attention MLP reduction in the FA block
    fa_reduction: int = 8
    #: Dropout2d probability after the fused head
    dropout: float = 0.1
    #: refined map = sigmoid(refine_sharpness * (min-max CAM - refine_center))
    refine_center: float = 0.4
    refine_sharpness: float = 100.0
    #: the map ``forward`` returns: "cam" (min-max CAM) or "refined" (see the module doc)
    heatmap: str = "refined"

    @classmethod
    def from_dict(cls, options: dict) -> HAMOptions:
        refuse_unknown(options, cls, "ham options: unknown", ValueError)
        values = cls(**options)
        if values.heatmap not in HEATMAPS:
            raise ValueError(f"ham options: heatmap {values.heatmap!r} is not one of "
                             f"{', '.join(HEATMAPS)}")
        return values


#: The heatmaps :class:`HAMNet` can show (``HAMOptions.heatmap``).
HEATMAPS = ("cam", "refined")


class HAMOutput(NamedTuple):
    """Everything one HAM forward pass computes (for the training objective).

    ``class_cams`` ``(B, C, h, w)`` and ``anomaly_cam`` ``(B, 1, h, w)`` are ReLU CAMs
    at feature resolution, computed with detached head weights.
    """

    class_logits: torch.Tensor
    anomaly_logits: torch.Tensor
    class_cams: torch.Tensor
    anomaly_cam: torch.Tensor


def lse_pool(x: torch.Tensor, r: float) -> torch.Tensor:
    """Log-sum-exp pooling ``(logsumexp(r x) - log HW) / r`` of ``(B, C, H, W)`` -> ``(B, C)``.

    Tends to the maximum as ``r`` grows and to the mean as ``r`` goes to 0.
    """
    flat = x.flatten(2)
    return (torch.logsumexp(r * flat, dim=2) - math.log(flat.shape[2])) / r


def minmax_cams(cams: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """CAMs upsampled (bilinear) to ``size`` and min-max normalised per image and class."""
    maps = nn.functional.interpolate(cams, size=size, mode="bilinear", align_corners=False)
    flat = maps.flatten(2)
    low = flat.amin(dim=2, keepdim=True)
    high = flat.amax(dim=2, keepdim=True)
    return ((flat - low) / (high - low).clamp(min=1e-5)).view_as(maps)


def refine_cams(cams: torch.Tensor, size: tuple[int, int], center: float = 0.4,
                sharpness: float = 100.0) -> torch.Tensor:
    """HAM's refined maps: :func:`minmax_cams`, then ``sigmoid(s (x - c))``."""
    return torch.sigmoid(sharpness * (minmax_cams(cams, size) - center))


def _conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)


class FABlock(nn.Module):
    """Foreground attention: channel attention from spatial-softmax pooling, a spatial gate.

    ``out = gamma * gated + x`` where ``gated`` is a one-channel map broadcast over the
    channels and ``gamma`` is learned, starting at 0 (the block starts as the identity).

    Args:
        channels: input (= output) channels.
        reduction: reduction of the channel-attention MLP.
    """

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        self.pool_logits = nn.Conv2d(channels, 1, kernel_size=1, bias=False)
        hidden = max(1, channels // reduction)
        self.channel_mlp = nn.Sequential(
            nn.Linear(channels, hidden, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels, bias=False),
        )
        self.project = nn.Conv2d(channels, channels, kernel_size=1, bias=False)
        self.squeeze = nn.Conv2d(channels, 1, kernel_size=1, bias=False)
        self.gate = nn.Sequential(_conv3x3(1, 1), nn.BatchNorm2d(1), nn.Sigmoid())
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.pool_logits(x).flatten(2), dim=2)  # (B, 1, HW)
        pooled = (x.flatten(2) * weights).sum(dim=2)  # (B, C)
        channel = torch.sigmoid(self.channel_mlp(pooled))[:, :, None, None]
        squeezed = self.squeeze(self.project(x) * channel)  # (B, 1, H, W)
        return self.gamma * squeezed * self.gate(squeezed) + x


class FAModule(nn.Module):
    """3x3 conv + BN, the FA block, 3x3 conv + BN."""

    def __init__(self, in_channels: int, out_channels: int, reduction: int = 8) -> None:
        super().__init__()
        self.reduce = nn.Sequential(_conv3x3(in_channels, out_channels),
                                    nn.BatchNorm2d(out_channels))
        self.attention = FABlock(out_channels, reduction)
        self.out = nn.Sequential(_conv3x3(out_channels, out_channels),
                                 nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.attention(self.reduce(x)))


class HAMNet(nn.Module):
    """Dilated ResNet, FA block, LSE pooling, bias-free anomaly and class heads.

    ``forward(x)`` returns ``(class logits (B, C), class heatmaps (B, C, S, S))``
    in the input frame; ``forward(x, details=True)`` returns a :class:`HAMOutput`
    (what the training objective needs; it goes through ``forward`` so that
    DistributedDataParallel sees the call).

    Args:
        backbone: feature extractor configuration (the paper: output stride 8, dilated).
        num_classes: number of findings.
        options: architecture options.
    """

    def __init__(self, backbone: BackboneConfig, num_classes: int,
                 options: HAMOptions | None = None) -> None:
        super().__init__()
        self.options = options or HAMOptions()
        self.backbone = build_backbone(backbone)
        features = self.backbone.out_channels
        inner = max(1, features // 4)
        head = self.options.head_channels or features
        self.fa = FAModule(features, inner, self.options.fa_reduction)
        self.fuse = nn.Sequential(
            _conv3x3(features + inner, head),
            nn.BatchNorm2d(head),
            nn.ReLU(inplace=True),
            nn.Dropout2d(self.options.dropout),
        )
        self.anomaly_head = nn.Linear(head, 1, bias=False)
        self.class_head = nn.Linear(head, num_classes, bias=False)
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor,
                details: bool = False) -> tuple[torch.Tensor, torch.Tensor] | HAMOutput:
        features = self.backbone(x)
        fused = self.fuse(torch.cat([features, self.fa(features)], dim=1))
        pooled = lse_pool(fused, self.options.lse_r)
        class_cams = _cam(fused, self.class_head)
        class_logits = self.class_head(pooled)
        if not details:
            return class_logits, self.heatmaps(class_cams, x.shape[-2:])
        return HAMOutput(class_logits, self.anomaly_head(pooled)[:, 0], class_cams,
                         _cam(fused, self.anomaly_head))

    def heatmaps(self, class_cams: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The maps a user sees (``options.heatmap``) of CAMs, at ``size``."""
        if self.options.heatmap == "cam":
            return minmax_cams(class_cams, size)
        return refine_cams(class_cams, size, self.options.refine_center,
                           self.options.refine_sharpness)


def _cam(features: torch.Tensor, head: nn.Linear) -> torch.Tensor:
    """ReLU CAM of a bias-free linear head with its weights detached."""
    weights = head.weight.detach()[:, :, None, None]
    return nn.functional.relu(nn.functional.conv2d(features, weights))


def build_ham(backbone: BackboneConfig, num_classes: int, options: dict) -> HAMNet:
    """The :data:`~CXRWeakLocLib.models.BUILDERS` entry of ``ham``."""
    return HAMNet(backbone, num_classes, HAMOptions.from_dict(options))
