"""One trainer for every method: config in, validated model folder out.

Features: weighted BCE (through the method object), bf16 autocast on CUDA (and on
CPU with ``[optim] cpu_amp``), an ImageNet start for backbones that have one
(``backbone.pretrained``), a lower backbone learning rate (``backbone_lr_factor``),
resumable checkpoints after every epoch (safetensors + JSON), TensorBoard and CSV
logs, a progress bar with loss and ETA, seeds fixed per epoch (so a resumed run
equals an uninterrupted one), and DistributedDataParallel under ``torchrun``
(NCCL on GPUs, gloo on CPUs).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from monai.utils import set_determinism
from safetensors.torch import load_file
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from ..checkpoint import (
    WEIGHTS_FILE,
    ModelCard,
    save_model,
    stages_trained_on_validation,
    training_lineage,
)
from ..data.dataset import records_dataset
from ..data.records import ImageRecord, patient_key
from ..data.sources import load_records
from ..errors import ConfigError
from ..findings import CHESTXRAY14
from ..metrics import ClassificationReport
from ..models import build_model
from ..networks.efficientnet import IMAGENET_NORMALIZATION, imagenet_record
from .config import TrainConfig
from .objectives import objective_for
from .state import load_training_state, save_training_state

__all__ = ["train", "split_by_patient", "prepare_run", "RunSetup", "TrainResult"]

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """Where a finished run put its model, and its validation figures."""

    model_folder: Path
    run_folder: Path
    epochs: int
    validation: dict


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup_distributed(device: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if world <= 1:
        return _Dist(device=torch.device("cuda" if use_cuda else "cpu"))
    dist.init_process_group("nccl" if use_cuda else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    return _Dist(dist.get_rank(), world,
                 torch.device(f"cuda:{local_rank}" if use_cuda else "cpu"))


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


def _lr_lambda(epochs: int, warmup: int, steps_per_epoch: int):
    total, warm = max(1, epochs * steps_per_epoch), max(0, warmup * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total - warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _init_from(network: torch.nn.Module, path: Path) -> None:
    """Load every tensor of ``path`` whose name and shape match the network's."""
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


def _load_imagenet(network: torch.nn.Module) -> None:
    """Give every backbone configured ``pretrained = "imagenet"`` its ImageNet weights."""
    for module in network.modules():
        if getattr(getattr(module, "config", None), "pretrained", "") == "imagenet":
            module.load_imagenet()


def _param_groups(network: torch.nn.Module, lr: float, backbone_factor: float) -> list[dict]:
    """Trainable parameters: the rest at ``lr``, backbones at ``lr * backbone_factor``."""
    head, backbone = [], []
    for name, parameter in network.named_parameters():
        if parameter.requires_grad:
            in_backbone = backbone_factor != 1.0 and ".backbone." in f".{name}"
            (backbone if in_backbone else head).append(parameter)
    groups = [{"params": head, "lr": lr}]
    if backbone:
        groups.append({"params": backbone, "lr": lr * backbone_factor})
    return groups


