"""What every training run starts from: its records split by patient, its card, its network.

:func:`prepare_run` reads the records, splits them, fixes the seed and starts the
model card; :func:`init_from` loads the weights a run starts from
(``[model] init_from``).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from monai.utils import set_determinism
from safetensors.torch import load_file
from torch import nn

from ..core.card import WEIGHTS_FILE, ModelCard
from ..core.errors import ConfigError
from ..core.findings import CHESTXRAY14
from ..data.records import ImageRecord, patient_key
from ..data.sources import read_dataset
from ..networks.efficientnet import IMAGENET_NORMALIZATION, EfficientNetFeatures, imagenet_record
from .config import TrainConfig
from .lineage import stages_trained_on_validation, training_lineage

__all__ = ["RunSetup", "init_from", "load_imagenet", "prepare_run", "split_by_patient",
           "training_records"]

logger = logging.getLogger(__name__)


@dataclass
class RunSetup:
    """What every training run starts from: folders, findings, the split, the card."""

    run_dir: Path
    findings: list[str]
    train_records: list[ImageRecord]
    val_records: list[ImageRecord]
    card: ModelCard


def training_records(config: TrainConfig) -> list[ImageRecord]:
    """Training records of a run config (image-level labels only, never annotations)."""
    data = config.data
    if data.dataset == "synthetic" and not data.root:
        from ..data.synthetic import make_synthetic_dataset

        records = make_synthetic_dataset(data.synthetic_count, config.model.input_size,
                                         config.run.seed)
    else:
        if not data.root:
            raise ConfigError("[data] root is not set")
        root = config.path(data.root)
        images_list = root / data.train_list if data.train_list else None
        records = read_dataset(data.dataset, root, images_list, annotations=False,
                               uncertainty=data.uncertainty)
    for record in records:
        record.annotations = []  # weak supervision: boxes never reach training
    return records[: data.limit] if data.limit else records


def split_by_patient(
    records: list[ImageRecord], val_fraction: float, seed: int
) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """Deterministic train/validation split that keeps each patient on one side."""
    if val_fraction <= 0:
        return list(records), []

    def bucket(record: ImageRecord) -> float:
        key = f"{seed}:{patient_key(record)}".encode()
        return int(hashlib.sha256(key).hexdigest()[:8], 16) / 0xFFFFFFFF

    train = [r for r in records if bucket(r) >= val_fraction]
    val = [r for r in records if bucket(r) < val_fraction]
    return train, val


def _lineage(config: TrainConfig) -> list[dict]:
    """The stages a run starts from: ImageNet (unless an earlier stage records it), then
    what ``init_from`` was trained on."""
    model = config.model
    lineage = training_lineage(config.path(model.init_from)) if model.init_from else []
    if (model.backbone.get("pretrained") == "imagenet"
            and not any(stage.get("name") == "imagenet" for stage in lineage)):
        lineage = [imagenet_record(), *lineage]
    return lineage


def _card(config: TrainConfig, findings: list[str], n_train: int) -> ModelCard:
    model = config.model
    lineage = _lineage(config)
    if (model.backbone.get("pretrained") == "imagenet"
            and model.normalization != IMAGENET_NORMALIZATION):
        logger.warning("ImageNet weights expect normalization %s, the run uses %s",
                       IMAGENET_NORMALIZATION, model.normalization)
    card = ModelCard(
        name=config.run.name,
        method=model.method,
        architecture={"backbone": dict(model.backbone),
                      **({"options": dict(model.options)} if model.options else {})},
        findings=findings,
        input_size=model.input_size,
        normalization=dict(model.normalization),
        description=config.run.description,
        training={
            "dataset": config.data.dataset,
            "root": config.data.root,
            "train_list": config.data.train_list,
            "train_images": n_train,
            "labels": "image-level only",
            "seed": config.run.seed,
            **({"pretraining": lineage} if lineage else {}),
            "config": config.to_dict(),
        },
    )
    leaked = stages_trained_on_validation(card.training)
    if leaked:
        logger.warning("validation is not held out: %s trained on these images split "
                       "otherwise (or did not record its split); validation figures are "
                       "optimistic", ", ".join(leaked))
        card.training["validation_not_held_out_from"] = leaked
    return card


def prepare_run(config: TrainConfig) -> RunSetup:
    """Read the records, split them by patient, and start the model card (seeded)."""
    findings = config.model.findings or [f.name for f in CHESTXRAY14]
    train_records, val_records = split_by_patient(training_records(config),
                                                  config.data.val_fraction, config.run.seed)
    if not train_records:
        raise ConfigError("no training images (check [data] root and train_list)")
    set_determinism(config.run.seed)
    return RunSetup(config.path(config.run.output), findings, train_records, val_records,
                    _card(config, findings, len(train_records)))


def load_imagenet(network: nn.Module) -> None:
    """Give every backbone configured ``pretrained = "imagenet"`` its ImageNet weights."""
    for module in network.modules():
        if isinstance(module, EfficientNetFeatures) and module.config.pretrained == "imagenet":
            module.load_imagenet()


def init_from(network: nn.Module, path: Path) -> None:
    """Load every tensor of ``path`` (a model folder or ``.safetensors`` file) whose name
    and shape match the network's."""
    weights = path / WEIGHTS_FILE if path.is_dir() else path
    if not weights.is_file():
        raise ConfigError(f"[model] init_from: {weights} not found")
    state = load_file(str(weights))
    own = network.state_dict()
    matching = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matching:
        raise ConfigError(f"[model] init_from: no tensor of {weights} fits the network")
    network.load_state_dict(matching, strict=False)
    logger.info("initialised %d of %d tensors from %s", len(matching), len(own), weights)
