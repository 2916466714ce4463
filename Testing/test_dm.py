"""dm: the warp and its inverse, identity start, mask construction, attention, engine path."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import make_tiny_model

from CXRWeakLocLib.checkpoint import load_model, save_model
from CXRWeakLocLib.core.card import ModelCard
from CXRWeakLocLib.core.errors import ConfigError
from CXRWeakLocLib.core.findings import CHESTXRAY14
from CXRWeakLocLib.core.radiograph import Radiograph
from CXRWeakLocLib.data.synthetic import write_synthetic_dataset
from CXRWeakLocLib.evaluation import evaluate_model
from CXRWeakLocLib.export import export_all
from CXRWeakLocLib.localize import Localizer
from CXRWeakLocLib.methods import build_network
from CXRWeakLocLib.methods.cam import CAMClassifier
from CXRWeakLocLib.methods.dm.network import (
    AlignmentNet,
    DiseaseMaskCAM,
    affine_matrix,
    ensemble_state,
    invert_affine,
    warp,
)
from CXRWeakLocLib.methods.dm.objectives import dm_objective
from CXRWeakLocLib.methods.dm.stages import (
    AlignedCAMs,
    disease_masks,
    pseudo_disease_masks,
    write_ensemble,
)
from CXRWeakLocLib.metrics import mask_bounding_box
from CXRWeakLocLib.networks.backbone import BackboneConfig

TINY = BackboneConfig("resnet10", 0.125)
FINDINGS = [f.name for f in CHESTXRAY14]
#: a non-trivial alignment: anisotropic scale, shift and a 12-degree rotation
PARAMS = torch.tensor([[0.9, 1.15, 0.12, -0.08, math.radians(12.0)]])


def box_image(size: int, rows: slice, cols: slice) -> torch.Tensor:
    image = torch.zeros(1, 1, size, size)
    image[0, 0, rows, cols] = 1.0
    return image


def test_affine_matrix_follows_the_paper():
    s_x, s_y, t_x, t_y, theta = PARAMS[0].tolist()
    expected = torch.tensor([[s_x * math.cos(theta), -s_y * math.sin(theta), t_x],
                             [s_x * math.sin(theta), s_y * math.cos(theta), t_y]])
    torch.testing.assert_close(affine_matrix(PARAMS)[0], expected)


def test_a_box_warped_and_unwarped_comes_back_within_a_pixel():
    image = box_image(96, slice(30, 58), slice(24, 50))
    matrix = affine_matrix(PARAMS)
    aligned = warp(image, matrix)
    assert not torch.allclose(aligned, image, atol=0.1)  # the warp does move the box
    back = warp(aligned, invert_affine(matrix), padding_mode="zeros")
    original = mask_bounding_box(image[0, 0].numpy() > 0.5)
    restored = mask_bounding_box(back[0, 0].numpy() > 0.5)
    for a, b in zip((original.x0, original.y0, original.x1, original.y1),
                    (restored.x0, restored.y0, restored.x1, restored.y1), strict=True):
        assert abs(a - b) <= 1


def test_invert_affine_is_the_inverse():
    matrix = affine_matrix(PARAMS)
    inverse = invert_affine(matrix)
    full = torch.cat([matrix, torch.tensor([[[0.0, 0.0, 1.0]]])], dim=1)
    full_inverse = torch.cat([inverse, torch.tensor([[[0.0, 0.0, 1.0]]])], dim=1)
    torch.testing.assert_close(full @ full_inverse, torch.eye(3)[None], atol=1e-6, rtol=0)


def test_identity_initialisation_gives_the_identity_warp():
    torch.manual_seed(0)
    aligner = AlignmentNet(width=0.125, size=32).eval()
    x = torch.randn(3, 1, 48, 48)
    torch.testing.assert_close(aligner.parameters_of(x),
                               torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0]]).expand(3, 5))
    network = DiseaseMaskCAM(TINY, 2, alignment_width=0.125, alignment_size=32).eval()
    aligned, _ = network.align(x)
    torch.testing.assert_close(aligned, x, atol=1e-5, rtol=0)


def test_alignment_parameters_are_bounded():
    aligner = AlignmentNet(width=0.125, size=32).eval()
    torch.nn.init.constant_(aligner.head.bias, 100.0)
    s_x, s_y, t_x, t_y, theta = aligner.parameters_of(torch.randn(1, 1, 32, 32))[0].tolist()
    assert s_x == pytest.approx(1.3) and t_x == pytest.approx(0.3)
    assert theta == pytest.approx(math.radians(15.0))


def off_centre_cams(count: int, probability: float) -> AlignedCAMs:
    """CAMs of every finding with a blob on the image's left (columns 1-4 of 16)."""
    cams = torch.zeros(count, len(FINDINGS), 16, 16)
    cams[:, :, 6:10, 1:5] = 1.0
    return AlignedCAMs(np.full((count, len(FINDINGS)), probability, dtype=np.float32),
                       np.ones((count, len(FINDINGS)), dtype=np.float32),
                       np.ones((count, len(FINDINGS)), dtype=np.float32), cams)


