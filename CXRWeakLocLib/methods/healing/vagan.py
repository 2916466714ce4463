"""VA-GAN baseline (Baumgartner et al. 2018): visual attribution by an additive map.

A U-Net map generator produces ``M`` with ``y = x + M``; a WGAN-GP critic judges
``y`` against real normals; the generator pays ``100 |M|_1`` (:class:`VAGANRecipe`; the
gradient penalty is :func:`~CXRWeakLocLib.losses.gradient_penalty`, whose norm the
official code took over one axis only). The disease signal shown is ``D = -M`` (what
was removed), so ``maps`` and ``logits`` follow :class:`~.network.HealingNet` exactly as
for TagGAN, which keeps the comparison of the two about training, not read-out.
The original is unconditional (one disease); here the finding is a one-hot input,
as for TagGAN, so one model covers every finding.
"""

from __future__ import annotations

import torch

from ..base import Method
from .adversarial import HEALING_SMOKE, AdversarialRecipe, HealingStep
from .network import HealingNet, HealingOptions

__all__ = ["VAGAN", "VAGANNet", "VAGANRecipe"]


class VAGANNet(HealingNet):
    """VA-GAN's map generator with ``y = x + M``."""

    sign = 1.0


class VAGANRecipe(AdversarialRecipe):
    """``y = x + M`` judged by one WGAN-GP critic against real normals; ``L1`` on ``M``."""

    def critic_loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        with torch.no_grad():
            healed, _ = self.net.heal(batch["image"], batch["finding"])
        loss, distance, penalty = self._penalised("normal", batch["normal"], healed,
                                                  batch["finding"])
        return loss, {"d_normal": distance, "gp_normal": penalty}

    def generator_loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        healed, generated = self.net.heal(batch["image"], batch["finding"])
        return self._map_terms(batch, healed, generated)


def _build(backbone, num_classes: int, options: dict) -> VAGANNet:
    return VAGANNet(num_classes, HealingOptions.from_dict(options, "vagan"))


VAGAN = Method("vagan", _build, "VA-GAN: an additive map turns the image into a normal one",
               training="adversarial", make_step=lambda c: HealingStep(c, VAGANRecipe),
               heals=True, uses_backbone=False, smoke=HEALING_SMOKE)
