"""TagGAN and VA-GAN: networks, gradient penalty, constraint functions, the GAN loop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from CXRWeakLocLib.checkpoint import load_model
from CXRWeakLocLib.core.anatomy import chest_region
from CXRWeakLocLib.core.masks import MaskRule, apply_mask_rule
from CXRWeakLocLib.core.radiograph import Radiograph
from CXRWeakLocLib.data.synthetic import _anatomy, make_synthetic_dataset, write_synthetic_dataset
from CXRWeakLocLib.evaluation import evaluate_model
from CXRWeakLocLib.export import export_all
from CXRWeakLocLib.localize import Localizer
from CXRWeakLocLib.losses import gradient_penalty
from CXRWeakLocLib.methods import build_network
from CXRWeakLocLib.methods.healing.adversarial import (
    GANSettings,
    TrainingDivergedError,
    calibrate_scores,
    map_spread,
)
from CXRWeakLocLib.methods.healing.taggan import TagGANRecipe
from CXRWeakLocLib.methods.healing.vagan import VAGANRecipe
from CXRWeakLocLib.train.config import load_config
from CXRWeakLocLib.train.engine import train

FINDINGS = ["Cardiomegaly", "Effusion", "Mass"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny convolutions on a shared CPU: one thread is ~40x faster than two that wait
    # for each other
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
OPTIONS = {"channels": [4, 8], "critic_width": 4}


class _ZeroMap(torch.nn.Module):
    def forward(self, x, classes):
        return torch.zeros_like(x)


@pytest.mark.parametrize("method", ["taggan", "vagan"])
def test_a_zero_map_leaves_the_image_unchanged(method):
    net = build_network(method, {"options": OPTIONS}, len(FINDINGS))
    net.generator = _ZeroMap()
    x = torch.randn(2, 1, 32, 32)
    healed, generated = net.heal(x, torch.tensor([0, 2]))
    assert torch.equal(healed, x) and not generated.any()
    assert not net.disease_maps(x).any()


@pytest.mark.parametrize("method", ["taggan", "vagan"])
def test_a_fresh_generator_heals_nothing_and_can_learn(method):
    """The map starts at exactly 0 (no unit-variance map forced by a normalisation)."""
    net = build_network(method, {"options": OPTIONS}, len(FINDINGS))
    x, classes = torch.randn(2, 1, 32, 32), torch.tensor([0, 2])
    healed, generated = net.heal(x, classes)
    assert torch.equal(healed, x) and not generated.any()
    target = torch.zeros_like(x)
    target[..., 8:16, 8:16] = 1.0  # a sparse map is reachable: a few steps move towards it
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(40):
        loss = (net.map(x, classes) - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    learned = net.map(x, classes).detach()
    assert learned[..., 8:16, 8:16].mean() > 0.5
    assert learned[..., 20:, 20:].abs().mean() < 0.2


def test_the_signs_of_the_two_methods():
    x = torch.zeros(1, 1, 16, 16)
    for method, sign in (("taggan", -1.0), ("vagan", 1.0)):
        net = build_network(method, {"options": OPTIONS}, len(FINDINGS)).eval()
        healed, generated = net.heal(x, torch.tensor([1]))
        assert torch.allclose(healed, x + sign * generated)
        # disease_maps D: healed = x - D
        # batched (all findings) vs single-finding convolutions: float reduction order only
        assert torch.allclose(net.disease_maps(x)[:, 1:2], x - healed, rtol=1e-4, atol=1e-5)


class _ShiftMap(torch.nn.Module):
    """A collapsed generator: the same global shift whatever the image."""

    def forward(self, x, classes):
        return torch.full_like(x, 0.3)


class _EchoMap(torch.nn.Module):
    """A generator that follows its input: the image's bright part."""

    def forward(self, x, classes):
        return torch.relu(x)


def test_map_spread_flags_a_generator_that_ignores_its_input():
    net = build_network("taggan", {"options": OPTIONS}, len(FINDINGS))
    images = torch.zeros(4, 1, 16, 16)
    for index in range(4):  # a blob in a different place on each image
        images[index, 0, 4 * index:4 * index + 4, 2:6] = 1.0
    classes = torch.tensor([0, 1, 2, 0])
    net.generator = _ShiftMap()
    assert map_spread(net, images, classes) == pytest.approx(0.0, abs=1e-6)
    net.generator = _EchoMap()
    assert map_spread(net, images, classes) == pytest.approx(1.5)  # 3/4 * 2 / 1


