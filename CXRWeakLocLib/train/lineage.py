"""What a run was built on: the training stages behind a weights source, and whether
an earlier stage trained on this run's validation images.

Cards record a run's lineage in ``training.pretraining``; seed ``.safetensors`` files
carry it in their metadata (:data:`LINEAGE_METADATA_KEY`).
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import safe_open

from ..core.card import CARD_FILE, read_card

__all__ = ["LINEAGE_METADATA_KEY", "split_identity", "stages_trained_on_validation",
           "training_lineage"]

#: ``.safetensors`` metadata key holding a weights file's training lineage (JSON list).
LINEAGE_METADATA_KEY = "training_lineage"

#: The parts of a run's split that say which images it read (the rest: how it split them).
_SPLIT_IMAGES = ("train_list", "limit", "generated")


def split_identity(training: dict) -> dict:
    """What decides a run's patient split, from its card's ``training`` record: which
    images (image list, limit; for synthetic images generated in memory, their count,
    size and seed) and how they were split (validation fraction, seed)."""
    config = training.get("config", {})
    data = config.get("data", {})
    generated = training.get("dataset") == "synthetic" and not training.get("root")
    return {"train_list": training.get("train_list"), "limit": data.get("limit"),
            "generated": ([data.get("synthetic_count"), config.get("model", {}).get("input_size"),
                           training.get("seed")] if generated else None),
            "val_fraction": data.get("val_fraction"), "seed": training.get("seed")}


def stages_trained_on_validation(training: dict) -> list[str]:
    """The earlier stages of a run (``training["pretraining"]``) that may have trained on
    its validation images: a stage that read the same images but split them otherwise
    (another seed or validation fraction) holds most of them in its training set; a stage
    on the same dataset that did not record its split (older cards) may.
    """
    own = split_identity(training)
    flagged = []
    for stage in training.get("pretraining", []):
        if (stage.get("dataset"), stage.get("root")) != (training.get("dataset"),
                                                         training.get("root")):
            continue
        split = stage.get("split")
        same_images = split is not None and all(split.get(k) == own[k] for k in _SPLIT_IMAGES)
        if split is None or (same_images and split != own):
            flagged.append(str(stage.get("name")))
    return flagged


def training_lineage(source: Path) -> list[dict]:
    """The training stages behind a weights source, earliest first.

    A model folder contributes its card's own ``training["pretraining"]`` followed by
    its stage (name, dataset, data root, number of training images); a ``.safetensors`` file its
    :data:`LINEAGE_METADATA_KEY` metadata (written by seed files); anything else
    nothing. Cards record it so a fine-tuned model says what it was pretrained on.
    """
    source = Path(source)
    if (source / CARD_FILE).is_file():
        card = read_card(source)
        stage = {"name": card.name,
                 **{key: card.training.get(key) for key in ("dataset", "root", "train_images")},
                 "split": split_identity(card.training)}
        return [*card.training.get("pretraining", []), stage]
    if source.suffix == ".safetensors" and source.is_file():
        with safe_open(str(source), "numpy") as handle:
            text = (handle.metadata() or {}).get(LINEAGE_METADATA_KEY)
        return json.loads(text) if text else []
    return []
