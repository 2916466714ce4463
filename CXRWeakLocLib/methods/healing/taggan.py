"""TagGAN (Nawaz et al.): a map generator heals the radiograph, ``y = x - G_AM(x, c)``.

Training adds the backward generator ``G_NA``, the normal and abnormal critics and the
cycle loss (:class:`TagGANRecipe`); a model folder stores the map generator only
(:class:`TagGANNet`).
"""

from __future__ import annotations

import torch

from ..base import Method
from .adversarial import HEALING_SMOKE, AdversarialRecipe, GANSettings, HealingStep
from .network import Critic, HealingNet, HealingOptions, MapGenerator

__all__ = ["TAGGAN", "TagGANNet", "TagGANRecipe"]


class TagGANNet(HealingNet):
    """TagGAN's inference network: ``G_AM`` with ``y = x - M``."""

    sign = -1.0


class TagGANRecipe(AdversarialRecipe):
    """Forward cycle ``y = x - G_AM(x, c)`` judged by ``D_N``; backward ``G_NA`` judged by ``D_A``.

    ``G_NA`` predicts the map back (``x_rec = y + G_NA(y, c)``), so the cycle loss is
    ``|x - x_rec|_1``.
    """

    def __init__(self, net: HealingNet, settings: GANSettings, num_classes: int) -> None:
        super().__init__(net, settings, num_classes)
        self.generators["restore"] = MapGenerator(num_classes, net.options.channels)
        self.critics["abnormal"] = Critic(num_classes, net.options.critic_width)

    def _cycle(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        healed, generated = self.net.heal(batch["image"], batch["finding"])
        restored = healed + self.generators["restore"](healed, batch["finding"])
        return healed, generated, restored

    def critic_loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        with torch.no_grad():
            healed, _, restored = self._cycle(batch)
        classes = batch["finding"]
        normal, d_n, gp_n = self._penalised("normal", batch["normal"], healed, classes)
        abnormal, d_a, gp_a = self._penalised("abnormal", batch["abnormal"], restored, classes)
        return normal + abnormal, {"d_normal": d_n, "gp_normal": gp_n,
                                   "d_abnormal": d_a, "gp_abnormal": gp_a}

    def generator_loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        s = self.settings
        healed, generated, restored = self._cycle(batch)
        loss, parts = self._map_terms(batch, healed, generated)
        adversarial = -self.critics["abnormal"](restored, batch["finding"]).mean()
        cycle = (batch["image"] - restored).abs().mean()
        loss = loss + s.adversarial_abnormal * adversarial + s.cycle * cycle
        return loss, {**parts, "g_adv_abnormal": adversarial.item(), "g_cycle": cycle.item()}


def _build(backbone, num_classes: int, options: dict) -> TagGANNet:
    return TagGANNet(num_classes, HealingOptions.from_dict(options, "taggan"))


TAGGAN = Method("taggan", _build, "TagGAN: the disease map is what heals the image",
                training="adversarial", make_step=lambda c: HealingStep(c, TagGANRecipe),
                heals=True, uses_backbone=False, smoke=HEALING_SMOKE)
