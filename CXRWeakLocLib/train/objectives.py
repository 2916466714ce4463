"""Training objectives: what one step computes, per method.

The trainer owns the loop (data, optimiser, precision, DDP, logging, resume); an
objective owns the loss. Methods with extra losses (attention, adversarial, ...)
register their own objective in :data:`OBJECTIVES`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import nn

from ..errors import ConfigError
from .dm_objectives import dm_objective
from .ham_loss import HAMObjective
from .losses import WeightedBCELoss

__all__ = ["Objective", "ClassificationObjective", "OBJECTIVES", "objective_for"]


class Objective(Protocol):
    """``objective(model, batch) -> (loss, {name: value})`` for one training step.

    ``batch`` holds ``image`` (B, 1, S, S), ``label`` and ``known`` (B, C) on the
    training device; ``model`` may be wrapped in DistributedDataParallel.
    """

    def __call__(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        ...


class ClassificationObjective:
    """Weighted BCE on the logits of a ``(logits, maps)`` network (CAM classifiers)."""

    def __init__(self, options: dict) -> None:
        if options:
            raise ConfigError(f"[loss]: the classification objective takes no settings "
                              f"(got {', '.join(options)})")
        self.criterion = WeightedBCELoss()

    def __call__(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        logits, _ = model(batch["image"])
        loss = self.criterion(logits.float(), batch["label"], batch["known"])
        return loss, {"bce": loss.item()}


#: method name -> objective factory taking the run's ``[loss]`` table.
OBJECTIVES: dict[str, Callable[[dict], Objective]] = {
    "cam": ClassificationObjective,
    "dm": dm_objective,
    "ham": HAMObjective,
}


def objective_for(method: str, options: dict) -> Objective:
    """The objective that trains ``method``; a clear error for untrainable methods."""
    if method not in OBJECTIVES:
        raise ConfigError(f"method {method!r} is not trained by the trainer "
                          f"(trainable: {', '.join(OBJECTIVES)})")
    return OBJECTIVES[method](options)
