"""The inference path's faster parts agree with what they replace: the model-input transform
with MONAI's Resize + NormalizeIntensity, and the shipped inference layout with eager fp32."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import Compose, NormalizeIntensity, Resize

from CXRWeakLocLib.data.transforms import ModelInput


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
