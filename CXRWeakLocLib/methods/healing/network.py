"""The networks of the healing methods (TagGAN, VA-GAN): disease maps by "healing".

A map generator ``G(x, c)`` turns an abnormal image ``x`` and a finding ``c`` into a
disease map ``M``; ``y = x + sign * M`` is the healed (normal-looking) image. Training
(:mod:`.adversarial`) adds critics and, for TagGAN, a backward generator.

Inference network (what a model folder stores): the map generator only, plus a
per-finding calibration of the map magnitude.

- ``maps``: ``|D|`` smoothed by a Gaussian of ``smoothing`` pixels, where ``D`` is
  the signed disease signal with ``healed = x - D`` (TagGAN: ``D = M``). Optionally
  restricted to the estimated chest (``lung_field``: lungs and heart, widened; see
  :mod:`~CXRWeakLocLib.core.anatomy`).
- ``logits``: from the map magnitude, no separate classifier: the score of a
  finding is the spatial maximum of its map, and ``logit = w_c * score + b_c``
  with ``w_c, b_c`` a logistic fit on the validation images after training (stored
  as buffers with the weights). A healthy image heals to itself (``M = 0``), so
  the map's magnitude is the evidence; the operating threshold per finding is the
  F1-best probability on validation, as for the classifiers.

Conditioning is StarGAN-style: the finding's one-hot vector is broadcast to image
planes and concatenated with the input. The maps of all findings come from one
call (the batch is repeated once per finding).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from monai.networks.nets import UNet
from torch import nn

from ...core.anatomy import chest_region
from ...core.errors import refuse_unknown

__all__ = ["HealingOptions", "MapGenerator", "Critic", "HealingNet"]


@dataclass(frozen=True)
class HealingOptions:
    """Architecture options of a healing network (``[model] options`` in a run config).

    Attributes:
        channels: U-Net channels per level (each level halves the resolution).
        smoothing: sigma (pixels, model space) of the Gaussian applied to ``|D|``.
        lung_field: keep the map only inside the estimated chest (lung fields and
            heart, widened by a margin so that the pleura stays in).
        critic_width: channels of the critics' first layer (training only).
    """

    channels: tuple[int, ...] = (16, 32, 64, 64)
    smoothing: float = 1.5
    lung_field: bool = False
    critic_width: int = 16

    @classmethod
    def from_dict(cls, options: dict, method: str) -> HealingOptions:
        refuse_unknown(options, cls, f"{method} options: unknown", ValueError)
        values = dict(options)
        if "channels" in values:
            values["channels"] = tuple(int(c) for c in values["channels"])
        return cls(**values)


class MapGenerator(nn.Module):
    """Small conditional U-Net: ``(x, finding) -> map`` of the input's size, linear output.

    The U-Net ends in ``channels[0]`` feature planes and a zero-initialised 1x1
    convolution gives the map. MONAI's U-Net with residual units instance-normalises
    its last up-sampling output, so a one-channel U-Net map would have unit variance
    per image: it could never be zero on a healthy image nor sparse on a sick one
    (our first GAN runs collapsed onto such a map). With the head, ``M`` starts at 0
    (the healed image is the input) and can stay 0 where nothing is wrong.

    Args:
        num_classes: number of findings (one-hot conditioning planes).
        channels: U-Net channels per level.
    """

    def __init__(self, num_classes: int, channels: tuple[int, ...]) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.unet = UNet(spatial_dims=2, in_channels=1 + num_classes, out_channels=channels[0],
                         channels=channels, strides=(2,) * (len(channels) - 1),
                         num_res_units=1, norm="instance")
        self.head = nn.Conv2d(channels[0], 1, kernel_size=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """``x`` (B, 1, S, S), ``classes`` (B,) finding indices -> map (B, 1, S, S)."""
        planes = nn.functional.one_hot(classes, self.num_classes).to(x.dtype)
        planes = planes[:, :, None, None].expand(-1, -1, *x.shape[2:])
        return self.head(self.unet(torch.cat([x, planes], dim=1)))


class Critic(nn.Module):
    """WGAN critic with one head per finding (no normalisation, as WGAN-GP requires).

    ``forward(x, classes)`` returns ``(B,)``: head ``classes[i]`` judges image ``i``.
    """

    def __init__(self, num_classes: int, width: int = 16, depth: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for level in range(depth):
            out = width * 2 ** level
            layers += [nn.Conv2d(channels, out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.heads = nn.Conv2d(channels, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        scores = self.heads(self.features(x)).mean(dim=(2, 3))
        return scores.gather(1, classes[:, None])[:, 0]


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(round(3 * sigma)))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


class HealingNet(nn.Module):
    """A map generator that heals images; ``forward(x) -> (logits, maps)`` for all findings.

    Subclasses set :attr:`sign`: the healed image is ``x + sign * M``.

    Args:
        num_classes: number of findings.
        options: architecture options.
    """

    #: healed image = x + sign * M
    sign = -1.0

    def __init__(self, num_classes: int, options: HealingOptions) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.options = options
        self.generator = MapGenerator(num_classes, options.channels)
        self.register_buffer("score_weight", torch.ones(num_classes))
        self.register_buffer("score_bias", torch.zeros(num_classes))
        self.register_buffer("kernel", _gaussian_kernel(options.smoothing), persistent=False)

    def map(self, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """The generator's map ``M`` of each image for its finding ``classes``."""
        return self.generator(x, classes)

    def heal(self, x: torch.Tensor, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(healed image, M)`` of each image for its finding."""
        generated = self.map(x, classes)
        return x + self.sign * generated, generated

    def disease_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Signed disease signal ``D`` (B, C, S, S) of every finding: ``healed = x - D``."""
        batch, findings = x.shape[0], self.num_classes
        repeated = x.repeat_interleave(findings, dim=0)
        classes = torch.arange(findings, device=x.device).repeat(batch)
        generated = self.map(repeated, classes)
        return (-self.sign * generated).reshape(batch, findings, *x.shape[2:])

    def _smooth(self, maps: torch.Tensor) -> torch.Tensor:
        kernel = self.kernel.to(maps.dtype)
        pad = kernel.numel() // 2
        flat = maps.reshape(-1, 1, *maps.shape[2:])
        flat = nn.functional.pad(flat, (pad, pad, pad, pad), mode="replicate")
        flat = nn.functional.conv2d(flat, kernel[None, None, None, :])
        flat = nn.functional.conv2d(flat, kernel[None, None, :, None])
        return flat.reshape(maps.shape)

    def scores(self, maps: torch.Tensor) -> torch.Tensor:
        """Per-finding evidence of smoothed maps (B, C): the spatial maximum."""
        return maps.amax(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps = self._smooth(self.disease_maps(x).abs())
        if self.options.lung_field:
            lungs = [chest_region(image[0]) for image in x.detach().float().cpu().numpy()]
            maps = maps * torch.as_tensor(np.stack(lungs)[:, None], dtype=maps.dtype,
                                          device=maps.device)
        logits = self.score_weight * self.scores(maps) + self.score_bias
        return logits, maps

    def set_calibration(self, weight: np.ndarray, bias: np.ndarray) -> None:
        """Store the per-finding logistic calibration of the map scores."""
        self.score_weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        self.score_bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
