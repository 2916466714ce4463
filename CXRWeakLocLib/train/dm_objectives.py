"""Training objectives of the ``dm`` method: the alignment stage and the classifier stages.

``[loss] stage`` picks the stage (the network's ``frozen`` option says what stays
fixed):

``alignment``
    trains the alignment module towards the anchor image (``frozen = ["backbone",
    "classifier"]``): ``L = w_e L_e + w_p L_p`` on ``phi(I) = B(G(warp(I)))``,
    ``G`` a ``pool`` x ``pool`` average pooling, ``B`` bilinear upsampling back.
    ``L_e`` is the per-pixel Euclidean distance to the anchor, averaged over the
    pixels (the paper sums; the mean keeps the weights resolution-independent);
    ``L_p`` is Johnson et al.'s feature reconstruction loss (mean squared
    difference, i.e. ``||.||^2 / (C H W)``) summed over the four stages of the
    network's own classifier (our trained ``cam`` backbone, loaded by
    ``init_from``) between the anchor and ``phi(I)``.
``classification`` (default)
    weighted BCE on the logits, as for ``cam``: the "+alignment" classifier
    (all-zero masks) and the attention retraining (disease masks in the buffer);
    ``frozen = ["aligner"]``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional
from torch.nn.parallel import DistributedDataParallel

from ..errors import ConfigError, refuse_unknown
from ..models.dm import DiseaseMaskCAM, warp

__all__ = ["AlignmentObjective", "dm_objective", "smooth"]

STAGES = ("classification", "alignment")


def smooth(image: torch.Tensor, pool: int) -> torch.Tensor:
    """``B(G(image))``: ``pool`` x ``pool`` average pooling, bilinear upsampling back."""
    pooled = functional.avg_pool2d(image, kernel_size=pool, stride=pool)
    return functional.interpolate(pooled, size=image.shape[-2:], mode="bilinear",
                                  align_corners=False)


class AlignmentObjective:
    """Euclidean + perceptual loss of the smoothed aligned image against the anchor.

    Options (``[loss]``): ``size`` (resolution the loss is computed at; 0: the
    input's), ``pool`` (16, in pixels at that resolution), ``euclidean_weight``
    (1.0), ``perceptual_weight`` (1.0).
    """

    def __init__(self, options: dict) -> None:
        refuse_unknown(options, {"stage", "size", "pool", "euclidean_weight",
                                 "perceptual_weight"}, "[loss]: unknown alignment setting(s)")
        self.size = int(options.get("size", 0))
        self.pool = int(options.get("pool", 16))
        self.euclidean_weight = float(options.get("euclidean_weight", 1.0))
        self.perceptual_weight = float(options.get("perceptual_weight", 1.0))

    def __call__(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        if isinstance(model, DistributedDataParallel):
            raise ConfigError("the dm alignment stage trains in one process (no torchrun)")
        if not isinstance(model, DiseaseMaskCAM) or model.aligner is None:
            raise ConfigError("the alignment stage needs a dm model with alignment = true")
        if "aligner" in model.frozen or not {"backbone", "classifier"} <= set(model.frozen):
            raise ConfigError('the alignment stage needs [model] options frozen = '
                              '["backbone", "classifier"]')
        images = batch["image"]
        matrix = model.alignment_matrix(images)
        if self.size:
            images = functional.interpolate(images, size=(self.size, self.size),
                                            mode="bilinear", align_corners=False, antialias=True)
        aligned = smooth(warp(images, matrix).float(), self.pool)
        anchor = functional.interpolate(model.anchor[None], size=images.shape[-2:],
                                        mode="bilinear", align_corners=False)
        anchor = anchor.expand_as(aligned)
        euclidean = (aligned - anchor).abs().mean()
        with torch.no_grad():
            targets = model.backbone.stage_outputs(anchor[:1])
        perceptual = sum(
            functional.mse_loss(feature, target.expand_as(feature))
            for feature, target in zip(model.backbone.stage_outputs(aligned), targets,
                                       strict=True)
        )
        loss = self.euclidean_weight * euclidean + self.perceptual_weight * perceptual
        return loss, {"euclidean": euclidean.item(), "perceptual": perceptual.item()}


def dm_objective(options: dict):
    """The objective of the ``[loss] stage`` (see the module docstring)."""
    from .objectives import ClassificationObjective

    options = dict(options)
    stage = options.pop("stage", "classification")
    if stage not in STAGES:
        raise ConfigError(f"[loss] stage must be one of {', '.join(STAGES)}, got {stage!r}")
    return AlignmentObjective(options) if stage == "alignment" else ClassificationObjective(
        options)
