"""The inference path's faster parts agree with what they replace: the model-input transform
with MONAI's Resize + NormalizeIntensity, ONNX Runtime with torch eager (and eager is the
fallback)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shared_path
from monai.transforms import Compose, NormalizeIntensity, Resize

from CXRWeakLocLib import runtime
from CXRWeakLocLib.core.radiograph import read_radiograph
from CXRWeakLocLib.data.transforms import ModelInput
from CXRWeakLocLib.localize import Localizer
from CXRWeakLocLib.runtime import BACKEND_ENV, CACHE_ENV, MAP_TOLERANCE, normalised_maps


@pytest.mark.parametrize("shape, side", [
    ((1024, 1024), 256), ((700, 555), 256), ((2048, 1800), 512), ((200, 300), 256),
    ((256, 256), 256), ((97, 1500), 256),
])
def test_model_input_is_monais_antialiased_resize_and_normalisation(shape, side):
    image = np.random.default_rng(sum(shape)).random((1, *shape), dtype=np.float32)
    monai = Compose([Resize((side, side), mode="bilinear", anti_aliasing=True),
                     NormalizeIntensity(subtrahend=0.5, divisor=0.25)])
    expected = torch.as_tensor(monai(image)).as_subclass(torch.Tensor)
    prepared = ModelInput(side, 0.5, 0.25)(image)
    assert type(prepared) is torch.Tensor and prepared.dtype == torch.float32
    assert prepared.shape == (1, side, side)
    torch.testing.assert_close(prepared, expected, rtol=0, atol=2e-6)


def test_model_input_refuses_other_shapes():
    with pytest.raises(ValueError, match=r"expected a \(1, H, W\) image"):
        ModelInput(64, 0.5, 0.5)(np.zeros((2, 8, 8), dtype=np.float32))


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_shipped_cam_runs_in_onnx_runtime_within_tolerance_of_eager(fresh_cache):
    """On the real radiograph, ONNX Runtime's maps are eager's within MAP_TOLERANCE
    (normalised), its probabilities within 1e-4; the export is cached for the next run."""
    localizer = Localizer.from_name("cam", "cpu")
    assert localizer.runtime == "onnxruntime"
    assert [p.suffix for p in sorted(fresh_cache.iterdir())] == [".json", ".onnx"]
    radiograph = read_radiograph(shared_path("fixtures/dicom/siim_cxr.dcm"))
    batch = torch.stack([localizer.prepare(radiograph)] * 2)
    probabilities, maps = localizer.predict(batch)
    with torch.inference_mode():
        logits, eager_maps = localizer.model.network(batch)
    assert float((normalised_maps(maps) - normalised_maps(eager_maps)).abs().max()) \
        <= MAP_TOLERANCE
    np.testing.assert_allclose(probabilities, torch.sigmoid(logits).numpy(), atol=1e-4)
    again = Localizer.from_name("cam", "cpu")  # from the cache: nothing exported anew
    assert again.runtime == "onnxruntime" and len(list(fresh_cache.iterdir())) == 2


def test_eager_when_asked_when_gradients_are_needed_or_when_onnx_disagrees(
        fresh_cache, monkeypatch):
    monkeypatch.setenv(BACKEND_ENV, "eager")
    assert Localizer.from_name("cam", "cpu").runtime == "torch"
    monkeypatch.delenv(BACKEND_ENV)
    assert Localizer.from_name("gradcam", "cpu").runtime == "torch"  # backward in forward
    monkeypatch.setattr(runtime, "MAP_TOLERANCE", 0.0)  # nothing agrees that closely
    assert Localizer.from_name("cam", "cpu").runtime == "torch"
    (verdict,) = fresh_cache.glob("*.json")
    assert json.loads(verdict.read_text())["agrees"] is False
    monkeypatch.setattr(runtime, "MAP_TOLERANCE", 1.0)
    assert Localizer.from_name("cam", "cpu").runtime == "torch"  # the verdict is kept