def test_masks_are_mirrored_for_effusion_not_for_cardiomegaly():
    result = disease_masks(off_centre_cams(6, 0.9), FINDINGS, 16, threshold=0.5)
    effusion = result.masks[FINDINGS.index("Effusion")]
    cardiomegaly = result.masks[FINDINGS.index("Cardiomegaly")]
    assert effusion[6:10, 1:5].min() > 0 and effusion[6:10, 11:15].min() > 0
    torch.testing.assert_close(effusion, torch.flip(effusion, dims=(-1,)))
    assert cardiomegaly[6:10, 1:5].min() > 0 and cardiomegaly[:, 8:].max() == 0
    assert result.masks.max() == pytest.approx(1.0) and result.masks.min() >= 0
    assert result.counts["Effusion"] == 6 and not result.fallback["Effusion"]


def test_masks_fall_back_to_the_most_confident_positives():
    cams = off_centre_cams(8, 0.5)
    cams.probabilities[:3] = 0.7
    result = disease_masks(cams, FINDINGS, 16, min_images=3)
    assert result.fallback["Nodule"] and result.counts["Nodule"] == 3


def test_pseudo_masks_from_an_anchor_shaped_image():
    anchor = torch.full((64, 64), 0.9)
    anchor[:, :4] = anchor[:, -4:] = 0.0  # air outside the body, touching the border
    anchor[12:50, 10:28] = 0.1  # the patient's right lung (image left)
    anchor[12:50, 38:56] = 0.1  # the patient's left lung
    masks = pseudo_disease_masks(anchor, FINDINGS, 64)
    lungs = masks[FINDINGS.index("Atelectasis")]
    heart = masks[FINDINGS.index("Cardiomegaly")]
    assert lungs[30, 18] == 1 and lungs[30, 46] == 1 and lungs[30, 33] == 0
    assert lungs[30, 1] == 0  # outside air is no lung
    assert heart[40, 33] == 1 and heart[20, 33] == 0 and heart[30, 18] == 0


