"""The inference path: radiographs in, per-finding probability, heatmap, mask, boxes out.

Every consumer (CLI, ``evaluate``, the Slicer module, benchmarks) goes through
:class:`Localizer`; none has a private copy of preprocessing, upsampling or the mask
rule. The network itself is method-specific and hidden behind ``forward(x) ->
(logits, maps)``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from .checkpoint import LoadedModel, load_model
from .core.masks import MaskRule, mask_and_boxes, normalize_heatmap
from .core.radiograph import Radiograph
from .core.results import FindingResult, LocalizationResult, select_findings
from .data.transforms import model_input_transform
from .distributed import resolve_device
from .runtime import cpu_forward

__all__ = ["Localizer"]

logger = logging.getLogger(__name__)


class Localizer:
    """Runs one model on batches of radiographs.

    On the CPU the network runs in ONNX Runtime where that agrees with torch within
    :data:`~CXRWeakLocLib.runtime.MAP_TOLERANCE` (:func:`~CXRWeakLocLib.runtime.cpu_forward`),
    else in torch eager; ``runtime`` says which.

    Args:
        model: a loaded model (see :func:`~CXRWeakLocLib.checkpoint.load_model`).
        mask_rule: overrides the card's rule (e.g. a threshold slider in Slicer).
    """

    def __init__(self, model: LoadedModel, mask_rule: MaskRule | None = None) -> None:
        self.model = model
        self.card = model.card
        self.mask_rule = mask_rule or model.card.mask_rule
        self.transform = model_input_transform(model.card)
        self.findings = model.card.finding_objects
        self.fast_forward = cpu_forward(model)

    @property
    def runtime(self) -> str:
        """``onnxruntime`` or ``torch``: what runs the network."""
        return "torch" if self.fast_forward is None else "onnxruntime"

    @classmethod
    def from_name(cls, name_or_path: str, device: str | torch.device = "auto") -> Localizer:
        """Load a model by name or folder and wrap it."""
        return cls(load_model(name_or_path, resolve_device(device)))

    def prepare(self, radiograph: Radiograph) -> torch.Tensor:
        """The network input of one radiograph, ``(1, S, S)``, in display orientation."""
        pixels = radiograph.orientation.to_display(radiograph.pixels)
        return self.transform(pixels[np.newaxis])

    def predict(self, batch: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
        """Probabilities ``(B, C)`` and model-space maps ``(B, C, h, w)`` of a prepared batch."""
        forward = self.fast_forward or self.model.network
        with torch.inference_mode(mode=not self.model.method.gradients_at_inference):
            logits, maps = forward(batch.to(self.model.device))
        return torch.sigmoid(logits).float().cpu().numpy(), maps.detach().float().cpu()

    def localize(
        self,
        radiographs: Sequence[Radiograph],
        findings: str | Sequence[str] = "positive",
    ) -> list[LocalizationResult]:
        """Localise findings on each radiograph.

        Args:
            radiographs: images of any size; each result is in its own geometry.
            findings: ``"positive"`` (above the operating threshold), ``"all"``, or
                a list of finding names; only these get heatmaps, masks and boxes.
        """
        if not radiographs:
            return []
        selection = select_findings(findings, self.card)
        batch = torch.stack([self.prepare(r) for r in radiographs])
        probabilities, maps = self.predict(batch)
        results = [
            self._result(radiograph, probs, image_maps, selection)
            for radiograph, probs, image_maps in zip(radiographs, probabilities, maps, strict=True)
        ]
        if self.model.method.heals:
            self._heal(radiographs, batch, results)
        return results

    def _heal(self, radiographs, batch: torch.Tensor, results: list[LocalizationResult]) -> None:
        """Healed images of the localised findings: ``pixels - D * std``, full resolution."""
        with torch.inference_mode():
            signals = self.model.network.disease_maps(batch.to(self.model.device)).float().cpu()
        std = float(self.card.normalization["std"])
        for radiograph, signal, result in zip(radiographs, signals, results, strict=True):
            orientation = radiograph.orientation
            for index, item in enumerate(result.findings):
                if item.heatmap is not None:
                    removed = torch.nn.functional.interpolate(
                        signal[index][None, None],
                        size=orientation.display_size(radiograph.size), mode="bilinear",
                        align_corners=False)[0, 0].numpy()
                    removed = orientation.from_display(removed)
                    item.healed = np.clip(radiograph.pixels - removed * std, 0.0, 1.0)

    def heatmap(self, maps: torch.Tensor, index: int, radiograph: Radiograph) -> np.ndarray:
        """One finding's model-space map on ``radiograph``'s pixel grid, normalised to [0, 1]."""
        return self._heatmaps(maps, [index], radiograph)[0][0]

    @staticmethod
    def _heatmaps(maps: torch.Tensor, indices: list[int], radiograph: Radiograph
                  ) -> list[tuple[np.ndarray, np.ndarray]]:
        """The maps of ``indices`` on the input's pixel grid and on their own grid.

        The maps are upsampled together (one call) and normalised one by one; each
        comes with its model-space grid in the stored orientation, scaled by the same
        range, so that :func:`~CXRWeakLocLib.core.heatmaps.resample_heatmap` of the
        grid is the heatmap. The model saw the display orientation; the maps are
        upsampled there and turned back to the stored orientation. Bilinear
        interpolation treats every channel on its own, so each map comes out exactly
        as it would alone.
        """
        if not indices:
            return []
        orientation = radiograph.orientation
        chosen = maps[indices]
        upsampled = torch.nn.functional.interpolate(
            chosen[None], size=orientation.display_size(radiograph.size),
            mode="bilinear", align_corners=False,
        )[0].numpy()
        pairs = []
        for map_, grid in zip(upsampled, chosen.numpy(), strict=True):
            heatmap = orientation.from_display(map_)
            pairs.append((normalize_heatmap(heatmap),
                          normalize_heatmap(orientation.from_display(grid), like=heatmap)))
        return pairs

    @staticmethod
    def _wanted(result: FindingResult, selection: str | list[str]) -> bool:
        """Whether ``selection`` asks for this finding's heatmap, mask and boxes."""
        return (
            selection == "all"
            or (selection == "positive" and result.positive)
            or (isinstance(selection, list) and result.name in selection)
        )

    def _result(self, radiograph, probs, maps, selection) -> LocalizationResult:
        results = [
            FindingResult(finding, float(probs[index]), self.card.threshold(finding.name))
            for index, finding in enumerate(self.findings)
        ]
        indices = [index for index, result in enumerate(results) if self._wanted(result, selection)]
        for index, (heatmap, grid) in zip(indices, self._heatmaps(maps, indices, radiograph),
                                          strict=True):
            result = results[index]
            result.heatmap, result.heatmap_grid = heatmap, grid
            result.mask, result.boxes = mask_and_boxes(heatmap, self.mask_rule)
        return LocalizationResult(
            self.card.name, self.card.version, self.card.method, self.mask_rule, results
        )
