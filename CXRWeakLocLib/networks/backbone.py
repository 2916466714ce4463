"""The feature extractor every method builds on: a MONAI ResNet with a stride-2 stem.

MONAI's ResNet defaults to a stride-1 stem, 4-7x slower on a CPU for no gain on
radiographs; here the stem always has stride 2. ``output_stride`` 16 or 8 keeps the
last stages at full resolution (their first block's stride set to 1) so that class
activation maps are 16x16 rather than 8x8 at 256 px input. With ``dilated`` those
stages also dilate their 3x3 convolutions by the stride they lost (DeepLab's rule, as
torchvision's ``replace_stride_with_dilation``: at output stride 8, dilation 2 in the
third stage and 4 in the fourth; a stage's first convolution keeps the previous
stage's dilation), so their receptive fields match the strided network's.

``name = "efficientnet-lite0"`` builds :class:`~CXRWeakLocLib.networks.EfficientNetFeatures`
instead (:func:`build_backbone`); ``pretrained = "imagenet"`` says a training run starts
from its ImageNet weights. Both extractors share ``forward``, ``out_channels``,
``stage_outputs`` (per-stage features), ``cam_layer`` (what Grad-CAM targets) and
``freeze`` (the stem and the first k stages kept fixed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from monai.networks.nets import ResNet
from monai.networks.nets.resnet import get_inplanes
from torch import nn

from .efficientnet import EfficientNetFeatures
from .frozen import LeadingFreeze

__all__ = ["BackboneConfig", "ResNetFeatures", "build_backbone"]

_LAYERS = {
    "resnet10": ("basic", [1, 1, 1, 1]),
    "resnet18": ("basic", [2, 2, 2, 2]),
    "resnet34": ("basic", [3, 4, 6, 3]),
    "resnet50": ("bottleneck", [3, 4, 6, 3]),
}
_EFFICIENTNETS = ("efficientnet-lite0",)
_PRETRAINED = {"": (*_LAYERS, *_EFFICIENTNETS), "imagenet": _EFFICIENTNETS}


@dataclass(frozen=True)
class BackboneConfig:
    """Architecture of the feature extractor (stored in every model card)."""

    name: str = "resnet18"
    width: float = 0.5
    output_stride: int = 16
    in_channels: int = 1
    #: dilate the stages kept at full resolution (off: they run undilated)
    dilated: bool = False
    #: weights a training run starts from: "" (random) or "imagenet" (efficientnet-lite0)
    pretrained: str = ""
    #: the stem and the first ``freeze`` stages are kept fixed in training (0: none)
    freeze: int = 0

    def __post_init__(self) -> None:
        known = (*_LAYERS, *_EFFICIENTNETS)
        if self.name not in known:
            raise ValueError(f"unknown backbone {self.name!r} (known: {', '.join(known)})")
        if self.name not in _PRETRAINED.get(self.pretrained, ()):
            raise ValueError(f"pretrained {self.pretrained!r} is not available for {self.name} "
                             "(imagenet: efficientnet-lite0 only)")
        if self.output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {self.output_stride}")

    def to_dict(self) -> dict:
        return asdict(self)


def build_backbone(config: BackboneConfig) -> nn.Module:
    """The feature extractor a config names (random weights; see ``load_imagenet``)."""
    if config.name in _EFFICIENTNETS:
        return EfficientNetFeatures(config)
    return ResNetFeatures(config)


class ResNetFeatures(LeadingFreeze):
    """ResNet stem and four stages; ``forward`` returns the last feature map.

    Args:
        config: depth, width multiplier, output stride, input channels, frozen stages.
    """

    #: the layer Grad-CAM attributes (the last feature map)
    cam_layer = "layer4"

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        block, layers = _LAYERS[config.name]
        net = ResNet(
            block,
            layers,
            get_inplanes(),
            spatial_dims=2,
            n_input_channels=config.in_channels,
            conv1_t_stride=2,
            widen_factor=config.width,
            feed_forward=False,
        )
        self.stem = nn.Sequential(net.conv1, net.bn1, net.act, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1, net.layer2, net.layer3, net.layer4,
        )
        full_resolution_stages = {32: [], 16: [self.layer4], 8: [self.layer3, self.layer4]}
        dilation = 1
        for stage in full_resolution_stages[config.output_stride]:
            _remove_stride(stage)
            if config.dilated:
                _dilate(stage, first=dilation, rest=2 * dilation)
                dilation *= 2
        self.out_channels = self.layer4[-1].conv2.out_channels if block == "basic" else (
            self.layer4[-1].conv3.out_channels
        )
        self.config = config
        self.freeze_leading(config.freeze)

    def parts(self) -> list[nn.Module]:
        return [self.stem, self.layer1, self.layer2, self.layer3, self.layer4]

    def stage_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The outputs of the four stages (conv2_x..conv5_x), as a perceptual loss uses."""
        outputs = []
        x = self.stem(x)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
            outputs.append(x)
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def _dilate(stage: nn.Sequential, first: int, rest: int) -> None:
    """Dilate the stage's 3x3 convolutions: ``first`` for the first one, ``rest`` after."""
    convolutions = [m for m in stage.modules()
                    if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    for index, conv in enumerate(convolutions):
        step = first if index == 0 else rest
        conv.dilation, conv.padding = (step, step), (step, step)


def _remove_stride(stage: nn.Sequential) -> None:
    first = stage[0]
    for module in first.modules():
        if isinstance(module, nn.Conv2d) and module.stride != (1, 1):
            module.stride = (1, 1)