def test_zero_masks_give_the_plain_cam_and_masks_scale_it():
    torch.manual_seed(1)
    cam = CAMClassifier(TINY, 3).eval()
    network = DiseaseMaskCAM(TINY, 3, alignment_width=0.125, alignment_size=32).eval()
    network.load_state_dict(cam.state_dict(), strict=False)
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        cam_logits, cam_maps = cam(x)
        logits, maps = network(x)
        expected = torch.nn.functional.interpolate(cam_maps, size=(16, 16), mode="bilinear",
                                                   align_corners=False)
        torch.testing.assert_close(logits, cam_logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(maps, expected, atol=1e-5, rtol=1e-5)
        network.disease_masks.fill_(1.0)  # f' = f + f: S' = 2 S
        logits, maps = network(x)
    torch.testing.assert_close(maps, 2 * expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits, 2 * cam_logits - cam.classifier.bias,
                               atol=1e-5, rtol=1e-5)


class EchoNetwork(DiseaseMaskCAM):
    """A dm network whose aligned-frame "CAM" is the aligned image itself."""

    def classify_aligned(self, aligned):
        return aligned.mean(dim=(2, 3)), aligned


def test_maps_come_back_in_the_input_frame():
    network = EchoNetwork(TINY, 1, alignment_width=0.125, alignment_size=32).eval()
    raw = torch.atanh((PARAMS[0] - network.aligner.offset) / network.aligner.limits)
    with torch.no_grad():
        network.aligner.head.bias.copy_(raw)
    x = box_image(128, slice(40, 72), slice(36, 60))
    with torch.no_grad():
        aligned, matrix = network.align(x)
        _, maps = network(x)
    torch.testing.assert_close(matrix, affine_matrix(PARAMS), atol=1e-5, rtol=0)
    assert not torch.allclose(torch.nn.functional.avg_pool2d(aligned, 4), maps, atol=0.2)
    box = mask_bounding_box(maps[0, 0].numpy() > 0.5)
    assert (box.x0, box.y0, box.x1, box.y1) == pytest.approx((9, 10, 15, 18), abs=1)


def test_frozen_parts_get_no_gradient_and_stay_in_eval_mode():
    network = DiseaseMaskCAM(TINY, 2, alignment_width=0.125, alignment_size=32,
                             frozen=["backbone", "classifier"])
    network.train()
    assert not network.backbone.training and network.aligner.training
    with pytest.raises(ValueError, match="frozen"):
        DiseaseMaskCAM(TINY, 2, frozen=["head"])


def test_alignment_objective_trains_the_aligner_only():
    torch.manual_seed(2)
    network = DiseaseMaskCAM(TINY, 2, alignment_width=0.125, alignment_size=32,
                             anchor_size=32, frozen=["backbone", "classifier"]).train()
    network.anchor.copy_(torch.rand(1, 32, 32))
    torch.nn.init.normal_(network.aligner.head.weight, std=0.01)
    objective = dm_objective({"stage": "alignment", "size": 32, "pool": 4})
    loss, parts = objective(network, {"image": torch.randn(2, 1, 64, 64)})
    loss.backward()
    assert torch.isfinite(loss) and set(parts) == {"euclidean", "perceptual"}
    assert network.aligner.head.weight.grad is not None
    assert all(p.grad is None for p in network.backbone.parameters())
    unfrozen = DiseaseMaskCAM(TINY, 2, alignment_width=0.125, alignment_size=32)
    with pytest.raises(ConfigError, match="frozen"):
        objective(unfrozen, {"image": torch.randn(1, 1, 64, 64)})
    with pytest.raises(ConfigError, match="stage"):
        dm_objective({"stage": "nope"})


def members_sharing_aligner_and_masks(count: int) -> list[DiseaseMaskCAM]:
    """One-member dm networks like seeds of one recipe: the same aligner, anchor and
    disease masks, different classifiers."""
    torch.manual_seed(3)
    shared = DiseaseMaskCAM(TINY, 3, alignment_width=0.125, alignment_size=32)
    shared.disease_masks.uniform_(0.0, 1.0)
    shared.anchor.uniform_(0.0, 1.0)
    members = []
    for seed in range(count):
        torch.manual_seed(10 + seed)
        member = DiseaseMaskCAM(TINY, 3, alignment_width=0.125, alignment_size=32)
        member.aligner.load_state_dict(shared.aligner.state_dict())
        member.anchor.copy_(shared.anchor)
        member.disease_masks.copy_(shared.disease_masks)
        members.append(member.eval())
    return members


def test_a_seed_ensemble_averages_its_members_logits_and_maps():
    members = members_sharing_aligner_and_masks(3)
    ensemble = DiseaseMaskCAM(TINY, 3, alignment_width=0.125, alignment_size=32, members=3)
    ensemble.load_state_dict(ensemble_state([m.state_dict() for m in members]), strict=True)
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        outputs = [member(x) for member in members]
        logits, maps = ensemble.eval()(x)
    torch.testing.assert_close(logits, sum(o[0] for o in outputs) / 3, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(maps, sum(o[1] for o in outputs) / 3, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(maps, outputs[0][1], atol=1e-3)
    # the first member keeps its keys: a one-member model's weights are unchanged
    assert set(members[0].state_dict()) < set(ensemble.state_dict())


def test_ensemble_state_refuses_members_that_do_not_share_the_aligner_and_masks():
    first, second = (m.state_dict() for m in members_sharing_aligner_and_masks(2))
    with pytest.raises(ValueError, match="at least two"):
        ensemble_state([first])
    for key in ("aligner.head.bias", "disease_masks"):
        changed = {**second, key: second[key] + 0.1}
        with pytest.raises(ValueError, match=f"member 1: {key} differs"):
            ensemble_state([first, changed])
    with pytest.raises(ValueError, match="member 1: not a one-member"):
        ensemble_state([first, {k: v for k, v in second.items() if k != "anchor"}])


def test_frozen_parts_are_frozen_in_every_member():
    network = DiseaseMaskCAM(TINY, 2, alignment_width=0.125, alignment_size=32,
                             frozen=["backbone"], members=2).train()
    other = network.other_members[0]
    assert not other.backbone.training and other.classifier.training
    assert not any(p.requires_grad for p in other.backbone.parameters())
    with pytest.raises(ValueError, match="members"):
        DiseaseMaskCAM(TINY, 2, members=0)


def test_a_saved_seed_ensemble_loads_and_localizes(tmp_path):
    folder = make_tiny_model(tmp_path / "tiny-dm-ensemble", method="dm", options={"members": 2})
    model = load_model(folder)
    assert len(model.network.members()) == 2
    [result] = Localizer(model).localize(
        [Radiograph(pixels=np.random.default_rng(1).random((70, 90), np.float32))],
        findings=["Mass"])
    assert result.get("Mass").heatmap.shape == (70, 90)


def test_write_ensemble_builds_a_model_folder_from_seed_runs(tmp_path):
    members = members_sharing_aligner_and_masks(2)
    folders = []
    for seed, (member, threshold) in enumerate(zip(members, (0.2, 0.8), strict=True)):
        card = ModelCard(name="dm", method="dm", findings=FINDINGS[:3], input_size=64,
                         architecture={"backbone": {"name": "resnet10", "width": 0.125},
                                       "options": {"alignment_width": 0.125,
                                                   "alignment_size": 32}},
                         operating_thresholds={f: threshold for f in FINDINGS[:3]},
                         training={"seed": seed}, metrics={"validation": {"auc": seed}})
        folders.append(save_model(tmp_path / f"seed{seed}", card, member))
    folder = write_ensemble(tmp_path / "ensemble", folders)
    model = load_model(folder)
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        expected = sum(load_model(f).network(x)[1] for f in folders) / 2
        torch.testing.assert_close(model.network(x)[1], expected, atol=1e-4, rtol=1e-4)
    assert model.card.architecture["options"]["members"] == 2
    assert model.card.threshold("Atelectasis") == pytest.approx(0.5, abs=1e-4)  # logit mean
    assert [m["seed"] for m in model.card.training["ensemble_of"]] == [0, 1]
    assert model.card.metrics["members_validation"] == [{"auc": 0}, {"auc": 1}]
    with pytest.raises(ConfigError, match="at least two"):
        write_ensemble(tmp_path / "one", folders[:1])
    with pytest.raises(ConfigError, match="not a one-member"):
        write_ensemble(tmp_path / "nested", [folder, folders[0]])
    assert not (tmp_path / "one").exists() and not (tmp_path / "nested").exists()


@pytest.fixture(scope="module")
def tiny_dm(tmp_path_factory):
    folder = make_tiny_model(tmp_path_factory.mktemp("models") / "tiny-dm", method="dm")
    return folder


def test_builder_rejects_unknown_options():
    with pytest.raises(ValueError, match="dm options"):
        build_network("dm", {"options": {"colour": 1}}, 2)


def test_a_tiny_dm_model_localizes_and_exports_in_the_radiograph_geometry(tiny_dm, tmp_path):
    model = load_model(tiny_dm)
    assert model.card.method == "dm"
    localizer = Localizer(model)
    radiograph = Radiograph(pixels=np.random.default_rng(0).random((80, 100), np.float32))
    [result] = localizer.localize([radiograph], findings="all")
    finding = result.get("Effusion")
    assert finding.heatmap.shape == (80, 100) and finding.mask.shape == (80, 100)
    _, maps = localizer.predict(localizer.prepare(radiograph)[None])
    assert maps.shape == (1, len(FINDINGS), 16, 16)
    layout = export_all(result, radiograph, tmp_path, stem="dm")
    assert layout.segmentation.is_file() and layout.heatmap("Effusion").is_file()


def test_evaluate_a_tiny_dm_model(tiny_dm, tmp_path):
    data = write_synthetic_dataset(tmp_path / "synthetic", 4, 96, seed=3)
    report = evaluate_model("synthetic", data, str(tiny_dm), tmp_path / "eval",
                            device="cpu", sweep=True, progress=False)
    assert report.images == 4 and report.boxes > 0 and report.sweep
    assert (tmp_path / "eval" / "metrics.json").is_file()
