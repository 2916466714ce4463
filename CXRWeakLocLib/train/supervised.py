"""The supervised step: one optimiser, the method's objective, DDP and bf16 on CUDA."""

from __future__ import annotations

import math

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from ..data.dataset import records_dataset
from ..methods.base import Objective
from .step import TrainingContext
from .validation import classification_figures, operating_thresholds, predict

__all__ = ["SupervisedStep", "parameter_groups", "warmup_cosine"]


def warmup_cosine(epochs: int, warmup: int, steps_per_epoch: int):
    """Learning-rate factor per step: linear warm-up over ``warmup`` epochs, then cosine."""
    total, warm = max(1, epochs * steps_per_epoch), max(0, warmup * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total - warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def parameter_groups(network: torch.nn.Module, lr: float, backbone_factor: float) -> list[dict]:
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


class SupervisedStep:
    """AdamW with warm-up and cosine decay on the objective's loss; the card's operating
    thresholds are the F1-best ones on the validation split.

    Args:
        context: what the loop built (network, dataset, device, processes).
        objective: the method's loss of one batch.
    """

    progress = ("loss",)

    def __init__(self, context: TrainingContext, objective: Objective) -> None:
        config, shard = context.config, context.shard
        self.context = context
        self.network = context.network
        self.objective = objective
        self.model = (DistributedDataParallel(self.network) if shard.distributed
                      else self.network)
        self.sampler = (DistributedSampler(context.dataset, shard.world, shard.rank,
                                           shuffle=True, seed=config.run.seed)
                        if shard.distributed else None)
        self.batch_size = max(1, config.optim.batch_size // shard.world)
        steps_per_epoch = max(1, math.ceil(len(context.dataset)
                                           / (self.batch_size * shard.world)))
        self.optimizer = torch.optim.AdamW(
            parameter_groups(self.network, config.optim.lr, config.optim.backbone_lr_factor),
            lr=config.optim.lr, weight_decay=config.optim.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            warmup_cosine(config.optim.epochs, config.optim.warmup_epochs, steps_per_epoch))
        self.use_amp = config.optim.amp and (context.device.type == "cuda"
                                             or config.optim.cpu_amp)
        self.channels_last = config.optim.channels_last
        val_records = context.setup.val_records
        self.val_loader = (DataLoader(records_dataset(val_records, context.setup.card),
                                      batch_size=self.batch_size)
                           if val_records and shard.main else None)

    def state(self) -> dict[str, dict]:
        return {"model": self.network.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict()}

    def load_state(self, parts: dict[str, dict]) -> None:
        self.network.load_state_dict(parts["model"])
        self.optimizer.load_state_dict(parts["optimizer"])
        self.scheduler.load_state_dict(parts["scheduler"])

    def epoch_items(self, epoch: int, seed: int) -> DataLoader:
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        dataset = self.context.dataset
        loader = DataLoader(
            dataset, batch_size=self.batch_size, shuffle=self.sampler is None,
            sampler=self.sampler, generator=torch.Generator().manual_seed(seed),
            drop_last=len(dataset) > self.batch_size,
            num_workers=self.context.config.data.num_workers,
        )
        self.model.train()
        return loader

    def step(self, batch: dict) -> dict[str, float]:
        device = self.context.device
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()
                 if isinstance(v, torch.Tensor)}
        if self.channels_last:
            batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.use_amp):
            loss, parts = self.objective(self.model, batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return {"loss": loss.item(), **parts}

    def epoch_row(self, epoch: int, means: dict[str, float]) -> dict:
        row = {"train_loss": means.pop("loss"), **{f"train_{k}": v for k, v in means.items()},
               "lr": self.scheduler.get_last_lr()[0]}
        if self.val_loader is not None:
            row["val_mean_auc"] = self._validate()[0]["mean_roc_auc"]
        return row

    def _validate(self) -> tuple[dict, tuple]:
        outputs = predict(self.network, self.val_loader, self.context.device,
                          self.channels_last)
        return classification_figures(*outputs, self.context.setup.findings), outputs

    def finish(self) -> dict:
        if self.val_loader is None:
            return {}
        validation, outputs = self._validate()
        card, findings = self.context.setup.card, self.context.setup.findings
        card.operating_thresholds = operating_thresholds(*outputs, findings)
        card.metrics["validation"] = {"images": len(self.context.setup.val_records),
                                      **validation}
        return validation
