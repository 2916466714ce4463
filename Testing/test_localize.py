"""The Localizer: results in each input's own geometry, finding selection, Grad-CAM."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_tiny_model, shared_path

from CXRWeakLocLib.checkpoint import load_model
from CXRWeakLocLib.core.card import SHIPPED_MODELS_DIR
from CXRWeakLocLib.core.errors import CXRWeakLocError
from CXRWeakLocLib.core.radiograph import Radiograph, read_radiograph
from CXRWeakLocLib.distributed import resolve_device
from CXRWeakLocLib.localize import Localizer
from CXRWeakLocLib.methods import build_network
from CXRWeakLocLib.methods.cam import CAMClassifier
from CXRWeakLocLib.networks.backbone import BackboneConfig


def test_in_model_cam_equals_gap_linear_classifier():
    torch.manual_seed(0)
    net = CAMClassifier(BackboneConfig("resnet10", 0.25, 16), 3).eval()
    x = torch.randn(2, 1, 64, 64)
    logits, maps = net(x)
    features = net.backbone(x)
    pooled = features.mean(dim=(2, 3))
    expected = pooled @ net.classifier.weight[:, :, 0, 0].T + net.classifier.bias
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)
    assert maps.shape == (2, 3, 4, 4)  # 64 / output stride 16


def test_results_follow_each_inputs_geometry(tiny_model):
    localizer = Localizer(load_model(tiny_model))
    images = [Radiograph(pixels=np.random.default_rng(i).random((h, w), dtype=np.float32))
              for i, (h, w) in enumerate([(100, 140), (77, 64)])]
    results = localizer.localize(images, "all")
    for image, result in zip(images, results, strict=True):
        assert len(result.findings) == 14
        for finding in result.findings:
            assert finding.heatmap.shape == image.size and finding.mask.shape == image.size
            assert finding.heatmap.min() >= 0.0 and finding.heatmap.max() <= 1.0
            assert 0.0 <= finding.probability <= 1.0
            assert all(b.x1 <= image.size[1] and b.y1 <= image.size[0] for b in finding.boxes)


def test_positive_selection_uses_operating_thresholds(tiny_model):
    localizer = Localizer(load_model(tiny_model))
    image = Radiograph(pixels=np.full((64, 64), 0.5, np.float32))
    result = localizer.localize([image], "positive")[0]
    for finding in result.findings:
        assert (finding.heatmap is not None) == (finding.probability >= finding.threshold)


def test_unknown_selection_and_device():
    with pytest.raises(CXRWeakLocError, match="unknown device"):
        resolve_device("tpu")


def test_gradcam_model_localizes_with_the_same_probabilities(tmp_path):
    cam_folder = make_tiny_model(tmp_path / "cam", "cam", seed=1)
    grad_folder = make_tiny_model(tmp_path / "gradcam", "gradcam", seed=1)
    cam, grad = load_model(cam_folder), load_model(grad_folder)
    grad.network.classifier.load_state_dict(cam.network.state_dict())
    image = Radiograph(pixels=np.random.default_rng(3).random((90, 90), dtype=np.float32))
    cam_result = Localizer(cam).localize([image], ["Mass"])[0].get("Mass")
    grad_result = Localizer(grad).localize([image], ["Mass"])[0].get("Mass")
    assert grad_result.probability == pytest.approx(cam_result.probability, abs=1e-6)
    assert grad_result.heatmap.shape == (90, 90)
    # on a GAP + linear head at the last stage, Grad-CAM is ReLU(CAM) up to scale
    batch = Localizer(cam).prepare(image)[None]
    _, cam_maps = cam.network(batch)
    _, grad_maps = grad.network(batch)
    index = cam.card.findings.index("Mass")
    relu_cam = torch.relu(cam_maps[0, index])
    if relu_cam.max() > 0:
        ratio = grad_maps[0, index][relu_cam > 0] / relu_cam[relu_cam > 0]
        assert torch.allclose(ratio, ratio.mean(), rtol=1e-3)


def test_build_network_rejects_unknown_options():
    with pytest.raises(ValueError, match="takes no options"):
        build_network("cam", {"options": {"x": 1}}, 2)


SHIPPED = sorted(p.name for p in SHIPPED_MODELS_DIR.iterdir() if (p / "model.json").is_file())


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_model_localizes_a_real_radiograph(name):
    """Each shipped model runs on a real NIH radiograph and carries its dev-box figures."""
    image = shared_path("nih-mini/images/00000211_019.png")
    localizer = Localizer.from_name(name, "cpu")
    card = localizer.card
    assert card.metrics["dev_bbox"]["boxes"] == 514
    assert str(card.mask_rule) == card.metrics["dev_bbox"]["mask_rule"]
    [result] = localizer.localize([read_radiograph(image)], findings=["Cardiomegaly"])
    finding = result.get("Cardiomegaly")
    assert 0.0 <= finding.probability <= 1.0
    assert finding.heatmap.shape == finding.mask.shape == (512, 512)
    assert np.isfinite(finding.heatmap).all() and finding.heatmap.std() > 0
    assert 0 < finding.mask.sum() < finding.mask.size