def test_the_backward_cycle_has_the_image_shape():
    net = build_network("taggan", {"options": OPTIONS}, len(FINDINGS))
    recipe = TagGANRecipe(net, GANSettings(), len(FINDINGS))
    batch = {"image": torch.randn(3, 1, 32, 32), "finding": torch.tensor([0, 1, 2])}
    healed, generated, restored = recipe._cycle(batch)
    assert healed.shape == generated.shape == restored.shape == (3, 1, 32, 32)


def test_the_gradient_penalty_of_a_linear_critic_is_exact():
    torch.manual_seed(0)
    w = torch.randn(1, 3, 8, 8)

    def critic(images):
        return (images * w).flatten(1).sum(1)

    real, fake = torch.randn(5, 3, 8, 8), torch.randn(5, 3, 8, 8)
    penalty = gradient_penalty(critic, real, fake)
    assert penalty.item() == pytest.approx((w.norm().item() - 1) ** 2, rel=1e-5)
    # the norm is over all non-batch axes: a per-axis norm (the official VA-GAN bug)
    # would not give (|w| - 1)^2
    assert w.norm(dim=1).mean().item() != pytest.approx(w.norm().item(), rel=1e-2)


def test_the_gradient_penalty_is_differentiable_in_the_critic():
    layer = torch.nn.Linear(16, 1)
    penalty = gradient_penalty(lambda x: layer(x.flatten(1))[:, 0], torch.randn(4, 1, 4, 4),
                               torch.randn(4, 1, 4, 4))
    penalty.backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


def _blob_map(size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[0:size, 0:size]
    truth = (rows - 20) ** 2 + (cols - 40) ** 2 < 8 ** 2
    heatmap = np.exp(-((rows - 20) ** 2 + (cols - 40) ** 2) / (2 * 5.0 ** 2))
    return heatmap + 0.02 * np.random.default_rng(0).random((size, size)), truth


@pytest.mark.parametrize("rule", [MaskRule("fraction_of_max", 0.5),
                                  MaskRule("mean_plus_k_std", 2.0),
                                  MaskRule("otsu", 0.0)])
def test_each_constraint_function_finds_the_blob(rule):
    heatmap, truth = _blob_map()
    mask = apply_mask_rule(heatmap, rule)
    assert mask.any()
    assert (mask & truth).sum() / mask.sum() > 0.9  # precision (PoI, IoR form)
    assert (mask & truth).sum() / truth.sum() > 0.3  # coverage


def test_the_lung_field_estimate_covers_the_synthetic_lungs():
    record = make_synthetic_dataset(1, 128, seed=3, prevalence=0.0)[0]
    field = chest_region(record.pixels)
    lungs = _anatomy(128).lungs
    truth = lungs[-1] | lungs[1]
    assert (field & truth).sum() / truth.sum() > 0.8
    assert field.mean() < 0.8  # not the whole image


def test_the_lung_field_option_zeroes_maps_outside_it():
    net = build_network("taggan", {"options": {**OPTIONS, "lung_field": True}},
                      len(FINDINGS)).eval()
    image = torch.as_tensor(make_synthetic_dataset(1, 64, seed=3)[0].pixels)[None, None]
    _, maps = net((image - 0.5) / 0.5)
    outside = ~chest_region(image[0, 0].numpy())
    assert outside.any() and not maps[0, :, torch.as_tensor(outside)].any()


def test_unknown_options_and_settings_are_refused():
    with pytest.raises(ValueError, match="unknown colour"):
        build_network("taggan", {"options": {"colour": 1}}, 2)
    with pytest.raises(Exception, match="unknown GAN setting"):
        GANSettings.from_dict({"cycel": 10})


def test_calibration_orders_scores_by_label():
    scores = np.array([[0.1], [0.2], [0.3], [0.8], [0.9], [0.25]])
    labels = np.array([[0], [0], [0], [1], [1], [1]], dtype=float)
    weight, bias = calibrate_scores(scores, labels, np.ones_like(labels))
    probs = 1 / (1 + np.exp(-(scores[:, 0] * weight[0] + bias[0])))
    assert weight[0] > 0 and probs[4] > 0.5 > probs[0]


def _config(tmp_path: Path, method: str = "taggan", **loss) -> Path:
    settings = {"steps_per_epoch": 2, "critic_steps": 1, "sample_every": 2, "identity": 1.0,
                **loss}
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items())
    path = tmp_path / f"{method}.toml"
    path.write_text(f"""
[run]
name = "tiny-{method}"
output = "run-{method}"
[data]
dataset = "synthetic"
synthetic_count = 24
val_fraction = 0.25
[model]
method = "{method}"
input_size = 32
findings = {json.dumps(FINDINGS)}
options = {{ channels = [4, 8], critic_width = 4 }}
[optim]
epochs = 2
batch_size = 2
lr = 1e-4
[loss]
{lines}
""")
    return path


