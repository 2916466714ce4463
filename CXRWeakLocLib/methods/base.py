"""The small interfaces every method implements, and how a method declares itself.

A **method** (cam, gradcam, dm, ham, taggan, vagan, ...) is one :class:`Method` entry in
:data:`~CXRWeakLocLib.methods.METHODS`: how to build its network from a model card's
``architecture``, how it is trained (which kind of step the one training loop runs),
and what it can do beyond the common interface. Nothing else in the engine asks a
method what it is; abilities are declared here, never probed with ``hasattr``.

Every network is a :class:`LocalizationNetwork`: ``forward(x) -> (logits, maps)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch
from torch import nn

from ..networks.backbone import BackboneConfig

if TYPE_CHECKING:
    from ..train.step import TrainingContext, TrainingStep

__all__ = ["HealingNetwork", "LocalizationNetwork", "Method", "Objective", "Smoke",
           "TRAINING_KINDS"]


@runtime_checkable
class LocalizationNetwork(Protocol):
    """A network that gives every finding's logit and map in one call.

    ``forward(x)`` takes ``(B, 1, S, S)`` network inputs and returns ``(logits, maps)``:
    ``(B, C)`` and ``(B, C, h, w)``, the maps in the frame of ``x`` at any resolution
    (the Localizer upsamples them to the radiograph).
    """

    num_classes: int

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ...


@runtime_checkable
class HealingNetwork(LocalizationNetwork, Protocol):
    """A generative network that can remove a finding from an image (``Method.heals``).

    ``disease_maps(x)`` gives the signed disease signal ``D`` ``(B, C, S, S)`` with
    ``healed = x - D`` in network-input intensities.
    """

    def disease_maps(self, x: torch.Tensor) -> torch.Tensor:
        ...


class Objective(Protocol):
    """``objective(model, batch) -> (loss, {name: value})``: one supervised step's loss.

    ``batch`` holds ``image`` (B, 1, S, S), ``label`` and ``known`` (B, C) on the
    training device; ``model`` may be wrapped in DistributedDataParallel.
    """

    def __call__(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        ...


#: How a method is trained by :func:`~CXRWeakLocLib.train.engine.train`:
#: ``supervised`` (the loop's supervised step with the method's :class:`Objective`),
#: ``adversarial`` (the method's own step with generators and critics,
#: ``Method.make_step``), or ``None`` (not trained on its own: Grad-CAM reads a trained
#: classifier).
TRAINING_KINDS = ("supervised", "adversarial")


@dataclass(frozen=True)
class Smoke:
    """The smallest settings a method builds and trains with (tests and smoke runs).

    Attributes:
        options: the card's ``architecture.options``.
        loss: the run's ``[loss]`` table.
    """

    options: dict = field(default_factory=dict)
    loss: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Method:
    """One method: its network builder, its training, and its declared abilities.

    Attributes:
        name: the ``method`` of model cards and run configs.
        build: ``(backbone config, number of findings, options) -> network``.
        summary: one line for ``cxrweakloc models`` and the docs.
        training: one of :data:`TRAINING_KINDS`, or None when the method is not trained.
        objective: for supervised methods, ``[loss] table -> Objective``.
        make_step: for methods that bring their own step, ``context -> TrainingStep``.
        gradients_at_inference: the network backpropagates in ``forward`` (Grad-CAM):
            inference must keep autograd on.
        heals: the network is a :class:`HealingNetwork` (healed images are exported).
        uses_backbone: the card's ``backbone`` section shapes the network.
        smoke: its smallest settings; every registered method is built, trained one
            step, saved, loaded and run with them by ``Testing/test_structure.py``.
    """

    name: str
    build: Callable[[BackboneConfig, int, dict], nn.Module]
    summary: str
    training: str | None = "supervised"
    objective: Callable[[dict], Objective] | None = None
    make_step: Callable[[TrainingContext], TrainingStep] | None = None
    gradients_at_inference: bool = False
    heals: bool = False
    uses_backbone: bool = True
    smoke: Smoke = field(default_factory=Smoke)

    def __post_init__(self) -> None:
        if self.training is not None and self.training not in TRAINING_KINDS:
            raise ValueError(f"{self.name}: training must be one of {TRAINING_KINDS} or None")
        if (self.training == "supervised") != (self.objective is not None):
            raise ValueError(f"{self.name}: a supervised method needs an objective (and only "
                             "a supervised one has one)")
        if (self.training == "adversarial") != (self.make_step is not None):
            raise ValueError(f"{self.name}: an adversarial method brings its own step (and "
                             "only it does)")
