"""Record what every shipped model outputs on one real NIH radiograph, for the test that
keeps those outputs unchanged (``Testing/test_shipped_models.py``).

Usage: python -m release.fingerprints   (after shipping or re-shipping a model)

Per model: its weights' sha256, the 14 probabilities, and each finding's map averaged
to a 4 x 4 grid (the network's own output, before upsampling). A restructuring of the
code must leave them as they are; a re-shipped model is recorded anew.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from CXRWeakLocLib.core.card import shipped_models
from CXRWeakLocLib.core.radiograph import read_radiograph
from CXRWeakLocLib.localize import Localizer

REPO = Path(__file__).resolve().parents[1]
#: A dev image of nih-mini (Effusion and Infiltration in NIH's labels).
IMAGE = REPO.parent / "shared" / "data" / "nih-mini" / "images" / "00000032_037.png"
RECORD = REPO / "Testing" / "data" / "shipped_model_outputs.json"
GRID = 4


def fingerprint(folder: Path, image: Path = IMAGE) -> dict:
    """The weights' sha256, probabilities and pooled maps of one model folder on ``image``."""
    localizer = Localizer.from_name(str(folder), "cpu")
    probabilities, maps = localizer.predict(localizer.prepare(read_radiograph(image))[None])
    pooled = torch.nn.functional.adaptive_avg_pool2d(maps, GRID)[0]
    return {"weights_sha256": localizer.card.weights_sha256,
            "probabilities": [float(p) for p in probabilities[0]],
            "map_shape": list(maps.shape[1:]),
            "pooled_maps": [[float(v) for v in m.flatten()] for m in pooled]}


def main() -> None:
    torch.set_num_threads(1)
    record = {folder.name: fingerprint(folder) for folder in shipped_models()}
    RECORD.write_text(json.dumps({"image": IMAGE.name, "models": record}, indent=1) + "\n")
    print(f"{len(record)} models recorded in {RECORD}")


if __name__ == "__main__":
    main()
