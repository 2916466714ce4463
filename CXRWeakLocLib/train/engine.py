"""The one training loop: config in, validated model folder out, for every method.

The loop owns what every run shares: the patient split and the card
(:mod:`.run`), seeds fixed per epoch (so a resumed run equals an uninterrupted one),
the progress bar, ``log.csv`` and TensorBoard, resumable checkpoints (safetensors +
JSON, :mod:`.state`), DistributedDataParallel under ``torchrun`` (NCCL on GPUs, gloo on
CPUs) and saving the model. What one optimisation step does is the method's
:class:`~.step.TrainingStep`: :class:`~.supervised.SupervisedStep` with the method's
objective, or the step the method brings (``Method.make_step``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from monai.utils import set_determinism
from tqdm import tqdm

from ..checkpoint import save_model
from ..core.errors import ConfigError
from ..data.dataset import records_dataset
from ..distributed import Shard
from ..methods import build_network, method_named
from .config import TrainConfig
from .logs import RunLogs
from .run import init_from, load_imagenet, prepare_run
from .state import load_training_state, save_training_state
from .step import TrainingContext, TrainingStep
from .supervised import SupervisedStep

__all__ = ["TrainResult", "train"]

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """Where a finished run put its model, and its validation figures."""

    model_folder: Path
    run_folder: Path
    epochs: int
    validation: dict


def train(config: TrainConfig, device: str = "auto", resume: bool = True) -> TrainResult | None:
    """Train the configured method; returns the model folder (on the main process only)."""
    method = method_named(config.model.method)
    if method.training is None:
        raise ConfigError(f"method {method.name!r} is not trained on its own ({method.summary})")
    shard = Shard.from_env()
    if shard.distributed and method.make_step is not None:
        raise ConfigError(f"method {method.name!r} trains in one process (no torchrun)")
    placed = shard.device(device)
    with shard.process_group("nccl" if placed.type == "cuda" else "gloo"):
        setup = prepare_run(config)
        network = build_network(setup.card.method, setup.card.architecture,
                                len(setup.findings))
        load_imagenet(network)
        if config.model.init_from:
            init_from(network, config.path(config.model.init_from))
        network.to(placed)
        if config.optim.channels_last:
            network.to(memory_format=torch.channels_last)
        dataset = records_dataset(setup.train_records, setup.card,
                                  augmentation=config.data.augmentation,
                                  num_workers=config.data.num_workers)
        logs = RunLogs(setup.run_dir) if shard.main else None
        context = TrainingContext(config, setup, network, dataset, placed, shard, logs)
        step = (method.make_step(context) if method.make_step is not None
                else SupervisedStep(context, method.objective(config.loss)))
        try:
            return _run(context, step, resume)
        finally:
            if logs is not None:
                logs.close()


def _run(context: TrainingContext, step: TrainingStep, resume: bool) -> TrainResult | None:
    config, setup, shard = context.config, context.setup, context.shard
    state_dir = setup.run_dir / "last"
    start_epoch = 0
    if resume and (state_dir / "state.json").is_file():
        parts, meta = load_training_state(state_dir)
        step.load_state(parts)
        start_epoch = int(meta["epoch"])
        if shard.main:
            logger.info("resuming %s from epoch %d", setup.run_dir, start_epoch + 1)
    if shard.main:
        logger.info("training %s (%s) on %d images (%d validation) on %s x%d",
                    setup.card.name, setup.card.method, len(setup.train_records),
                    len(setup.val_records), context.device, shard.world)
    epochs = config.optim.epochs
    for epoch in range(start_epoch, epochs):
        seed = config.run.seed * 1000 + epoch
        set_determinism(seed)
        context.dataset.transform.set_random_state(seed=seed)
        started, totals, count = time.time(), {}, 0
        bar = tqdm(step.epoch_items(epoch, seed), desc=f"epoch {epoch + 1}/{epochs}",
                   disable=not shard.main, leave=False, dynamic_ncols=True)
        for item in bar:
            parts = step.step(item)
            count += 1
            for name, value in parts.items():
                totals[name] = totals.get(name, 0.0) + value
            bar.set_postfix({name: f"{totals[name] / count:.4f}" for name in step.progress})
        if shard.main:
            means = {name: value / max(1, count) for name, value in totals.items()}
            row = {"epoch": epoch + 1, **step.epoch_row(epoch, means),
                   "seconds": round(time.time() - started, 1)}
            context.logs.write(row)
            logger.info("epoch %d: %s", epoch + 1, ", ".join(
                f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
            if (epoch + 1) % config.optim.checkpoint_every == 0 or epoch + 1 == epochs:
                save_training_state(state_dir, step.state(),
                                    {"epoch": epoch + 1, "config": config.to_dict()})
        if shard.distributed:
            dist.barrier()
    if not shard.main:
        return None
    validation = step.finish()
    folder = save_model(setup.run_dir / "model", setup.card, context.network.cpu(),
                        overwrite=True)
    logger.info("model written to %s", folder)
    return TrainResult(folder, setup.run_dir, epochs, validation)
