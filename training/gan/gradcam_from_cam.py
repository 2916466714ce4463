"""Wrap a trained ``cam`` model folder as a ``gradcam`` model folder (same weights).

Usage: python -m training.gan.gradcam_from_cam CAM_FOLDER OUT_FOLDER
"""

from __future__ import annotations

import sys
from pathlib import Path

from CXRWeakLocLib.checkpoint import load_model, save_model
from CXRWeakLocLib.methods.gradcam import gradcam_from_cam


def main(source: Path, target: Path) -> None:
    """Load ``source`` (cam), save it as ``target`` (Grad-CAM on its last stage)."""
    loaded = load_model(source)
    card, network = gradcam_from_cam(loaded.card, loaded.network,
                                     f"{loaded.card.name}-gradcam")
    print(save_model(target, card, network, overwrite=True))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
