"""VA-GAN baseline (Baumgartner et al. 2018): visual attribution by an additive map.

A U-Net map generator produces ``M`` with ``y = x + M``; a WGAN-GP critic judges
``y`` against real normals; the generator pays ``100 |M|_1``. Training lives in
``train/gan.py`` (including the fixed gradient penalty, whose norm the official
code took over one axis only). The disease signal shown is ``D = -M`` (what was
removed), so ``maps`` and ``logits`` follow :class:`~.taggan.HealingNet` exactly as
for TagGAN, which keeps the comparison of the two about training, not read-out.
The original is unconditional (one disease); here the finding is a one-hot input,
as for TagGAN, so one model covers every finding.
"""

from __future__ import annotations

from .taggan import HealingNet, HealingOptions

__all__ = ["VAGANNet", "build_vagan"]


class VAGANNet(HealingNet):
    """VA-GAN's map generator with ``y = x + M``."""

    sign = 1.0


def build_vagan(backbone, num_classes: int, options: dict) -> VAGANNet:
    """Builder of :data:`~CXRWeakLocLib.models.BUILDERS` (the backbone is not used)."""
    return VAGANNet(num_classes, HealingOptions.from_dict(options, "vagan"))
