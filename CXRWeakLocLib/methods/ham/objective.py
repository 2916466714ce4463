"""HAM's training objective: anomaly and class BCE plus the attention constraints.

``loss = 0.01 L_ano + 1 L_cls + 0.001 L_bound + 0.001 L_union`` (Ouyang et al. 2021;
weights are named ``[loss]`` settings):

``L_ano``, ``L_cls``
    the trainer's weighted BCE (with the ``known`` masks) on the anomaly ("any
    finding") logit and on the class logits. An image's anomaly label is 1 when any
    known label is positive, 0 when all labels are known and negative, else unknown.
``L_bound``
    class attention must lie inside anomaly attention: per positive (image, finding)
    ``(sum C - sum min(C, A) * m(C)) / max(sum C, 1e-5)``, averaged over the positive
    images of a finding, then over the findings present in the batch.
``L_union``
    anomaly attention must lie inside the union of the positive findings' attention:
    per abnormal image ``(sum A - sum min(max_k C_k, A) * m(A)) / max(sum A, 1e-5)``.

``C``, ``A`` are the ReLU CAMs of the class and anomaly heads at feature resolution
(head weights detached, so these losses train the features), and
``m(x) = sigmoid(100 (x - 0.75))`` is the soft "strongly attended" mask. The same
functions serve any validation or analysis (the public code's validation used
another ``L_union`` formula; there is one here).

``L_ex``, the box loss (weight 0.5 in the paper), needs box annotations during
training and so is **off by default**: this product is weakly supervised. It runs
only with ``box_loss = true`` and batches carrying ``box_masks`` ``(B, C, S, S)``
(each finding's boxes rasterised in the network-input frame, after the same
augmentation as the image) and ``box_known`` ``(B, C)``; no dataset of this package
provides them, so the objective then stops with a :class:`ConfigError`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...core.errors import ConfigError, refuse_unknown
from ...losses import WeightedBCELoss
from .network import refine_cams

__all__ = ["HAMLossConfig", "HAMObjective", "anomaly_targets", "bound_loss", "union_loss",
           "box_loss", "soft_mask"]


@dataclass(frozen=True)
class HAMLossConfig:
    """The ``[loss]`` table of a HAM run (defaults: the paper's values)."""

    anomaly_weight: float = 0.01
    class_weight: float = 1.0
    bound_weight: float = 0.001
    union_weight: float = 0.001
    #: soft mask m(x) = sigmoid(mask_sharpness * (x - mask_center)) on raw CAMs
    mask_center: float = 0.75
    mask_sharpness: float = 100.0
    #: HAM's box loss L_ex: needs boxes in training, so off (weakly supervised)
    box_loss: bool = False
    box_weight: float = 0.5

    @classmethod
    def from_dict(cls, options: dict) -> HAMLossConfig:
        refuse_unknown(options, cls, "[loss]: unknown HAM setting(s)")
        try:
            return cls(**options)
        except TypeError as error:
            raise ConfigError(f"[loss]: {error}") from None


def soft_mask(maps: torch.Tensor, center: float = 0.75, sharpness: float = 100.0) -> torch.Tensor:
    """``sigmoid(sharpness (maps - center))``: 1 where a map is strongly on."""
    return torch.sigmoid(sharpness * (maps - center))


def _mean_over_present(per_item: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Mean over positives along dim 0, then over the columns that have any."""
    counts = positives.sum(dim=0)
    per_column = (per_item * positives).sum(dim=0) / counts.clamp(min=1.0)
    return per_column.sum() / (counts > 0).sum().clamp(min=1)


def bound_loss(class_cams: torch.Tensor, anomaly_cam: torch.Tensor, positives: torch.Tensor,
               center: float = 0.75, sharpness: float = 100.0) -> torch.Tensor:
    """``L_bound``: the share of each positive class CAM lying outside the anomaly CAM.

    Args:
        class_cams: ``(B, C, h, w)`` non-negative class CAMs.
        anomaly_cam: ``(B, 1, h, w)`` non-negative anomaly CAM.
        positives: ``(B, C)`` 1 for known positive labels, else 0.
    """
    total = class_cams.sum(dim=(2, 3))
    inside = (torch.minimum(class_cams, anomaly_cam)
              * soft_mask(class_cams, center, sharpness)).sum(dim=(2, 3))
    return _mean_over_present((total - inside) / total.clamp(min=1e-5), positives)


def union_loss(class_cams: torch.Tensor, anomaly_cam: torch.Tensor, positives: torch.Tensor,
               abnormal: torch.Tensor, center: float = 0.75,
               sharpness: float = 100.0) -> torch.Tensor:
    """``L_union``: the share of the anomaly CAM outside the union of positive class CAMs.

    Args:
        class_cams: ``(B, C, h, w)``; anomaly_cam: ``(B, 1, h, w)``.
        positives: ``(B, C)`` known positive labels; abnormal: ``(B,)`` anomaly labels.
    """
    union = (class_cams * positives[:, :, None, None]).amax(dim=1, keepdim=True)
    anomaly = anomaly_cam * abnormal[:, None, None, None]
    total = anomaly.sum(dim=(1, 2, 3))
    inside = (torch.minimum(union, anomaly)
              * soft_mask(anomaly, center, sharpness)).sum(dim=(1, 2, 3))
    per_image = (total - inside) / total.clamp(min=1e-5)
    return _mean_over_present(per_image[:, None], abnormal[:, None])


def box_loss(refined: torch.Tensor, box_masks: torch.Tensor,
             box_known: torch.Tensor) -> torch.Tensor:
    """``L_ex``: squared error of refined maps vs box masks, normalised by their areas.

    Args:
        refined: ``(B, C, S, S)`` refined class maps; box_masks: same shape, 0/1.
        box_known: ``(B, C)`` 1 where an (image, finding) has boxes.
    """
    error = ((refined - box_masks) ** 2).sum(dim=(2, 3)) * box_known
    areas = (refined.sum(dim=(2, 3)) + box_masks.sum(dim=(2, 3))) * box_known
    per_class = error.sum(dim=0) / areas.sum(dim=0).clamp(min=1e-5)
    present = box_known.sum(dim=0) > 0
    return per_class.sum() / present.sum().clamp(min=1)


def anomaly_targets(labels: torch.Tensor, known: torch.Tensor) -> tuple[torch.Tensor,
                                                                        torch.Tensor]:
    """``(B,)`` anomaly labels and their ``known`` flags from ``(B, C)`` finding labels."""
    abnormal = (labels * known).amax(dim=1)
    all_known = known.amin(dim=1)
    return abnormal, torch.maximum(abnormal, all_known)


class HAMObjective:
    """One HAM training step (see the module docstring); registered as ``ham``."""

    def __init__(self, options: dict) -> None:
        self.config = HAMLossConfig.from_dict(options)
        self.criterion = WeightedBCELoss()

    def __call__(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config
        images, labels, known = batch["image"], batch["label"], batch["known"]
        out = model(images, details=True)
        positives = labels * known
        abnormal, abnormal_known = anomaly_targets(labels, known)
        class_cams, anomaly_cam = out.class_cams.float(), out.anomaly_cam.float()
        parts = {
            "cls": self.criterion(out.class_logits.float(), labels, known),
            "ano": self.criterion(out.anomaly_logits.float()[:, None], abnormal[:, None],
                                  abnormal_known[:, None]),
            "bound": bound_loss(class_cams, anomaly_cam, positives, cfg.mask_center,
                                cfg.mask_sharpness),
            "union": union_loss(class_cams, anomaly_cam, positives, abnormal, cfg.mask_center,
                                cfg.mask_sharpness),
        }
        weights = {"cls": cfg.class_weight, "ano": cfg.anomaly_weight,
                   "bound": cfg.bound_weight, "union": cfg.union_weight}
        if cfg.box_loss:
            parts["box"] = self._box_loss(getattr(model, "module", model), out.class_cams,
                                          batch, images.shape[-2:])
            weights["box"] = cfg.box_weight
        loss = sum(weights[name] * value for name, value in parts.items())
        return loss, {name: value.item() for name, value in parts.items()}

    @staticmethod
    def _box_loss(network: nn.Module, class_cams: torch.Tensor, batch: dict,
                  size: tuple[int, int]) -> torch.Tensor:
        if "box_masks" not in batch or "box_known" not in batch:
            raise ConfigError(
                "[loss] box_loss = true: HAM's box loss is not available in weakly-supervised "
                "training (no box source is configured; batches need 'box_masks' (B, C, S, S) "
                "and 'box_known' (B, C))"
            )
        options = network.options
        refined = refine_cams(class_cams.float(), size, options.refine_center,
                              options.refine_sharpness)
        return box_loss(refined, batch["box_masks"].float(), batch["box_known"].float())
