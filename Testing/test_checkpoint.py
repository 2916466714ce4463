"""Model folders: round trip, and every kind of mismatch refused with a clear message."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from CXRWeakLocLib.checkpoint import load_model
from CXRWeakLocLib.core.card import (
    INSTALLED_MODELS_DIR,
    SHIPPED_MODELS_DIR,
    model_search_path,
    read_card,
    resolve_model,
    update_card,
)
from CXRWeakLocLib.core.errors import CheckpointError
from CXRWeakLocLib.core.masks import MaskRule


@pytest.fixture
def model_copy(tiny_model, tmp_path):
    return shutil.copytree(tiny_model, tmp_path / "copy")


def edit_card(folder, **changes):
    path = folder / "model.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_round_trip_gives_the_same_outputs(tiny_model):
    model = load_model(tiny_model)
    assert model.card.weights_dtype == "float16"
    state = load_file(str(tiny_model / "model.safetensors"))
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    x = torch.randn(2, 1, 64, 64)
    logits, maps = model.network(x)
    assert logits.shape == (2, 14) and maps.shape[:2] == (2, 14)
    assert next(model.network.parameters()).dtype == torch.float32


def test_sha_mismatch_refused(model_copy):
    state = load_file(str(model_copy / "model.safetensors"))
    key = next(iter(state))
    state[key] = state[key] + 1
    save_file(state, str(model_copy / "model.safetensors"))
    with pytest.raises(CheckpointError, match="sha256"):
        load_model(model_copy)


def test_architecture_mismatch_refused(model_copy):
    state = load_file(str(model_copy / "model.safetensors"))
    state["classifier.weight"] = state["classifier.weight"][:3]
    save_file(state, str(model_copy / "model.safetensors"))
    from CXRWeakLocLib.core.files import sha256_of

    edit_card(model_copy, weights_sha256=sha256_of(model_copy / "model.safetensors"))
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_model(model_copy)


@pytest.mark.parametrize(("change", "message"), [
    ({"format_version": 99}, "format_version"),
    ({"findings": [{"name": "Mass", "code": "123"}]}, "expected 4147007"),
    ({"findings": ["Unicorn"]}, "unknown finding"),
    ({"method": "magic"}, "unknown method"),
    ({"surprise": 1}, "unknown keys"),
    ({"mask_rule": {"name": "guess"}}, "unknown mask rule"),
])
def test_bad_cards_refused(model_copy, change, message):
    edit_card(model_copy, **change)
    with pytest.raises(CheckpointError, match=message):
        load_model(model_copy)


def test_a_card_with_a_retired_finding_code_still_loads(model_copy):
    from CXRWeakLocLib.core.findings import finding_by_name

    edit_card(model_copy, findings=[{"name": "Pleural_Thickening", "code": "44608003"}])
    card = read_card(model_copy)
    [written] = card.to_json()["findings"]
    assert card.findings == ["Pleural_Thickening"]
    assert (written["scheme"], written["code"]) == ("99CXRWL", "PLEURAL_THICK")
    assert finding_by_name("Pleural_Thickening").retired_codes == ("44608003",)


def test_missing_files_and_bad_json(model_copy, tmp_path):
    (model_copy / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_model(model_copy)
    (model_copy / "model.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model(model_copy)
    with pytest.raises(CheckpointError, match="not found"):
        resolve_model("no-such-model-name")


def test_pickle_checkpoints_are_not_models(tmp_path, tiny_model):
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(tiny_model / "model.json", folder / "model.json")
    torch.save({"a": torch.zeros(1)}, folder / "model.safetensors")
    with pytest.raises(CheckpointError):
        load_model(folder)


def test_update_card_keeps_weights(model_copy):
    before = (model_copy / "model.safetensors").read_bytes()
    update_card(model_copy, metrics={"dev_bbox": {"iou_accuracy_0.3": 0.2}},
                mask_rule=MaskRule("otsu", 0.0))
    card = read_card(model_copy)
    assert card.metrics["dev_bbox"]["iou_accuracy_0.3"] == 0.2
    assert card.mask_rule.name == "otsu"
    assert (model_copy / "model.safetensors").read_bytes() == before
    load_model(model_copy)
    with pytest.raises(CheckpointError, match="cannot be updated"):
        update_card(model_copy, weights_sha256="0" * 64)


def test_built_wheel_carries_every_shipped_model(tmp_path):
    """A non-editable install finds the models where the wheel put them."""
    repo, source = Path(__file__).resolve().parents[1], tmp_path / "source"
    source.mkdir()
    for part in ("pyproject.toml", "README.md"):  # build off-tree: no build/ in the repository
        shutil.copy(repo / part, source / part)
    for part in ("CXRWeakLocLib", "Resources"):
        shutil.copytree(repo / part, source / part,
                        ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(source)], check=True, cwd=tmp_path)
    (wheel,) = tmp_path.glob("cxrweakloc-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    version = wheel.name.split("-")[1]
    data = f"cxrweakloc-{version}.data/data/share/cxrweakloc/models"
    for folder in sorted(p for p in SHIPPED_MODELS_DIR.iterdir() if p.is_dir()):
        for file in folder.iterdir():
            assert f"{data}/{folder.name}/{file.name}" in names, (
                f"{folder.name}/{file.name} missing from the wheel: run "
                "python -m release.sync ([tool.setuptools.data-files] in pyproject.toml)")
    assert model_search_path()[-1] == INSTALLED_MODELS_DIR
