"""HAM: the network's pieces, each loss on hand-built maps, training, localize and evaluate."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tiny_model

from CXRWeakLocLib.checkpoint import load_model
from CXRWeakLocLib.core.card import read_card, update_card
from CXRWeakLocLib.core.errors import ConfigError
from CXRWeakLocLib.core.radiograph import Radiograph
from CXRWeakLocLib.data.synthetic import write_synthetic_dataset
from CXRWeakLocLib.evaluation import evaluate_model
from CXRWeakLocLib.localize import Localizer
from CXRWeakLocLib.methods import build_network
from CXRWeakLocLib.methods.ham.network import (
    FABlock,
    HAMNet,
    HAMOptions,
    lse_pool,
    minmax_cams,
    refine_cams,
)
from CXRWeakLocLib.methods.ham.objective import (
    HAMObjective,
    anomaly_targets,
    bound_loss,
    box_loss,
    union_loss,
)
from CXRWeakLocLib.networks.backbone import BackboneConfig
from CXRWeakLocLib.runtime import MAP_TOLERANCE
from CXRWeakLocLib.train.config import load_config
from CXRWeakLocLib.train.engine import train

TINY_BACKBONE = {"name": "resnet10", "width": 0.125, "output_stride": 8, "dilated": True}
SATURATED = 5.0  # far above the soft mask's 0.75 centre


def region(rows: slice, columns: slice, size: int = 16, value: float = SATURATED) -> torch.Tensor:
    """A ``(1, 1, size, size)`` map that is ``value`` on a rectangle, 0 elsewhere."""
    out = torch.zeros(1, 1, size, size)
    out[..., rows, columns] = value
    return out


def tiny_ham(num_classes: int = 3) -> HAMNet:
    torch.manual_seed(0)
    return build_network("ham", {"backbone": TINY_BACKBONE}, num_classes)


# --- losses on hand-built maps -------------------------------------------------------

def test_bound_loss_is_zero_inside_and_one_outside_the_anomaly_map():
    anomaly = region(slice(2, 12), slice(2, 12))
    inside = region(slice(4, 8), slice(4, 8))
    outside = region(slice(13, 16), slice(13, 16))
    positive = torch.ones(1, 1)
    assert bound_loss(inside, anomaly, positive).item() == pytest.approx(0.0, abs=1e-4)
    assert bound_loss(outside, anomaly, positive).item() == pytest.approx(1.0, abs=1e-4)
    half = region(slice(0, 4), slice(2, 12))  # rows 0-1 outside, rows 2-3 inside
    assert bound_loss(half, anomaly, positive).item() == pytest.approx(0.5, abs=1e-3)


def test_bound_loss_counts_only_positive_findings_and_averages_over_them():
    anomaly = region(slice(2, 12), slice(2, 12))
    maps = torch.cat([region(slice(4, 8), slice(4, 8)), region(slice(13, 16), slice(0, 3))], 1)
    assert bound_loss(maps, anomaly, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(
        0.0, abs=1e-4)
    assert bound_loss(maps, anomaly, torch.tensor([[1.0, 1.0]])).item() == pytest.approx(
        0.5, abs=1e-4)
    assert bound_loss(maps, anomaly, torch.zeros(1, 2)).item() == 0.0


def test_union_loss_is_zero_inside_and_one_outside_the_class_union():
    classes = torch.cat([region(slice(0, 8), slice(0, 8)), region(slice(8, 16), slice(8, 16))], 1)
    positives = torch.ones(1, 2)
    abnormal = torch.ones(1)
    covered = region(slice(1, 7), slice(1, 7)) + region(slice(9, 15), slice(9, 15))
    uncovered = region(slice(0, 8), slice(8, 16))
    assert union_loss(classes, covered, positives, abnormal).item() == pytest.approx(0.0, abs=1e-4)
    assert union_loss(classes, uncovered, positives, abnormal).item() == pytest.approx(
        1.0, abs=1e-4)
    # a negative finding's map is no part of the union
    only_first = torch.tensor([[1.0, 0.0]])
    second = region(slice(9, 15), slice(9, 15))
    assert union_loss(classes, second, only_first, abnormal).item() == pytest.approx(
        1.0, abs=1e-4)
    assert union_loss(classes, second, positives, torch.zeros(1)).item() == 0.0


def test_box_loss_is_zero_for_a_perfect_map_and_ignores_images_without_boxes():
    masks = torch.zeros(2, 1, 8, 8)
    masks[0, 0, 2:5, 2:5] = 1
    known = torch.tensor([[1.0], [0.0]])
    wrong = torch.rand(2, 1, 8, 8)
    perfect = torch.where(torch.arange(2)[:, None, None, None] == 0, masks, wrong)
    assert box_loss(perfect, masks, known).item() == pytest.approx(0.0)
    assert box_loss(1 - masks, masks, known).item() == pytest.approx(1.0)


def test_anomaly_targets_from_finding_labels():
    labels = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    known = torch.tensor([[1.0, 0.0], [1.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    abnormal, abnormal_known = anomaly_targets(labels, known)
    assert abnormal.tolist() == [1.0, 0.0, 0.0, 0.0]
    assert abnormal_known.tolist() == [1.0, 1.0, 0.0, 0.0]


# --- network pieces --------------------------------------------------------------------

def test_lse_pool_matches_the_formula_and_its_limits():
    torch.manual_seed(1)
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64)
    flat = x.flatten(2)
    r = 6.0
    expected = (torch.log(torch.exp(r * flat).sum(2)) - math.log(20)) / r
    torch.testing.assert_close(lse_pool(x, r), expected)
    torch.testing.assert_close(lse_pool(x, 1e4), flat.amax(2), atol=1e-3, rtol=0)
    torch.testing.assert_close(lse_pool(x, 1e-4), flat.mean(2), atol=1e-3, rtol=0)


def test_refined_map_threshold_matches_minmax_0_469():
    ramp = torch.linspace(0, 1, 10001)[None, None, None, :].expand(1, 1, 2, 10001)
    refined = refine_cams(ramp * 7.0 + 3.0, (2, 10001))[0, 0, 0]
    first_on = ramp[0, 0, 0][refined >= 0.999].min().item()
    assert first_on == pytest.approx(0.4 + math.log(999) / 100, abs=2e-4)
    assert first_on == pytest.approx(0.469, abs=1e-3)
    assert refined.min().item() < 1e-12 and refined.max().item() == pytest.approx(1.0)


def test_fa_block_starts_as_the_identity():
    block = FABlock(16)
    assert block.gamma.item() == 0.0
    x = torch.randn(2, 16, 6, 6)
    torch.testing.assert_close(block(x), x)
    with torch.no_grad():
        block.gamma.fill_(1.0)
    assert not torch.allclose(block(x), x)


def test_dilated_stride_8_backbone_equals_the_strided_one_where_both_are_defined():
    from CXRWeakLocLib.networks.backbone import ResNetFeatures

    torch.manual_seed(3)
    strided = ResNetFeatures(BackboneConfig("resnet10", 0.125, output_stride=32)).eval()
    dilated = ResNetFeatures(BackboneConfig("resnet10", 0.125, output_stride=8,
                                            dilated=True)).eval()
    dilated.load_state_dict(strided.state_dict())
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        coarse, fine = strided(x), dilated(x)
    assert coarse.shape[-1] == 2 and fine.shape[-1] == 8
    torch.testing.assert_close(fine[..., ::4, ::4], coarse, atol=1e-5, rtol=1e-4)


def test_output_shapes_and_stride_8():
    net = tiny_ham(num_classes=3).eval()
    x = torch.randn(2, 1, 64, 64)
    logits, maps = net(x)
    assert logits.shape == (2, 3) and maps.shape == (2, 3, 64, 64)
    assert maps.min().item() >= 0.0 and maps.max().item() <= 1.0
    out = net(x, details=True)
    assert out.class_logits.shape == (2, 3) and out.anomaly_logits.shape == (2,)
    assert out.class_cams.shape == (2, 3, 8, 8) and out.anomaly_cam.shape == (2, 1, 8, 8)
    assert out.class_cams.min().item() >= 0.0
    torch.testing.assert_close(out.class_logits, logits)


def test_heads_are_bias_free_and_cams_do_not_train_the_heads():
    net = tiny_ham().train()
    assert net.class_head.bias is None and net.anomaly_head.bias is None
    out = net(torch.randn(2, 1, 64, 64), details=True)
    (out.class_cams.sum() + out.anomaly_cam.sum()).backward()
    assert net.class_head.weight.grad is None and net.anomaly_head.weight.grad is None
    assert net.fuse[0].weight.grad is not None


def test_unknown_options_are_refused():
    with pytest.raises(ValueError, match="lse_radius"):
        build_network("ham", {"backbone": TINY_BACKBONE,
                     "options": {"lse_radius": 3}}, 3)
    with pytest.raises(ConfigError, match="bond_weight"):
        HAMObjective({"bond_weight": 1.0})
    net = HAMNet(BackboneConfig(**TINY_BACKBONE), 2, HAMOptions(head_channels=24, lse_r=3.0))
    assert net.class_head.in_features == 24


# --- objective -----------------------------------------------------------------------

def batch(n: int = 4, classes: int = 3) -> dict:
    torch.manual_seed(2)
    labels = torch.zeros(n, classes)
    labels[0, 0] = labels[1, 1] = labels[1, 2] = 1
    return {"image": torch.randn(n, 1, 64, 64), "label": labels, "known": torch.ones(n, classes)}


def test_objective_parts_weights_and_gradients():
    net = tiny_ham().train()
    loss, parts = HAMObjective({})(net, batch())
    assert set(parts) == {"cls", "ano", "bound", "union"}
    expected = parts["cls"] + 0.01 * parts["ano"] + 0.001 * (parts["bound"] + parts["union"])
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert net.fa.attention.gamma.grad is not None


def test_box_loss_is_off_by_default_and_refuses_to_run_without_boxes():
    net = tiny_ham().train()
    data = batch()
    with pytest.raises(ConfigError, match="not available in weakly-supervised training"):
        HAMObjective({"box_loss": True})(net, data)
    data["box_masks"] = torch.zeros(4, 3, 64, 64)
    data["box_masks"][0, 0, 10:30, 10:30] = 1
    data["box_known"] = torch.tensor([[1.0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]])
    loss, parts = HAMObjective({"box_loss": True, "box_weight": 0.5})(net, data)
    assert "box" in parts and parts["box"] > 0.0 and math.isfinite(loss.item())


# --- through the trainer, localize and evaluate --------------------------------------

HAM_CONFIG = """
[run]
name = "tiny-ham"
output = "{output}"
seed = 1

