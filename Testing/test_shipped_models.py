"""Every shipped model gives, on a real NIH radiograph, the outputs recorded for it.

``python -m release.fingerprints`` records them (after a model is shipped); moving or
restructuring code must leave them as they are. The tolerance (1e-5) only allows for
another CPU's floating-point kernels; on the recording machine they are bit-identical.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import shared_path

from CXRWeakLocLib.core.card import shipped_models
from release.fingerprints import IMAGE, RECORD, fingerprint

RECORDED = json.loads(RECORD.read_text())["models"]


def test_every_shipped_model_is_recorded():
    assert sorted(RECORDED) == sorted(folder.name for folder in shipped_models())


@pytest.mark.realdata
@pytest.mark.parametrize("folder", shipped_models(), ids=lambda folder: folder.name)
def test_a_shipped_model_gives_its_recorded_outputs(folder):
    image = shared_path(f"nih-mini/images/{IMAGE.name}")
    recorded, now = RECORDED[folder.name], fingerprint(folder, image)
    assert now["weights_sha256"] == recorded["weights_sha256"], (
        f"{folder.name} was re-shipped: record it anew with python -m release.fingerprints")
    assert now["map_shape"] == recorded["map_shape"]
    np.testing.assert_allclose(now["probabilities"], recorded["probabilities"], atol=1e-5)
    np.testing.assert_allclose(now["pooled_maps"], recorded["pooled_maps"], atol=1e-5,
                               rtol=1e-5)
