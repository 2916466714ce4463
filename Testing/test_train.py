"""The trainer: a tiny run end to end, resume after a kill, and DDP with 2 CPU processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from CXRWeakLocLib.checkpoint import load_model
from CXRWeakLocLib.core.errors import ConfigError
from CXRWeakLocLib.losses import WeightedBCELoss
from CXRWeakLocLib.methods import build_network
from CXRWeakLocLib.train.config import load_config
from CXRWeakLocLib.train.engine import train
from CXRWeakLocLib.train.run import init_from, split_by_patient
from CXRWeakLocLib.train.validation import operating_thresholds

TINY_CONFIG = """
[run]
name = "tiny"
output = "{output}"
seed = 3

[data]
dataset = "synthetic"
synthetic_count = {count}
val_fraction = 0.25
augmentation = {{ crop_area = [0.5, 1.0], hide_probability = 0.2, hide_grid = 4 }}

[model]
input_size = 64
backbone = {{ name = "resnet10", width = 0.125, output_stride = 16 }}

[optim]
epochs = {epochs}
batch_size = 8
lr = 1e-3
"""


def write_config(folder: Path, epochs: int = 2, count: int = 32, name: str = "run") -> Path:
    path = folder / f"{name}.toml"
    path.write_text(TINY_CONFIG.format(output=folder / name, epochs=epochs, count=count))
    return path


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "CXRWeakLocLib", *args], capture_output=True,
                          text=True, **kwargs)


def test_weighted_bce_matches_the_formula():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    loss = WeightedBCELoss()(logits, targets)
    # |P| = 1, |N| = 3: w_P = 4, w_N = 4/3
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    weights = torch.tensor([[4.0, 4 / 3], [4 / 3, 4 / 3]])
    assert loss.item() == pytest.approx(float((bce * weights).mean()), rel=1e-6)


def test_weighted_bce_ignores_unknown_labels():
    logits = torch.tensor([[2.0, -1.0]])
    targets = torch.tensor([[1.0, 0.0]])
    known = torch.tensor([[1.0, 0.0]])
    loss = WeightedBCELoss()(logits, targets, known)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[0, :1], targets[0, :1])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_split_by_patient_keeps_patients_together():
    from CXRWeakLocLib.data.records import ImageRecord

    records = [ImageRecord(f"{p}_{i}", None, {}, meta={"patient": str(p)})
               for p in range(40) for i in range(3)]
    train_part, val_part = split_by_patient(records, 0.25, seed=0)
    assert len(train_part) + len(val_part) == len(records)
    assert {r.meta["patient"] for r in train_part}.isdisjoint({r.meta["patient"] for r in val_part})
    assert 0.1 < len(val_part) / len(records) < 0.45
    assert split_by_patient(records, 0.25, seed=0)[1] == val_part


def test_operating_thresholds_maximise_f1():
    probs = np.array([[0.9], [0.8], [0.3], [0.2]])
    labels = np.array([[1.0], [1.0], [0.0], [0.0]])
    thresholds = operating_thresholds(probs, labels, np.ones_like(labels), ["Mass"])
    assert 0.3 < thresholds["Mass"] <= 0.8


def test_config_refuses_unknown_settings(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[optim]\nepochz = 3\n")
    with pytest.raises(ConfigError, match="epochz"):
        load_config(path)


def test_tiny_run_writes_a_loadable_model_with_measured_metrics(tmp_path):
    result = train(load_config(write_config(tmp_path, epochs=1)), device="cpu")
    model = load_model(result.model_folder)
    card = model.card
    assert card.training["labels"] == "image-level only"
    assert card.metrics["validation"]["images"] > 0
    assert set(card.operating_thresholds) == set(card.findings)
    log = (result.run_folder / "log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,train_loss") and len(log) == 2
    assert any((result.run_folder / "tensorboard").iterdir())


def test_resumed_run_equals_an_uninterrupted_run(tmp_path):
    straight = train(load_config(write_config(tmp_path, epochs=2, name="straight")), "cpu")
    first = write_config(tmp_path, epochs=1, name="resumed")
    train(load_config(first), "cpu")
    resumed = train(load_config(first, {"optim": {"epochs": 2}}), "cpu")
    a = load_file(str(straight.model_folder / "model.safetensors"))
    b = load_file(str(resumed.model_folder / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)
    assert len((resumed.run_folder / "log.csv").read_text().splitlines()) == 3


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    config = write_config(tmp_path, epochs=4, count=48)
    process = subprocess.Popen([sys.executable, "-m", "CXRWeakLocLib", "train", "--config",
                                str(config), "--device", "cpu"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    state = tmp_path / "run" / "last" / "state.json"
    deadline = time.time() + 300
    while not state.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert state.exists(), "no checkpoint was written"
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = int(__import__("json").loads(state.read_text())["meta"]["epoch"])
    assert done_before < 4
    rerun = cli("train", "--config", str(config), "--device", "cpu")
    assert rerun.returncode == 0, rerun.stderr
    assert f"from epoch {done_before + 1}" in rerun.stderr
    assert load_model(tmp_path / "run" / "model").card.name == "tiny"


@pytest.mark.slow
def test_ddp_with_two_cpu_processes(tmp_path):
    config = write_config(tmp_path, epochs=1, count=32, name="ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "CXRWeakLocLib", "train", "--config", str(config), "--device", "cpu"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert process.returncode == 0, process.stderr[-2000:]
    assert "on cpu x2" in process.stderr
    assert process.stdout.count("model written to") == 1  # only rank 0 exports
    assert load_model(tmp_path / "ddp" / "model").card.training["train_images"] > 0


def test_pretrained_backbone_seeds_a_run_with_other_findings(tmp_path):
    """Synthetic pretraining (8 findings) -> ``init_from`` of a 14-finding network."""

    config = write_config(tmp_path, epochs=1, name="pretrain")
    config.write_text(config.read_text().replace(
        "[model]\n", '[model]\nfindings = ["Cardiomegaly", "Effusion", "Mass", "Nodule", '
        '"Atelectasis", "Infiltration", "Pneumonia", "Pneumothorax"]\n'))
    pretrained = train(load_config(config), "cpu").model_folder
    weights = load_file(str(pretrained / "model.safetensors"))
    card = load_model(pretrained).card
    network = build_network(card.method, card.architecture, 14)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    init_from(network, pretrained)
    after = network.state_dict()
    loaded = [k for k in after if k in weights and weights[k].shape == after[k].shape]
    kept = [k for k in after if k in weights and weights[k].shape != after[k].shape]
    assert any("backbone" in k for k in loaded) and kept, (loaded, kept)
    for key in loaded:
        torch.testing.assert_close(after[key], weights[key].to(after[key].dtype), msg=key)
    for key in kept:  # the 8-finding head does not fit 14 findings: left as initialised
        torch.testing.assert_close(after[key], before[key], msg=key)


def test_cards_and_seed_files_record_what_a_run_was_pretrained_on(tmp_path):
    """Pretrain -> fine-tune (``init_from`` a folder) -> seed file -> run from the seed."""
    from CXRWeakLocLib.methods.dm.stages import write_seed
    from CXRWeakLocLib.train.lineage import training_lineage

    first = train(load_config(write_config(tmp_path, epochs=1, count=16, name="first")), "cpu")
    first_card = load_model(first.model_folder).card
    assert "pretraining" not in first_card.training and training_lineage(tmp_path) == []

    config = write_config(tmp_path, epochs=1, count=24, name="second")
    config.write_text(config.read_text().replace(
        "[model]\n", f'[model]\ninit_from = "{first.model_folder}"\n'))
    second = load_model(train(load_config(config), "cpu").model_folder).card
    first_stage = {"name": "tiny", "dataset": "synthetic", "root": first_card.training["root"],
                   "train_images": first_card.training["train_images"],
                   "split": {"train_list": first_card.training["train_list"], "limit": 0,
                             "generated": [16, 64, 3], "val_fraction": 0.25, "seed": 3}}
    assert second.training["pretraining"] == [first_stage]
    assert "validation_not_held_out_from" not in second.training  # other images (24, not 16)

    seed = write_seed(tmp_path / "seed.safetensors", [tmp_path / "second" / "model"])
    chain = training_lineage(seed)
    assert chain[0] == first_stage and len(chain) == 2
    assert chain[1]["train_images"] == second.training["train_images"]
    assert second.training["train_images"] != first_stage["train_images"]


def test_a_run_from_weights_trained_on_its_validation_images_says_so(tmp_path):
    """Fine-tuning with another seed re-splits the same images (a set on disk): most of the
    new validation images were training images of the initial model; the card says so."""
    from CXRWeakLocLib.data.synthetic import write_synthetic_dataset

    images = write_synthetic_dataset(tmp_path / "images", 16, size=64, seed=5)

    def run(name: str, seed: int, init_from: Path | None = None):
        config = write_config(tmp_path, epochs=1, name=name)
        text = config.read_text().replace("seed = 3", f"seed = {seed}").replace(
            "[data]\n", f'[data]\nroot = "{images}"\n')
        if init_from:
            text = text.replace("[model]\n", f'[model]\ninit_from = "{init_from}"\n')
        config.write_text(text)
        return train(load_config(config), "cpu").model_folder

    first = run("first", seed=3)
    same_split = load_model(run("same", seed=3, init_from=first)).card
    other_split = load_model(run("other", seed=4, init_from=first)).card
    assert "validation_not_held_out_from" not in same_split.training
    assert other_split.training["validation_not_held_out_from"] == ["tiny"]
