"""What the one training loop asks of a method's training: a :class:`TrainingStep`.

The loop (:mod:`.engine`) owns epochs, seeds, the progress bar, logs, resumable
checkpoints, processes and saving the model; a step owns what one optimisation step
does and what its model needs before it is saved. Supervised methods get
:class:`~.supervised.SupervisedStep` with their objective; a method whose training does
not fit one optimiser (the healing GANs) brings its own step (``Method.make_step``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from ..distributed import Shard
from .config import TrainConfig
from .logs import RunLogs
from .run import RunSetup

__all__ = ["TrainingContext", "TrainingStep"]


@dataclass
class TrainingContext:
    """Everything a step is built from.

    Attributes:
        config: the run configuration.
        setup: folders, findings, the patient split and the card being written.
        network: the method's network with its starting weights, on ``device``.
        dataset: the training records as network inputs (augmented).
        device: this process's device.
        shard: this process's place among torchrun's processes.
        logs: the run's logs (the main process only; None elsewhere).
    """

    config: TrainConfig
    setup: RunSetup
    network: nn.Module
    dataset: Any
    device: torch.device
    shard: Shard
    logs: RunLogs | None


class TrainingStep(Protocol):
    """One method's training, as the loop drives it.

    Attributes:
        progress: the names of the parts the progress bar shows (running means).
    """

    progress: tuple[str, ...]

    def state(self) -> dict[str, dict]:
        """State dicts a resumable checkpoint holds (networks, optimisers, schedulers)."""
        ...

    def load_state(self, parts: dict[str, dict]) -> None:
        """Restore :meth:`state`'s parts from a checkpoint."""
        ...

    def epoch_items(self, epoch: int, seed: int) -> Iterable:
        """What one epoch iterates (batches, step numbers); seeds the step's own RNGs."""
        ...

    def step(self, item) -> dict[str, float]:
        """One optimisation step; its named losses."""
        ...

    def epoch_row(self, epoch: int, means: dict[str, float]) -> dict:
        """The epoch's ``log.csv`` fields from the mean of each part (main process)."""
        ...

    def finish(self) -> dict:
        """Fit what the saved model needs (thresholds, calibration) into the card;
        returns the validation figures."""
        ...
