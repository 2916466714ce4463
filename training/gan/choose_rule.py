"""Choose a GAN model's constraint function (mask rule) on the synthetic dev set.

Usage: python -m training.gan.choose_rule MODEL_FOLDER [DEV_ROOT]
Scores every rule of ``evaluate --sweep-mask-rules`` in one pass on DEV_ROOT (default
``runs/gan/synthetic_dev``, exact masks, disjoint from the training and test images) into
``MODEL_FOLDER/../eval_dev`` and writes the best rule (pixel-mode IoU-accuracy at 0.3,
mTIoU breaking ties: the synthetic truth is an exact mask, so the mask itself is scored)
into the model card.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from CXRWeakLocLib.core.card import update_card
from CXRWeakLocLib.evaluation import evaluate_model

REPO = Path(__file__).resolve().parents[2]


def main(model: Path, dev_root: Path) -> None:
    report = evaluate_model("synthetic", dev_root, str(model), model.parent / "eval_dev",
                            choose_rule=True, choose_in="pixel", device="cpu")
    update_card(model, mask_rule=report.mask_rule)
    print(f"{model}: mask rule {report.mask_rule}")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__.splitlines()[2])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    main(Path(sys.argv[1]),
         Path(sys.argv[2]) if len(sys.argv) == 3 else REPO / "runs" / "gan" / "synthetic_dev")
