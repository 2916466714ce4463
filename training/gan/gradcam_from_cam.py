"""Wrap a trained ``cam`` model folder as a ``gradcam`` model folder (same weights).

Usage: python training/gan/gradcam_from_cam.py CAM_FOLDER OUT_FOLDER
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from CXRWeakLocLib.checkpoint import load_model, save_model
from CXRWeakLocLib.models import build_model


def _target(network) -> str:
    return f"backbone.{network.backbone.cam_layer}"


def main(source: Path, target: Path) -> None:
    """Load ``source`` (cam), save it as ``target`` (gradcam on the backbone's last map)."""
    loaded = load_model(source)
    card = replace(loaded.card, method="gradcam", name=f"{loaded.card.name}-gradcam",
                   architecture={**loaded.card.architecture,
                                 "options": {"target_layer": _target(loaded.network)}})
    network = build_model({"method": "gradcam", **card.architecture}, len(card.findings))
    network.classifier.load_state_dict(loaded.network.state_dict())
    print(save_model(target, card, network, overwrite=True))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
