"""Disease-mask spatial attention with an alignment module (Kim, Jung, Lee; seed 002).

The network is a :class:`~.cam.CAMClassifier` (same ``backbone``/``classifier``
names, so ``init_from`` a ``cam`` model fits) with two additions:

* an **alignment module**: a small ResNet-18 regresses ``(s_x, s_y, t_x, t_y,
  theta)`` and the input is warped with ``[[s_x cos t, -s_y sin t, t_x],
  [s_x sin t, s_y cos t, t_y]]`` (``affine_grid``/``grid_sample``, normalised
  coordinates). Its last layer starts at zero, so an untrained module is the
  identity warp. The parameters are bounded (scale 1 +- 0.3, shift +- 0.3 of the
  half-width, rotation +- 15 degrees) so that no image can be zoomed into a blank;
* **disease masks** ``psi`` (buffer ``disease_masks``, one per finding, in the
  aligned frame), applied as ``f' = psi * f + f`` on the last feature map. With
  class-specific masks the attention-guided CAM is
  ``S'_c = sum_k w_ck f'_k = sum_k w_ck (psi_c f_k + f_k) = (1 + psi_c) S_c``,
  which is what is computed (exactly, with one feature map for all findings).
  All-zero masks give the plain CAM of the aligned image (the "+alignment" model).

``forward`` computes the maps in the aligned frame and warps them back with the
inverse affine into the frame of the network's input, so masks and boxes land on
the patient's image, not on the aligned one. Out-of-view pixels of the back-warped
map get the map's minimum (they are never part of a mask).

A **seed ensemble** (``members=N``) holds N attention classifiers (``backbone`` +
``classifier``; the others under ``other_members``) behind one aligner, one anchor and
one set of disease masks: runs of the same recipe that differ only in their seed share
those, since the attention stage starts from the same frozen aligner and masks. Logits
and maps are the members' means, so ``logit_c = GAP(S'_c) + b_c`` still holds for the
mean map ``S'_c`` and mean bias ``b_c``. :func:`ensemble_state` assembles the weights.

Buffer ``anchor`` holds the alignment target (the mean normal radiograph, in the
network's input intensities); it is saved with the weights as a product artefact.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional

from ..errors import refuse_unknown
from .backbone import BackboneConfig, ResNetFeatures
from .cam import CAMClassifier

__all__ = [
    "AlignmentNet",
    "build_dm",
    "DiseaseMaskCAM",
    "ensemble_state",
    "SHARED_BY_MEMBERS",
    "affine_matrix",
    "invert_affine",
    "warp",
    "MAX_SCALE_CHANGE",
    "MAX_SHIFT",
    "MAX_ROTATION",
]

#: Bounds of the alignment parameters (``tanh`` of the regressor's outputs).
MAX_SCALE_CHANGE = 0.3
MAX_SHIFT = 0.3
MAX_ROTATION = math.radians(15.0)
#: Back-warped maps are returned at 1/MAP_STRIDE of the input resolution.
MAP_STRIDE = 4
_FREEZABLE = ("aligner", "backbone", "classifier")
#: State prefixes the members of a seed ensemble have in common.
SHARED_BY_MEMBERS = ("aligner.", "anchor", "disease_masks")


def affine_matrix(params: torch.Tensor) -> torch.Tensor:
    """``(B, 5)`` parameters ``(s_x, s_y, t_x, t_y, theta)`` -> ``(B, 2, 3)`` matrices."""
    s_x, s_y, t_x, t_y, theta = params.unbind(dim=1)
    cos, sin = torch.cos(theta), torch.sin(theta)
    row0 = torch.stack([s_x * cos, -s_y * sin, t_x], dim=1)
    row1 = torch.stack([s_x * sin, s_y * cos, t_y], dim=1)
    return torch.stack([row0, row1], dim=1)


def invert_affine(matrix: torch.Tensor) -> torch.Tensor:
    """Inverse of ``(B, 2, 3)`` affine matrices: ``[A | t] -> [A^-1 | -A^-1 t]``."""
    inverse = torch.linalg.inv(matrix[:, :, :2])
    return torch.cat([inverse, -inverse @ matrix[:, :, 2:]], dim=2)


def warp(
    image: torch.Tensor,
    matrix: torch.Tensor,
    size: Sequence[int] | None = None,
    padding_mode: str = "border",
) -> torch.Tensor:
    """Resample ``image`` so that output pixel ``p`` shows input pixel ``matrix @ p``.

    Coordinates are normalised to [-1, 1] (``align_corners=False``); ``size`` is
    the output ``(H, W)`` (default: the input's). The inverse warp is
    ``warp(., invert_affine(matrix))``.
    """
    height, width = size if size is not None else image.shape[-2:]
    grid = functional.affine_grid(matrix.to(image.dtype),
                                  [image.shape[0], image.shape[1], height, width],
                                  align_corners=False)
    return functional.grid_sample(image, grid, mode="bilinear", padding_mode=padding_mode,
                                  align_corners=False)


class AlignmentNet(nn.Module):
    """ResNet-18 regressor of the five alignment parameters, identity at initialisation.

    Args:
        width: width multiplier of the ResNet-18.
        size: the image is downsampled to ``size`` x ``size`` before the regression
            (the parameters do not depend on the resolution; the warp does not either).
    """

    def __init__(self, width: float = 0.25, size: int = 128) -> None:
        super().__init__()
        self.features = ResNetFeatures(BackboneConfig("resnet18", width, output_stride=32))
        self.head = nn.Linear(self.features.out_channels, 5)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.size = size
        limits = [MAX_SCALE_CHANGE, MAX_SCALE_CHANGE, MAX_SHIFT, MAX_SHIFT, MAX_ROTATION]
        self.register_buffer("limits", torch.tensor(limits), persistent=False)
        self.register_buffer("offset", torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0]),
                             persistent=False)

    def parameters_of(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 5)`` bounded ``(s_x, s_y, t_x, t_y, theta)`` of a batch ``(B, 1, S, S)``."""
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = functional.interpolate(x, size=(self.size, self.size), mode="bilinear",
                                       align_corners=False, antialias=True)
        raw = self.head(self.features(x).mean(dim=(2, 3)))
        return self.offset + self.limits * torch.tanh(raw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 2, 3)`` affine matrices mapping aligned coordinates to input ones."""
        return affine_matrix(self.parameters_of(x))


class DiseaseMaskCAM(CAMClassifier):
    """CAM classifier on aligned images with disease-mask attention (see the module doc).

    Args:
        backbone: the classifier's feature extractor.
        num_classes: number of findings.
        alignment: with an alignment module (False: the input frame is the aligned one).
        alignment_width: width multiplier of the alignment ResNet-18.
        alignment_size: resolution the alignment module looks at.
        anchor_size: side of the stored anchor image.
        mask_size: side of the stored disease masks (resized to the feature map).
        frozen: sub-modules kept fixed in training (``aligner``, ``backbone``,
            ``classifier``; the last two in every member): no gradients, batch-norm
            statistics frozen.
        members: number of attention classifiers averaged (a seed ensemble).

    ``forward(x)`` returns ``(logits, maps)``; maps are ``(B, C, S/4, S/4)`` in the
    frame of ``x``.
    """

    def __init__(
        self,
        backbone: BackboneConfig,
        num_classes: int,
        alignment: bool = True,
        alignment_width: float = 0.25,
        alignment_size: int = 128,
        anchor_size: int = 128,
        mask_size: int = 32,
        frozen: Sequence[str] = (),
        members: int = 1,
    ) -> None:
        super().__init__(backbone, num_classes)
        if members < 1:
            raise ValueError(f"members must be at least 1 (got {members})")
        self.other_members = nn.ModuleList(CAMClassifier(backbone, num_classes)
                                           for _ in range(members - 1))
        self.aligner = AlignmentNet(alignment_width, alignment_size) if alignment else None
        self.register_buffer("anchor", torch.zeros(1, anchor_size, anchor_size))
        self.register_buffer("disease_masks", torch.zeros(num_classes, mask_size, mask_size))
        unknown = set(frozen) - set(_FREEZABLE)
        if unknown:
            raise ValueError(f"frozen: unknown part(s) {', '.join(sorted(unknown))} "
                             f"(known: {', '.join(_FREEZABLE)})")
        self.frozen = [name for name in _FREEZABLE
                       if name in frozen and getattr(self, name) is not None]
        for part in self._frozen_parts():
            part.requires_grad_(False)

    def members(self) -> list[CAMClassifier]:
        """The attention classifiers whose logits and maps are averaged (this one first)."""
        return [self, *self.other_members]

    def _frozen_parts(self) -> list[nn.Module]:
        parts = []
        for name in self.frozen:
            parts += ([self.aligner] if name == "aligner"
                      else [getattr(member, name) for member in self.members()])
        return parts

    def train(self, mode: bool = True) -> DiseaseMaskCAM:
        """Train mode for the trained parts only; frozen parts stay in eval mode."""
        super().train(mode)
        for part in self._frozen_parts():
            part.eval()
        return self

    def alignment_matrix(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 2, 3)`` aligned -> input coordinates (the identity without an aligner)."""
        if self.aligner is None:
            identity = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], device=x.device)
            return identity.expand(x.shape[0], 2, 3)
        return self.aligner(x)

    def align(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The aligned images and the matrices that produced them."""
        matrix = self.alignment_matrix(x)
        return warp(x, matrix), matrix

    def attention(self, size: Sequence[int]) -> torch.Tensor:
        """``psi``: the disease masks ``(C, h, w)`` resized to a feature map's size."""
        return functional.interpolate(self.disease_masks[None], size=tuple(size),
                                      mode="bilinear", align_corners=False)[0]

    def classify_aligned(self, aligned: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and attention-guided CAMs ``(1 + psi_c) S_c`` in the aligned frame
        (the members' means)."""
        outputs = [self._attention_cam(member, aligned) for member in self.members()]
        if len(outputs) == 1:
            return outputs[0]
        return tuple(torch.stack(parts).mean(dim=0) for parts in zip(*outputs, strict=True))

    def _attention_cam(self, member: CAMClassifier,
                       aligned: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps = functional.conv2d(member.backbone(aligned), member.classifier.weight)
        maps = maps * (1.0 + self.attention(maps.shape[-2:]))
        return maps.mean(dim=(2, 3)) + member.classifier.bias, maps

    def to_input_frame(self, maps: torch.Tensor, matrix: torch.Tensor,
                       size: Sequence[int]) -> torch.Tensor:
        """Aligned-frame maps -> maps of ``size`` in the input frame (inverse warp)."""
        maps = functional.interpolate(maps, size=tuple(size), mode="bilinear",
                                      align_corners=False)
        low = maps.amin(dim=(2, 3), keepdim=True)
        return warp(maps - low, invert_affine(matrix), padding_mode="zeros") + low

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        aligned, matrix = self.align(x)
        logits, maps = self.classify_aligned(aligned)
        size = (max(1, x.shape[-2] // MAP_STRIDE), max(1, x.shape[-1] // MAP_STRIDE))
        return logits, self.to_input_frame(maps, matrix.float(), size)


def build_dm(backbone: BackboneConfig, num_classes: int, options: dict) -> nn.Module:
    """The ``dm`` builder: card ``options`` are :class:`DiseaseMaskCAM`'s keyword arguments."""
    refuse_unknown(options, {"alignment", "alignment_width", "alignment_size", "anchor_size",
                             "mask_size", "frozen", "members"}, "dm options: unknown", ValueError)
    return DiseaseMaskCAM(backbone, num_classes, **options)


def ensemble_state(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The weights of a seed ensemble (``members=len(states)``) from its members' weights.

    Each state is a one-member dm model's; they must agree exactly on
    :data:`SHARED_BY_MEMBERS` (the aligner, anchor and disease masks), which the first
    state provides. The first member's classifier keeps its keys; member ``i`` >= 1's
    go under ``other_members.{i-1}.``.

    Raises:
        ValueError: fewer than two states, a member that is itself an ensemble, or
            members that differ in a shared tensor.
    """
    if len(states) < 2:
        raise ValueError(f"an ensemble needs at least two members (got {len(states)})")
    first = states[0]
    merged = dict(first)
    for index, state in enumerate(states[1:], start=1):
        if any(key.startswith("other_members.") for key in state) or set(state) != set(first):
            raise ValueError(f"member {index}: not a one-member model like member 0 "
                             "(its tensors differ)")
        for key, value in state.items():
            if key.startswith(SHARED_BY_MEMBERS):
                if not torch.equal(value, first[key]):
                    raise ValueError(f"member {index}: {key} differs from member 0's "
                                     "(members must share the aligner, anchor and masks)")
            else:
                merged[f"other_members.{index - 1}.{key}"] = value
    return merged