[data]
dataset = "synthetic"
synthetic_count = 24
val_fraction = 0.25

[model]
method = "ham"
input_size = 64
backbone = {{ name = "resnet10", width = 0.125, output_stride = 8, dilated = true }}
init_from = "{init_from}"

[optim]
epochs = 1
batch_size = 8
lr = 1e-3

[loss]
bound_weight = 0.001
union_weight = 0.001
"""


def test_tiny_ham_run_through_the_trainer_starting_from_a_cam_model(tmp_path, caplog):
    cam = make_tiny_model(tmp_path / "tiny-cam")
    config = tmp_path / "ham.toml"
    config.write_text(HAM_CONFIG.format(output=tmp_path / "run", init_from=cam))
    with caplog.at_level("INFO"):
        result = train(load_config(config), device="cpu")
    assert any("initialised" in r.getMessage() for r in caplog.records)
    model = load_model(result.model_folder)
    assert isinstance(model.network, HAMNet)
    assert model.card.method == "ham" and model.card.training["labels"] == "image-level only"
    header = (result.run_folder / "log.csv").read_text().splitlines()[0].split(",")
    assert {"train_cls", "train_ano", "train_bound", "train_union"} <= set(header)
    assert "train_box" not in header


@pytest.fixture(scope="module")
def tiny_ham_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny-ham", method="ham")


def test_localize_gives_refined_maps_in_the_input_frame(tiny_ham_model):
    localizer = Localizer(load_model(tiny_ham_model))
    radiograph = Radiograph(pixels=np.random.default_rng(0).random((80, 100)).astype(np.float32))
    [result] = localizer.localize([radiograph], findings="all")
    finding = result.findings[0]
    assert finding.heatmap.shape == (80, 100) and finding.mask.shape == (80, 100)
    network, x = localizer.model.network, localizer.prepare(radiograph)[None]
    with torch.no_grad():
        logits, maps = network(x)
        details = network(x, details=True)
    assert finding.probability == pytest.approx(torch.sigmoid(logits)[0, 0].item(), rel=1e-5)
    torch.testing.assert_close(maps, refine_cams(details.class_cams, (64, 64)))
    # the Localizer runs ONNX Runtime on the CPU: its maps are eager's within MAP_TOLERANCE
    np.testing.assert_allclose(finding.heatmap, localizer.heatmap(maps[0], 0, radiograph),
                               rtol=0, atol=MAP_TOLERANCE)


def test_evaluate_a_tiny_ham_model(tiny_ham_model, tmp_path):
    data = write_synthetic_dataset(tmp_path / "synthetic", 4, 96, seed=3)
    report = evaluate_model("synthetic", data, str(tiny_ham_model), tmp_path / "eval",
                            device="cpu", progress=False)
    assert report.images == 4 and report.boxes > 0
    assert (tmp_path / "eval" / "metrics.json").is_file()
    assert set(report.headline()) >= {"iou_accuracy_0.3", "mtiou", "mean_roc_auc"}


def test_cam_heatmap_is_graded_and_gives_the_papers_mask(tiny_ham_model, tmp_path):
    """``heatmap = "cam"``: the min-max CAM, whose >= 0.469 mask is the refined map's >= 0.999."""
    graded_folder = tmp_path / "graded"
    shutil.copytree(tiny_ham_model, graded_folder)
    architecture = read_card(graded_folder).architecture
    update_card(graded_folder, architecture={**architecture, "options": {"heatmap": "cam"}})
    refined_net, graded_net = (load_model(f).network for f in (tiny_ham_model, graded_folder))
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        _, refined = refined_net(x)
        _, graded = graded_net(x)
        cams = graded_net(x, details=True).class_cams
    torch.testing.assert_close(graded, minmax_cams(cams, (64, 64)))
    flat, spread = graded.flatten(2), cams.flatten(2).amax(2) - cams.flatten(2).amin(2)
    torch.testing.assert_close(flat.amin(2), torch.zeros_like(flat.amin(2)))
    varying = spread > 1e-5  # a constant (all-zero ReLU) CAM stays 0
    assert varying.any()
    torch.testing.assert_close(flat.amax(2)[varying], torch.ones(int(varying.sum())))
    paper_cut = 0.4 + math.log(999) / 100  # refined >= 0.999  <=>  min-max CAM >= 0.469
    disagree = ((refined >= 0.999) != (graded >= paper_cut)).float().mean().item()
    assert disagree < 1e-3
    # the refined map saturates: far fewer distinct levels than the graded one
    assert refined[0, 0].unique().numel() < graded[0, 0].unique().numel()


def test_unknown_heatmap_option_is_refused():
    with pytest.raises(ValueError, match="heatmap 'sharp' is not one of cam, refined"):
        HAMOptions.from_dict({"heatmap": "sharp"})
