"""Ship a trained HAM run: ``python -m release.ship``'s steps, plus what only HAM has.

Usage (from the repository root, after ``cxrweakloc train --config
training/configs/ham_nih_mini.toml``)::

    flock /tmp/cxr-cpu.lock .venv/bin/python -m training.ham.ship [--run RUN/model]

1. ``release.ship.install`` and ``release.ship.calibrate_and_measure``: the run's model
   folder -> ``Resources/Models/ham``, its mask rule chosen on the dev boxes (box mode,
   like every shipped model), the figures under it in ``metrics["dev_bbox"]``.
2. The anomaly ("any finding") ROC-AUC, on the run's validation split (the patient
   split of the training list): every dev image has a finding, so it is undefined there.
3. ``training["init_from"]`` says what the run started from (for an interim ``cam``
   checkpoint written by ``init_weights.py``: its source and epoch).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from torch.utils.data import DataLoader

from CXRWeakLocLib.checkpoint import load_model
from CXRWeakLocLib.core.card import read_card, update_card
from CXRWeakLocLib.data.dataset import records_dataset
from CXRWeakLocLib.methods.ham.objective import anomaly_targets
from CXRWeakLocLib.metrics import roc_auc
from CXRWeakLocLib.train.config import load_config
from CXRWeakLocLib.train.run import split_by_patient, training_records
from release.ship import NIH_MINI, calibrate_and_measure, install
from release.sync import main as sync_lists

logger = logging.getLogger("ham.ship")

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "training" / "configs" / "ham_nih_mini.toml"


def anomaly_auc_on_validation(model_folder: Path) -> dict:
    """ROC-AUC of the anomaly head on the validation split its own run held out.

    The split is drawn from the card's recorded run config (its seed and data section),
    not from today's config file, which may name another seed.
    """
    model = load_model(model_folder)
    config = load_config(CONFIG, overrides=model.card.training["config"])
    _, validation = split_by_patient(training_records(config), config.data.val_fraction,
                                     config.run.seed)
    loader = DataLoader(records_dataset(validation, model.card), batch_size=16)
    scores, targets = [], []
    with torch.inference_mode():
        for batch in loader:
            out = model.network(batch["image"], details=True)
            abnormal, abnormal_known = anomaly_targets(batch["label"], batch["known"])
            scores.append(torch.sigmoid(out.anomaly_logits).numpy())
            targets.append(np.where(abnormal_known.numpy() > 0, abnormal.numpy(), np.nan))
    scores, targets = np.concatenate(scores), np.concatenate(targets)
    return {"anomaly_roc_auc": roc_auc(scores, targets), "images": len(validation),
            "normal_images": int(np.sum(targets == 0))}


def init_source(training: dict) -> dict:
    """What the run started from: a model folder, or a checkpoint file with its epoch."""
    path = (CONFIG.parent / training["config"]["model"]["init_from"]).resolve()
    shown = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)
    if path.suffix != ".safetensors":
        return {"path": shown, "what": "the shipped model's weights (matching tensors)"}
    with safe_open(str(path), "pt") as handle:
        meta = handle.metadata() or {}
    return {"path": shown, "what": "an interim checkpoint (matching tensors)", **meta}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=REPO / "runs" / "ham" / "model")
    parser.add_argument("--data", type=Path, default=NIH_MINI)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    folder = install(args.run, "ham", as_gradcam=False)
    calibrate_and_measure(folder, "ham", args.data)
    card = read_card(folder)
    metrics = dict(card.metrics)
    metrics["validation"] = {**metrics.get("validation", {}),
                             **anomaly_auc_on_validation(folder)}
    metrics["dev_bbox"] = {
        **metrics["dev_bbox"],
        "protocol": "each box scored on its own finding's HAM heatmap (oracle class)",
        "anomaly_roc_auc": None,
        "anomaly_roc_auc_note": "undefined on dev (every dev image has a finding); "
                                "see validation.anomaly_roc_auc",
    }
    training = {**card.training, "init_from": init_source(card.training)}
    update_card(folder, metrics=metrics, training=training)
    sync_lists()
    logger.info("card updated: %s", folder / "model.json")


if __name__ == "__main__":
    main()