def _predict(network, loader, device,
             channels_last: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    network.eval()
    probs, labels, known = [], [], []
    with torch.inference_mode():
        for batch in loader:
            image = batch["image"].to(device)
            if channels_last:
                image = image.contiguous(memory_format=torch.channels_last)
            logits, _ = network(image)
            probs.append(torch.sigmoid(logits).float().cpu().numpy())
            labels.append(batch["label"].numpy())
            known.append(batch["known"].numpy())
    return np.concatenate(probs), np.concatenate(labels), np.concatenate(known)


def _classification(probs, labels, known, findings) -> dict:
    unknown_as_nan = np.where(known > 0, labels, np.nan)
    return ClassificationReport.from_arrays(findings, probs, unknown_as_nan).to_dict()


def operating_thresholds(
    probs: np.ndarray, labels: np.ndarray, known: np.ndarray, findings: list[str]
) -> dict[str, float]:
    """Per finding, the probability threshold with the best F1 on validation (0.5 if none)."""
    thresholds = {}
    for index, name in enumerate(findings):
        mask = known[:, index] > 0
        y, p = labels[mask, index], probs[mask, index]
        if y.sum() == 0 or y.sum() == len(y):
            thresholds[name] = 0.5
            continue
        best, best_f1 = 0.5, -1.0
        for cut in np.unique(p):
            predicted = p >= cut
            tp = float((predicted & (y > 0)).sum())
            f1 = 2 * tp / max(1.0, predicted.sum() + y.sum())
            if f1 > best_f1:
                best, best_f1 = float(cut), f1
        thresholds[name] = round(best, 4)
    return thresholds


def train(config: TrainConfig, device: str = "auto", resume: bool = True) -> TrainResult | None:
    """Train the configured model; returns the exported model folder (rank 0 only)."""
    env = _setup_distributed(device)
    try:
        return _train(config, env, resume)
    finally:
        if env.world > 1:
            dist.destroy_process_group()


@dataclass
class RunSetup:
    """What every training loop starts from: folders, findings, the split, the card."""

    run_dir: Path
    findings: list[str]
    train_records: list[ImageRecord]
    val_records: list[ImageRecord]
    card: ModelCard


def prepare_run(config: TrainConfig) -> RunSetup:
    """Read the records, split them by patient, and start the model card (seeded)."""
    findings = config.model.findings or [f.name for f in CHESTXRAY14]
    train_records, val_records = split_by_patient(load_records(config),
                                                  config.data.val_fraction, config.run.seed)
    if not train_records:
        raise ConfigError("no training images (check [data] root and train_list)")
    set_determinism(config.run.seed)
    return RunSetup(config.path(config.run.output), findings, train_records, val_records,
                    _card(config, findings, len(train_records)))


def _train(config: TrainConfig, env: _Dist, resume: bool) -> TrainResult | None:
    setup = prepare_run(config)
    run_dir, findings, card = setup.run_dir, setup.findings, setup.card
    train_records, val_records = setup.train_records, setup.val_records
    network = build_model({"method": card.method, **card.architecture}, len(findings))
    _load_imagenet(network)
    if config.model.init_from:
        _init_from(network, config.path(config.model.init_from))
    network.to(env.device)
    channels_last = config.optim.channels_last
    if channels_last:
        network.to(memory_format=torch.channels_last)
    model = DistributedDataParallel(network) if env.world > 1 else network

    if env.main:
        logger.info("training %s on %d images (%d validation) on %s x%d",
                    card.name, len(train_records), len(val_records), env.device, env.world)
    train_ds = records_dataset(train_records, card, augmentation=config.data.augmentation,
                               num_workers=config.data.num_workers)
    sampler = (DistributedSampler(train_ds, env.world, env.rank, shuffle=True,
                                  seed=config.run.seed) if env.world > 1 else None)
    per_rank_batch = max(1, config.optim.batch_size // env.world)
    steps_per_epoch = max(1, math.ceil(len(train_ds) / (per_rank_batch * env.world)))
    optimizer = torch.optim.AdamW(
        _param_groups(network, config.optim.lr, config.optim.backbone_lr_factor),
        lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(config.optim.epochs, config.optim.warmup_epochs, steps_per_epoch)
    )
    objective = objective_for(card.method, config.loss)
    use_amp = config.optim.amp and (env.device.type == "cuda" or config.optim.cpu_amp)

    start_epoch = 0
    state_dir = run_dir / "last"
    if resume and (state_dir / "state.json").is_file():
        parts, meta = load_training_state(state_dir)
        network.load_state_dict(parts["model"])
        optimizer.load_state_dict(parts["optimizer"])
        scheduler.load_state_dict(parts["scheduler"])
        start_epoch = int(meta["epoch"])
        if env.main:
            logger.info("resuming %s from epoch %d", run_dir, start_epoch + 1)

    logs = _RunLogs(run_dir) if env.main else None
    val_loader = DataLoader(records_dataset(val_records, card),
                            batch_size=per_rank_batch) if val_records and env.main else None
    validation: dict = {}
    for epoch in range(start_epoch, config.optim.epochs):
        epoch_seed = config.run.seed * 1000 + epoch
        set_determinism(epoch_seed)
        train_ds.transform.set_random_state(seed=epoch_seed)
        if sampler is not None:
            sampler.set_epoch(epoch)
        generator = torch.Generator().manual_seed(epoch_seed)
        loader = DataLoader(
            train_ds, batch_size=per_rank_batch, shuffle=sampler is None, sampler=sampler,
            generator=generator, drop_last=len(train_ds) > per_rank_batch,
            num_workers=config.data.num_workers,
        )
        model.train()
        started, total, count = time.time(), 0.0, 0
        part_totals: dict[str, float] = {}
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.optim.epochs}",
                   disable=not env.main, leave=False, dynamic_ncols=True)
        for batch in bar:
            batch = {k: v.to(env.device, non_blocking=True) for k, v in batch.items()
                     if isinstance(v, torch.Tensor)}
            if channels_last:
                batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
            with torch.autocast(env.device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss, parts = objective(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total, count = total + loss.item(), count + 1
            for name, value in parts.items():
                part_totals[name] = part_totals.get(name, 0.0) + value
            bar.set_postfix(loss=f"{total / count:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        row = {"epoch": epoch + 1, "train_loss": total / max(1, count),
               **{f"train_{k}": v / max(1, count) for k, v in part_totals.items()},
               "lr": scheduler.get_last_lr()[0], "seconds": round(time.time() - started, 1)}
        if env.main:
            if val_loader is not None:
                probs, labels, known = _predict(network, val_loader, env.device, channels_last)
                validation = _classification(probs, labels, known, findings)
                row["val_mean_auc"] = validation["mean_roc_auc"]
            logs.write(row)
            logger.info("epoch %d: %s", epoch + 1, row)
            if (epoch + 1) % config.optim.checkpoint_every == 0 or epoch + 1 == config.optim.epochs:
                save_training_state(
                    state_dir,
                    {"model": network.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict()},
                    {"epoch": epoch + 1, "config": config.to_dict()},
                )
        if env.world > 1:
            dist.barrier()

    if not env.main:
        return None
    logs.close()
    if val_loader is not None:
        probs, labels, known = _predict(network, val_loader, env.device, channels_last)
        validation = _classification(probs, labels, known, findings)
        card.operating_thresholds = operating_thresholds(probs, labels, known, findings)
        card.metrics["validation"] = {"images": len(val_records), **validation}
    folder = save_model(run_dir / "model", card, network.cpu(), overwrite=True)
    logger.info("model written to %s", folder)
    return TrainResult(folder, run_dir, config.optim.epochs, validation)


class _RunLogs:
    """CSV + TensorBoard logs of one run (main process only)."""

    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        run_dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = run_dir / "log.csv"
        self.tensorboard = SummaryWriter(str(run_dir / "tensorboard"))

    def write(self, row: dict) -> None:
        new = not self.csv_path.exists()
        with self.csv_path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)) and not math.isnan(value):
                self.tensorboard.add_scalar(key, value, row["epoch"])
        self.tensorboard.flush()

    def close(self) -> None:
        self.tensorboard.close()
