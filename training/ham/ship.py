"""Ship a trained HAM run: copy it into Resources/Models/ham, choose its mask rule on the
dev boxes, evaluate, and write the measured numbers into its card.

Usage (from the repository root, after ``cxrweakloc train --config
training/configs/ham_nih_mini.toml``)::

    flock /tmp/cxr-cpu.lock .venv/bin/python training/ham/ship.py

Steps, all through the engine (no private metric code):

1. ``runs/ham/model`` -> ``Resources/Models/ham`` (weights untouched).
2. ``evaluate_model(..., choose_rule=True)`` on ``dev_bbox_list.txt`` ->
   ``results/eval/ham``: every rule of ``--sweep-mask-rules`` scored in one pass,
   :func:`best_sweep_rule` picks the rule (best box-mode IoU-accuracy at 0.3, mTIoU
   breaks ties).
   The dev boxes choose the rule, so the dev numbers are optimistic for the rule by
   the same amount as every model's whose rule is chosen this way (``cam`` too).
3. The card gets that rule; ``evaluate_model`` with it -> ``results/eval/ham``
   (the ``cxrweakloc evaluate ... --model ham --out results/eval/ham`` run).
4. ``metrics["dev_bbox"]`` = ``EvaluationReport.headline()`` + rule and protocol;
   the anomaly ("any finding") ROC-AUC is measured on the run's validation split (the
   patient split of the training list), because every dev image has a finding.
5. ``training["init_from"]`` says what the run started from (for an interim ``cam``
   checkpoint written by ``init_weights.py``: its source and epoch).
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from torch.utils.data import DataLoader

from CXRWeakLocLib.checkpoint import SHIPPED_MODELS_DIR, load_model, read_card, update_card
from CXRWeakLocLib.data.dataset import records_dataset
from CXRWeakLocLib.data.sources import load_records
from CXRWeakLocLib.evaluate import CHOOSE_MODE, evaluate_model
from CXRWeakLocLib.metrics import roc_auc
from CXRWeakLocLib.train.config import load_config
from CXRWeakLocLib.train.ham_loss import anomaly_targets
from CXRWeakLocLib.train.trainer import split_by_patient

logger = logging.getLogger("ham.ship")

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "training" / "configs" / "ham_nih_mini.toml"
DATA = REPO.parent / "shared" / "data" / "nih-mini"


def anomaly_auc_on_validation(config_path: Path, model_folder: Path) -> dict:
    """ROC-AUC of the anomaly head on the run's validation split (image-level labels)."""
    config = load_config(config_path)
    _, validation = split_by_patient(load_records(config), config.data.val_fraction,
                                     config.run.seed)
    model = load_model(model_folder)
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
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--results", type=Path, default=REPO / "results" / "eval")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    folder = SHIPPED_MODELS_DIR / "ham"
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(args.run, folder)
    dev_list = args.data / "dev_bbox_list.txt"

    report = evaluate_model("chestxray14", args.data, str(folder), args.results / "ham",
                            images_list=dev_list, choose_rule=True)
    rule = report.mask_rule
    logger.info("mask rule chosen on the dev boxes: %s", rule)
    update_card(folder, mask_rule=rule)
    logger.info("%s", report.summary_line())
    validation_anomaly = anomaly_auc_on_validation(CONFIG, folder)
    metrics = dict(read_card(folder).metrics)
    metrics["validation"] = {**metrics.get("validation", {}), **validation_anomaly}
    metrics["dev_bbox"] = {
        **report.headline(),
        "split": "nih-mini dev_bbox_list.txt",
        "mask_rule": str(rule),
        "mask_rule_chosen_on": f"the same dev boxes (--sweep-mask-rules, best {CHOOSE_MODE}-mode "
                               "IoU-accuracy at 0.3)",
        "protocol": "each box scored on its own finding's HAM heatmap (oracle class)",
        "anomaly_roc_auc": None,
        "anomaly_roc_auc_note": "undefined on dev (every dev image has a finding); "
                                "see validation.anomaly_roc_auc",
    }
    training = dict(read_card(folder).training)
    training["init_from"] = init_source(training)
    update_card(folder, metrics=metrics, training=training)
    logger.info("card updated: %s", folder / "model.json")


if __name__ == "__main__":
    main()