@pytest.fixture(scope="module")
def tiny_gan(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("gan")
    result = train(load_config(_config(folder)), device="cpu")
    return result.model_folder


def test_a_run_writes_samples_logs_and_a_loadable_model(tiny_gan):
    run = tiny_gan.parent
    assert sorted(p.name for p in (run / "samples").glob("*.png")) == [
        "step_000002.png", "step_000004.png"]
    header = (run / "log.csv").read_text().splitlines()[0].split(",")
    assert {"critic", "gp_normal", "g_cycle", "g_sparsity", "g_identity",
            "map_spread"} <= set(header)
    assert any((run / "tensorboard").iterdir())
    model = load_model(tiny_gan)
    assert model.card.method == "taggan" and set(model.card.operating_thresholds) == set(
        FINDINGS)
    assert model.card.mask_rule == MaskRule("fraction_of_max", 0.5)
    assert model.card.metrics["map_spread"] >= 0.0


def test_resumed_run_equals_an_uninterrupted_run(tmp_path):
    config = _config(tmp_path, sample_every=0)
    full = train(load_config(config, {"run": {"output": "full"}}), device="cpu")
    train(load_config(config, {"run": {"output": "half"}, "optim": {"epochs": 1}}),
              device="cpu")
    resumed = train(load_config(config, {"run": {"output": "half"}}), device="cpu")
    a = load_file(str(full.run_folder / "last" / "state.safetensors"))
    b = load_file(str(resumed.run_folder / "last" / "state.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_divergence_stops_with_one_line_and_saves_nothing(tmp_path):
    config = load_config(_config(tmp_path, max_critic_loss=1e-9))
    with pytest.raises(TrainingDivergedError) as caught:
        train(config, device="cpu")
    message = str(caught.value)
    assert "\n" not in message and "diverged at generator step 1" in message
    assert "max_critic_loss" in message
    run = config.path(config.run.output)
    assert not (run / "last").exists() and not (run / "model").exists()


def test_nan_losses_stop_the_run(tmp_path, monkeypatch):
    config = load_config(_config(tmp_path, "vagan"))

    def nan_loss(self, batch):
        loss = torch.tensor(float("nan"), requires_grad=True)
        return loss, {"d_normal": float("nan")}

    monkeypatch.setattr(VAGANRecipe, "critic_loss", nan_loss)
    with pytest.raises(TrainingDivergedError, match="NaN"):
        train(config, device="cpu")


def test_a_tiny_model_runs_through_localize_exports_and_evaluate(tiny_gan, tmp_path):
    localizer = Localizer.from_name(str(tiny_gan), "cpu")
    record = make_synthetic_dataset(1, 48, seed=5)[0]
    radiograph = Radiograph(pixels=record.pixels)
    (result,) = localizer.localize([radiograph], findings="all")
    item = result.get("Mass")
    assert item.heatmap.shape == item.healed.shape == (48, 48)
    assert item.healed.min() >= 0.0 and item.healed.max() <= 1.0
    layout = export_all(result, radiograph, tmp_path / "out", stem="case")
    names = {p.name for p in layout.folder.iterdir()}
    assert {"case.Mass.healed.nrrd", "case.Mass.healed.png", "case.seg.nrrd",
            "findings.json"} <= names
    data = write_synthetic_dataset(tmp_path / "synthetic", 4, size=48, seed=3)
    report = evaluate_model("synthetic", data, str(tiny_gan), tmp_path / "eval",
                            device="cpu", progress=False)
    head = report.headline()
    assert report.boxes == 2 and {"poi_precision", "poi_coverage",
                                   "iou_accuracy_0.3"} <= set(head)


def test_healed_export_can_be_left_out(tiny_gan, tmp_path):
    localizer = Localizer.from_name(str(tiny_gan), "cpu")
    radiograph = Radiograph(pixels=make_synthetic_dataset(1, 32, seed=5)[0].pixels)
    (result,) = localizer.localize([radiograph], findings="all")
    layout = export_all(result, radiograph, tmp_path, stem="c", formats=("png",))
    assert not list(layout.folder.glob("*.healed.*"))
